"""Pluralistic alignment: one agent, several moral stakeholders (docs/science.md §8, chapter 7).

MaxMin-RLHF (Chakraborty et al., ICML 2024) observes that one reward fitted to a population with
diverse preferences can leave a minority badly served, and aligns the policy to the *worst-off*
group instead (Sen's egalitarian rule). Here the groups are **moral stakeholders**: rewards of
:mod:`moralkit.rewards` (or your own), each min–max normalised to [0, 1] over the game's legal
rounds so that they can be compared.

Four pieces, each a small set of pure functions over dataclasses:

1. **Exact ground truth.** Against an opponent whose move distribution in each memory-1 state is
   known (Tit-for-Tat, Always-C/D, Random: :meth:`~moralkit.opponents.Opponent.cooperation_probability`),
   stakeholder k's expected normalised reward in a state is linear in p = P(C),
   U_k(p) = p·u_k(C) + (1 − p)·u_k(D), and max over p of min over k is a zero-sum game "my move
   vs the adversary who picks the worst-off stakeholder", solved by nashpy's linear program
   (:func:`solve_maxmin`). The worked example of docs/science.md §8:

   >>> states = stakeholder_utilities("prisoners_dilemma", ["game", "deontological", "utilitarian"], "tit_for_tat", xi=3)
   >>> cc = states[0]
   >>> cc.label, cc.if_c.tolist(), cc.if_d.tolist()
   ('C|C', [0.75, 1.0, 1.0], [1.0, 0.0, 0.5])
   >>> best = solve_maxmin(cc)
   >>> round(best.p_cooperate, 6), round(best.value, 6)
   (0.8, 0.8)
   >>> solve_average(cc).p_cooperate        # the utilitarian average simply cooperates
   1.0

2. **Training** toward the egalitarian policy: the aggregates of :mod:`moralkit.rewards`
   (``"maxmin(game,deontological,utilitarian)"`` and its variants) are ordinary rewards, usable
   in LLM training (:class:`moralkit.training.TrainingRun`) and in the tabular learner here
   (:func:`train_tabular`), whose per-state softmax policy can represent a mixed optimum.

3. **The impossibility, made visible.** Simulated users with hidden moral types state pairwise
   preferences (Bradley–Terry); one reward fitted to everybody serves the majority; EM with hard
   assignment (MaxMin-RLHF's Algorithm 2) recovers the types (:func:`impossibility`).

4. **Reading LLM runs** against the ground truth (:func:`llm_maxmin_report`), and the weights
   a MaxMin reward gave its stakeholders during a run, replayed from its log (:func:`llm_maxmin_weights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from .games import C, D, MatrixGame, get_game
from .opponents import Opponent, get_opponent
from .rewards import XI, AggregateReward, Reward, RewardError, aggregate, get_reward, make_reward, normalised_table

__all__ = [
    "STATES",
    "STATE_LABELS",
    "StateUtilities",
    "MaxMinSolution",
    "stakeholder_utilities",
    "solve_maxmin",
    "solve_average",
    "solve_kl_maxmin",
    "maxmin_table",
    "maxmin_json",
    "OUTCOMES",
    "OUTCOME_LABELS",
    "Population",
    "Preferences",
    "simulate_preferences",
    "fit_bradley_terry",
    "user_log_likelihoods",
    "assign_users",
    "MixtureFit",
    "em_mixture",
    "match_clusters",
    "learned_reward",
    "greedy_policy",
    "maxmin_policy",
    "group_utilities",
    "Impossibility",
    "impossibility",
    "TabularLearner",
    "TabularRun",
    "train_tabular",
    "llm_stakeholder_curves",
    "llm_maxmin_report",
    "llm_maxmin_weights",
]

STATES: tuple[tuple[int, int], ...] = ((C, C), (C, D), (D, C), (D, D))
"""The memory-1 states (my previous move, opponent's previous move), index ``2 * my_prev + opp_prev``."""
STATE_LABELS: tuple[str, ...] = ("C|C", "C|D", "D|C", "D|D")
"""States as "<my last move>|<their last move>" (as in :mod:`moralkit.tabular`)."""
_MOVE = {C: "C", D: "D"}
_MOVE_CODE = {"C": C, "D": D}


# --------------------------------------------------------------------- 1. exact ground truth
@dataclass(frozen=True)
class StateUtilities:
    """Each stakeholder's normalised expected reward in one state, if M plays C and if it plays D.

    Mixing with p = P(C) gives U_k(p) = p·if_c[k] + (1 − p)·if_d[k] (:meth:`at`).
    """

    my_prev: int
    opp_prev: int
    stakeholders: tuple[str, ...]
    if_c: np.ndarray
    if_d: np.ndarray
    opponent_cooperates: float
    """P(the opponent plays C now) in this state."""

    @property
    def label(self) -> str:
        return f"{_MOVE[self.my_prev]}|{_MOVE[self.opp_prev]}"

    def at(self, p) -> np.ndarray:
        """U_k(p) for each stakeholder; ``p`` a number (shape (k,)) or an array (shape (len(p), k))."""
        p = np.asarray(p, dtype=float)
        return p[..., None] * self.if_c + (1 - p[..., None]) * self.if_d

    def __repr__(self) -> str:
        c = ", ".join(f"{x:.3g}" for x in self.if_c)
        d = ", ".join(f"{x:.3g}" for x in self.if_d)
        return f"StateUtilities({self.label}: C -> ({c}), D -> ({d}) for {', '.join(self.stakeholders)})"


def _stakeholder_tables(stakeholders, game: MatrixGame, xi: float) -> tuple[tuple[str, ...], np.ndarray]:
    if isinstance(stakeholders, AggregateReward):
        agg = stakeholders
    else:
        agg = aggregate(list(stakeholders), "average", xi=xi)
    return agg.stakeholder_names, agg.tables(game)


def stakeholder_utilities(
    game: MatrixGame | str,
    stakeholders: Sequence[str | Reward] | AggregateReward,
    opponent: str | Opponent = "tit_for_tat",
    *,
    xi: float = XI,
) -> list[StateUtilities]:
    """The stakeholders' normalised utilities of C and of D in each of the four states.

    ``stakeholders``: reward names or your own rewards (each normalised to [0, 1] over the
    game's legal rounds; a constant one is rejected), or an aggregate reward (its stakeholders).
    ``opponent`` must know its move distribution per state (tit_for_tat, always_cooperate,
    always_defect, random).
    """
    game, opp = get_game(game), get_opponent(opponent)
    names, tables = _stakeholder_tables(stakeholders, game, xi)
    out = []
    for my_prev, opp_prev in STATES:
        q = float(opp.cooperation_probability(my_prev, opp_prev))
        if_move = [q * tables[:, move, C, opp_prev] + (1 - q) * tables[:, move, D, opp_prev] for move in (C, D)]
        out.append(StateUtilities(my_prev, opp_prev, names, *if_move, opponent_cooperates=q))
    return out


@dataclass(frozen=True)
class MaxMinSolution:
    """The policy of one state that an aggregation rule picks, and what each stakeholder gets."""

    state: StateUtilities
    p_cooperate: float
    value: float
    """The rule's objective at ``p_cooperate``: the minimum utility (max–min), the mean (average)…"""
    weights: np.ndarray | None = None
    """Max–min only: the adversary's optimal mix over stakeholders (the LP's dual), λ."""
    rule: str = "maxmin"

    @property
    def utilities(self) -> dict[str, float]:
        return dict(zip(self.state.stakeholders, (float(u) for u in self.state.at(self.p_cooperate))))

    @property
    def min_utility(self) -> float:
        return float(self.state.at(self.p_cooperate).min())

    def __repr__(self) -> str:
        return f"MaxMinSolution({self.rule}, {self.state.label}: P(C)={self.p_cooperate:.4g}, value={self.value:.4g})"


def solve_maxmin(state: StateUtilities) -> MaxMinSolution:
    """max over p of min over stakeholders of U_k(p), by nashpy's zero-sum linear program.

    Rows are my moves (C, D), columns the stakeholders; the column player (an adversary who
    picks the worst-off stakeholder) minimises what I get. nashpy's row strategy is the max–min
    mix; the column strategy says which stakeholders bind (weights λ).
    """
    import warnings

    import nashpy

    payoff = np.vstack([state.if_c, state.if_d])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row, col = nashpy.Game(payoff).linear_program()
    p = float(np.clip(row[0] / max(row.sum(), 1e-12), 0.0, 1.0))
    lam = np.clip(np.asarray(col, dtype=float), 0.0, None)
    lam = lam / lam.sum() if lam.sum() > 0 else np.full(len(lam), 1 / len(lam))
    return MaxMinSolution(state, p, float(state.at(p).min()), lam, "maxmin")


def solve_average(state: StateUtilities, tol: float = 1e-12) -> MaxMinSolution:
    """The utilitarian average's choice: the move with the higher mean utility (0.5 when equal)."""
    c, d = float(state.if_c.mean()), float(state.if_d.mean())
    p = 1.0 if c > d + tol else 0.0 if d > c + tol else 0.5
    return MaxMinSolution(state, p, float(state.at(p).mean()), None, "average")


def solve_kl_maxmin(state: StateUtilities, beta: float, p_reference: float = 0.5) -> MaxMinSolution:
    """max over p of [min_k U_k(p) − β·KL(Bernoulli(p) ‖ Bernoulli(p_reference))].

    The leash of chapter 4 on the egalitarian objective: the objective is strictly concave, so
    the optimum is unique; as β → 0 it tends to :func:`solve_maxmin`, as β grows to the reference.
    ``value`` is the regularised objective; :attr:`MaxMinSolution.min_utility` the minimum utility.
    """
    from scipy.optimize import minimize_scalar

    if beta < 0 or not 0 < p_reference < 1:
        raise ValueError(f"Need beta >= 0 and 0 < p_reference < 1, got beta={beta}, p_reference={p_reference}.")
    if beta == 0:
        return solve_maxmin(state)

    def kl(p):
        terms = [p * math.log(p / p_reference) if p > 0 else 0.0,
                 (1 - p) * math.log((1 - p) / (1 - p_reference)) if p < 1 else 0.0]
        return sum(terms)

    def negative(p):
        return -(float(state.at(p).min()) - beta * kl(p))

    res = minimize_scalar(negative, bounds=(0.0, 1.0), method="bounded", options={"xatol": 1e-10})
    p = float(res.x)
    return MaxMinSolution(state, p, -negative(p), None, f"kl(beta={beta:g})")


def _as_list(stakeholders) -> list[str]:
    return [stakeholders] if isinstance(stakeholders, str) else list(stakeholders)


def maxmin_table(
    game: MatrixGame | str,
    stakeholders: Sequence[str | Reward],
    opponent: str | Opponent = "tit_for_tat",
    *,
    xi: float = XI,
):
    """One row per state: the max–min and the average policies and what every stakeholder gets."""
    import pandas as pd

    rows = []
    for u in stakeholder_utilities(game, _as_list(stakeholders), opponent, xi=xi):
        for solution in (solve_maxmin(u), solve_average(u)):
            rows.append({"state": u.label, "rule": solution.rule, "p_cooperate": solution.p_cooperate,
                         "min_utility": solution.min_utility, "mean_utility": float(u.at(solution.p_cooperate).mean()),
                         **solution.utilities})
    return pd.DataFrame(rows)


def maxmin_json(
    game: MatrixGame | str,
    opponent: str | Opponent,
    stakeholders: Sequence[str | Reward],
    *,
    xi: float = XI,
) -> dict:
    """The exact max–min (and utilitarian-average) policy per state, as ``moralkit maxmin --json`` prints it."""
    g, opp = get_game(game), get_opponent(opponent)
    states = stakeholder_utilities(g, _as_list(stakeholders), opp, xi=xi)

    def entry(solution: MaxMinSolution) -> dict:
        return {"my_prev": _MOVE[solution.state.my_prev], "opp_prev": _MOVE[solution.state.opp_prev],
                "p_cooperate": solution.p_cooperate, "value": solution.value, "utilities": solution.utilities}

    return {
        "game": g.name,
        "opponent": opp.name,
        "stakeholders": list(states[0].stakeholders),
        "xi": float(xi),
        "states": [entry(solve_maxmin(u)) for u in states],
        "average": {"states": [entry(solve_average(u)) for u in states]},
    }


# --------------------------------------------------------------------- 3. preferences of a population
OUTCOMES: tuple[tuple[int, int, int], ...] = tuple((m, o, p) for m in (C, D) for o in (C, D) for p in (C, D))
"""The 8 legal rounds (my move, their move, their previous move) users compare; index 4m + 2o + p."""
OUTCOME_LABELS: tuple[str, ...] = tuple(f"{_MOVE[m]}{_MOVE[o]} after {_MOVE[p]}" for m, o, p in OUTCOMES)
"""Outcomes as "<my move><their move> after <their previous move>"."""


def _outcome_vector(table: np.ndarray) -> np.ndarray:
    return np.array([table[m, o, p] for m, o, p in OUTCOMES])


@dataclass(frozen=True)
class Population:
    """Simulated users with hidden moral types, stating pairwise preferences over game outcomes.

    ``types`` maps a reward (the type's morality) to its share of the users. Each user compares
    ``comparisons`` random pairs of outcomes and prefers the first with the Bradley–Terry
    probability σ(``rationality`` · (r(first) − r(second))) on its type's normalised reward.
    """

    types: Mapping[str, float] = field(default_factory=lambda: {"game": 0.7, "deontological": 0.2, "utilitarian": 0.1})
    users: int = 100
    comparisons: int = 30
    rationality: float = 8.0
    game: str = "prisoners_dilemma"
    xi: float = XI

    def __post_init__(self):
        shares = np.asarray(list(self.types.values()), dtype=float)
        if len(shares) < 2 or np.any(shares < 0) or shares.sum() <= 0:
            raise ValueError(f"types needs at least two moral types with shares >= 0, got {dict(self.types)}.")
        if self.users < len(shares) or self.comparisons < 1 or self.rationality <= 0:
            raise ValueError("Need users >= number of types, comparisons >= 1 and rationality > 0.")
        object.__setattr__(self, "types", {get_reward(k).name: float(v) / shares.sum() for k, v in self.types.items()})

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(self.types)

    def counts(self) -> dict[str, int]:
        """Users per type: the shares rounded so that they add up to ``users`` (largest remainder)."""
        raw = np.array(list(self.types.values())) * self.users
        n = np.floor(raw).astype(int)
        n[np.argsort(-(raw - n))[: self.users - n.sum()]] += 1
        return dict(zip(self.types, n.tolist()))

    def true_rewards(self) -> np.ndarray:
        """Each type's normalised reward per outcome, shape (types, 8)."""
        game = get_game(self.game)
        return np.stack([_outcome_vector(normalised_table(get_reward(t, xi=self.xi), game)) for t in self.types])


@dataclass(frozen=True)
class Preferences:
    """Pairwise comparisons: comparison i is user ``user[i]`` choosing between two outcomes."""

    population: Population
    user_type: np.ndarray
    """Each user's hidden type (index into ``population.type_names``)."""
    user: np.ndarray
    first: np.ndarray
    second: np.ndarray
    first_wins: np.ndarray

    def __len__(self) -> int:
        return len(self.user)

    def frame(self):
        import pandas as pd

        names = np.array(self.population.type_names)
        labels = np.array(OUTCOME_LABELS)
        return pd.DataFrame({"user": self.user, "type": names[self.user_type[self.user]], "first": labels[self.first],
                             "second": labels[self.second], "prefers": np.where(self.first_wins, labels[self.first], labels[self.second])})

    def __repr__(self) -> str:
        return f"Preferences({len(self)} comparisons by {len(self.user_type)} users, types {self.population.counts()})"


def simulate_preferences(population: Population | None = None, seed: int | None = 0) -> Preferences:
    """Draw the users' types and their comparisons (Bradley–Terry on each type's normalised reward)."""
    pop = population or Population()
    rng = np.random.default_rng(seed)
    counts = pop.counts()
    user_type = rng.permutation(np.repeat(np.arange(len(counts)), list(counts.values())))
    n = pop.users * pop.comparisons
    user = np.repeat(np.arange(pop.users), pop.comparisons)
    first = rng.integers(0, len(OUTCOMES), n)
    second = (first + rng.integers(1, len(OUTCOMES), n)) % len(OUTCOMES)  # a different outcome
    truth = pop.true_rewards()[user_type[user]]
    diff = truth[np.arange(n), first] - truth[np.arange(n), second]
    first_wins = rng.random(n) < 1 / (1 + np.exp(-pop.rationality * diff))
    return Preferences(pop, user_type, user, first, second, first_wins)


def fit_bradley_terry(prefs: Preferences, users: Iterable[int] | None = None, *, l2: float = 0.01,
                      iterations: int = 50) -> np.ndarray:
    """The reward per outcome that best explains the comparisons (of ``users``, default all).

    Maximises Σ log σ(r(winner) − r(loser)) − (l2/2)·|r|² by Newton's method (8 numbers; the
    penalty pins down the constant a Bradley–Terry reward is only defined up to). Returns r
    with mean 0, in the users' own units (rationality × normalised reward).
    """
    mask = np.ones(len(prefs), bool) if users is None else np.isin(prefs.user, np.fromiter(users, int))
    k = len(OUTCOMES)
    x = np.zeros((int(mask.sum()), k))
    rows = np.arange(len(x))
    x[rows, prefs.first[mask]] += 1.0
    x[rows, prefs.second[mask]] -= 1.0
    y = prefs.first_wins[mask].astype(float)
    r = np.zeros(k)
    for _ in range(iterations):
        prob = 1 / (1 + np.exp(-(x @ r)))
        grad = x.T @ (y - prob) - l2 * r
        hess = (x * (prob * (1 - prob))[:, None]).T @ x + l2 * np.eye(k)
        step = np.linalg.solve(hess, grad)
        r += step
        if np.abs(step).max() < 1e-10:
            break
    return r - r.mean()


def user_log_likelihoods(prefs: Preferences, rewards: np.ndarray) -> np.ndarray:
    """log P(user's comparisons | reward) for every user and every reward: shape (users, rewards)."""
    rewards = np.atleast_2d(rewards)
    margin = rewards[:, prefs.first] - rewards[:, prefs.second]  # (K, n)
    signed = np.where(prefs.first_wins, margin, -margin)
    logp = -np.logaddexp(0.0, -signed)  # log σ(signed)
    out = np.zeros((len(prefs.user_type), len(rewards)))
    np.add.at(out, prefs.user, logp.T)
    return out


def assign_users(prefs: Preferences, rewards: np.ndarray) -> np.ndarray:
    """The E-step with hard assignment: each user joins the reward that explains its comparisons best."""
    return np.argmax(user_log_likelihoods(prefs, rewards), axis=1)


@dataclass(frozen=True)
class MixtureFit:
    """What :func:`em_mixture` learned: one reward per cluster and each user's cluster."""

    rewards: np.ndarray
    """Per cluster, the Bradley–Terry reward of each outcome, shape (clusters, 8)."""
    assignment: np.ndarray
    log_likelihood: float
    history: tuple[float, ...]
    """The log-likelihood after each EM iteration of the best restart."""

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignment, minlength=len(self.rewards))

    def normalised_rewards(self) -> np.ndarray:
        """The learned rewards min–max normalised to [0, 1] (comparable with the true ones)."""
        lo = self.rewards.min(axis=1, keepdims=True)
        span = np.maximum(self.rewards.max(axis=1, keepdims=True) - lo, 1e-12)
        return (self.rewards - lo) / span

    def __repr__(self) -> str:
        return f"MixtureFit({len(self.rewards)} clusters of sizes {self.sizes.tolist()}, log-likelihood {self.log_likelihood:.1f})"


def em_mixture(prefs: Preferences, clusters: int = 3, *, iterations: int = 50, restarts: int = 5,
               seed: int | None = 0, l2: float = 0.01) -> MixtureFit:
    """Learn a mixture of Bradley–Terry rewards by EM with hard assignment (MaxMin-RLHF's Algorithm 2).

    E-step: every user joins the cluster whose reward gives its comparisons the highest
    likelihood (:func:`assign_users`). M-step: every cluster refits its reward on its users'
    comparisons (:func:`fit_bradley_terry`). Each restart starts from clusters seeded like
    k-means++ on each user's own (strongly regularised) reward; the restart with the highest
    likelihood wins. An emptied cluster is re-seeded with the user explained worst.
    """
    rng = np.random.default_rng(seed)
    n_users = len(prefs.user_type)
    own = np.stack([fit_bradley_terry(prefs, [u], l2=1.0) for u in range(n_users)])
    best = None
    for _ in range(restarts):
        centres = [own[rng.integers(n_users)]]
        while len(centres) < clusters:
            d2 = np.min([((own - c) ** 2).sum(axis=1) for c in centres], axis=0)
            centres.append(own[rng.choice(n_users, p=d2 / d2.sum()) if d2.sum() > 0 else rng.integers(n_users)])
        rewards = np.stack(centres)
        history, assignment = [], None
        for _ in range(iterations):
            ll = user_log_likelihoods(prefs, rewards)
            new = np.argmax(ll, axis=1)
            for k in range(clusters):  # keep every cluster alive
                if not np.any(new == k):
                    worst = int(np.argmin(ll[np.arange(n_users), new]))
                    new[worst] = k
            history.append(float(ll[np.arange(n_users), new].sum()))
            if assignment is not None and np.array_equal(new, assignment):
                break
            assignment = new
            rewards = np.stack([fit_bradley_terry(prefs, np.flatnonzero(assignment == k), l2=l2) for k in range(clusters)])
        total = float(user_log_likelihoods(prefs, rewards)[np.arange(n_users), assignment].sum())
        if best is None or total > best.log_likelihood:
            best = MixtureFit(rewards, assignment, total, tuple(history))
    return best


def match_clusters(true_types: np.ndarray, assignment: np.ndarray) -> tuple[dict[int, int], float]:
    """Which learned cluster is which true type (the matching that agrees most), and the share of
    users whose cluster is their type's. Returns ({cluster: type}, accuracy)."""
    from scipy.optimize import linear_sum_assignment

    k = max(true_types.max(), assignment.max()) + 1
    agree = np.zeros((k, k))
    np.add.at(agree, (assignment, true_types), 1)
    rows, cols = linear_sum_assignment(-agree)
    return {int(r): int(c) for r, c in zip(rows, cols)}, float(agree[rows, cols].sum() / len(true_types))


def learned_reward(values: Sequence[float], name: str = "learned") -> Reward:
    """A reward from a value per outcome (:data:`OUTCOMES` order), e.g. a fitted Bradley–Terry reward."""
    table = np.zeros((2, 2, 2))
    for v, (m, o, p) in zip(values, OUTCOMES):
        table[m, o, p] = v

    def fn(game, my_move, opp_move, opp_prev_move):
        return table[my_move, opp_move, opp_prev_move]

    fn.__doc__ = f"A reward learned from preferences ({name})."
    return make_reward(fn, name)


def greedy_policy(reward: str | Reward, game: MatrixGame | str, opponent: str | Opponent = "tit_for_tat",
                  *, xi: float = XI) -> np.ndarray:
    """P(C) per state of a policy that maximises one reward's expected value (what single-reward
    RLHF converges to): 1 or 0, 0.5 where the reward is indifferent."""
    game, opp = get_game(game), get_opponent(opponent)
    r = get_reward(reward, xi=xi) if isinstance(reward, str) else get_reward(reward)
    out = []
    for my_prev, opp_prev in STATES:
        q = float(opp.cooperation_probability(my_prev, opp_prev))
        value = [q * r(game, m, C, opp_prev) + (1 - q) * r(game, m, D, opp_prev) for m in (C, D)]
        out.append(1.0 if value[0] > value[1] + 1e-12 else 0.0 if value[1] > value[0] + 1e-12 else 0.5)
    return np.array(out)


def maxmin_policy(stakeholders: Sequence[str | Reward], game: MatrixGame | str,
                  opponent: str | Opponent = "tit_for_tat", *, xi: float = XI) -> np.ndarray:
    """P(C) per state of the exact max–min policy over ``stakeholders``."""
    return np.array([solve_maxmin(u).p_cooperate for u in stakeholder_utilities(game, stakeholders, opponent, xi=xi)])


def group_utilities(policy: Sequence[float], stakeholders: Sequence[str | Reward], game: MatrixGame | str,
                    opponent: str | Opponent = "tit_for_tat", *, xi: float = XI) -> dict[str, float]:
    """Each stakeholder's normalised utility under a policy (P(C) per state), averaged over the four states."""
    states = stakeholder_utilities(game, stakeholders, opponent, xi=xi)
    per_state = np.stack([u.at(p) for u, p in zip(states, policy)])
    return dict(zip(states[0].stakeholders, per_state.mean(axis=0).tolist()))


@dataclass(frozen=True)
class Impossibility:
    """Chapter 7's experiment: one reward for everybody vs MaxMin over rewards learned by EM."""

    preferences: Preferences
    pooled_reward: np.ndarray
    mixture: MixtureFit
    cluster_to_type: dict[int, int]
    accuracy: float
    single_policy: np.ndarray
    maxmin_policy: np.ndarray
    groups: "object"
    """A DataFrame, one row per true type: share, utility under each policy, the change."""

    def rewards_frame(self):
        """True vs learned normalised rewards per outcome (learned clusters matched to types)."""
        import pandas as pd

        names = self.preferences.population.type_names
        truth = self.preferences.population.true_rewards()
        learned = self.mixture.normalised_rewards()
        rows = []
        for cluster, t in self.cluster_to_type.items():
            if cluster < len(learned) and t < len(names):
                for i, label in enumerate(OUTCOME_LABELS):
                    rows.append({"type": names[t], "outcome": label, "true": truth[t, i], "learned": learned[cluster, i]})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"Impossibility(accuracy={self.accuracy:.0%}, groups={list(self.preferences.population.type_names)})"


def impossibility(population: Population | None = None, *, opponent: str | Opponent = "tit_for_tat",
                  seed: int | None = 0, restarts: int = 5) -> Impossibility:
    """Simulate a population, fit one pooled reward and an EM mixture, and compare the policies.

    The single-reward policy is the greedy one for the pooled Bradley–Terry reward; the MaxMin
    policy is the exact max–min over the EM clusters' rewards (each normalised). Both are judged
    by the *true* normalised rewards of each group, averaged over the four states.
    """
    import pandas as pd

    pop = population or Population()
    prefs = simulate_preferences(pop, seed)
    pooled = fit_bradley_terry(prefs)
    fit = em_mixture(prefs, len(pop.types), restarts=restarts, seed=seed)
    mapping, accuracy = match_clusters(prefs.user_type, fit.assignment)
    single = greedy_policy(learned_reward(pooled, "pooled"), pop.game, opponent)
    clusters = [learned_reward(fit.rewards[k], f"cluster{k}") for k in range(len(fit.rewards))
                if np.ptp(fit.rewards[k]) > 1e-9]
    egalitarian = maxmin_policy(clusters, pop.game, opponent)
    truth = [get_reward(t, xi=pop.xi) for t in pop.type_names]
    u_single = group_utilities(single, truth, pop.game, opponent, xi=pop.xi)
    u_maxmin = group_utilities(egalitarian, truth, pop.game, opponent, xi=pop.xi)
    groups = pd.DataFrame({
        "share": [pop.types[t] for t in pop.type_names],
        "single reward": [u_single[t] for t in pop.type_names],
        "maxmin": [u_maxmin[t] for t in pop.type_names],
    }, index=pd.Index(pop.type_names, name="group"))
    groups["change"] = groups["maxmin"] - groups["single reward"]
    return Impossibility(prefs, pooled, fit, mapping, accuracy, single, egalitarian, groups)


# --------------------------------------------------------------------- 2. tabular training
@dataclass
class TabularLearner:
    """A stochastic memory-1 policy: one logit per state, P(C | s) = σ(θ_s).

    Why not Q-learning: a greedy policy is pure (C or D), but the max–min optimum is often mixed
    (P(C) = 0.8 in docs/science.md §8's example), so the learner must be able to *represent* a mix. Each
    state is a one-step (bandit) problem, as in LLM fine-tuning, and the policy-gradient step
    θ_s ← θ_s + lr · mean[(r − b_s)(1{a = C} − P(C|s))] (b_s: the batch's mean reward in s) climbs
    the expected reward in each state. With a MaxMin reward whose weights make C and D equally
    good at the optimum, the policy settles on the mix.
    """

    learning_rate: float = 2.0
    theta: np.ndarray = field(default_factory=lambda: np.zeros(4))

    @property
    def p_cooperate(self) -> np.ndarray:
        return 1 / (1 + np.exp(-self.theta))

    def act(self, my_prev: np.ndarray, opp_prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = self.p_cooperate[2 * my_prev + opp_prev]
        return np.where(rng.random(len(p)) < p, C, D)

    def update(self, states: np.ndarray, moves: np.ndarray, rewards: np.ndarray, learning_rate: float | None = None) -> None:
        lr = self.learning_rate if learning_rate is None else learning_rate
        p = self.p_cooperate[states]
        n = np.bincount(states, minlength=4)
        baseline = np.bincount(states, weights=rewards, minlength=4) / np.maximum(n, 1)
        score = (rewards - baseline[states]) * ((moves == C) - p)
        grad = np.bincount(states, weights=score, minlength=4) / np.maximum(n, 1)
        self.theta = np.clip(self.theta + lr * grad, -12, 12)


@dataclass(frozen=True)
class TabularRun:
    """What :func:`train_tabular` returns: the learner, the exact targets, and the training log."""

    reward: str
    game: str
    opponent: str
    learner: TabularLearner
    targets: tuple[MaxMinSolution, ...]
    """The exact max–min solution of each state."""
    history: "object"
    """A DataFrame, one row per logged update and state: P(C), each stakeholder's exact utility, the minimum, the LP value."""
    seed: int | None = None

    def final(self):
        """Per state: the learned P(C), the minimum utility it gives, the LP value and the gap."""
        import pandas as pd

        rows = []
        for target, p in zip(self.targets, self.learner.p_cooperate):
            got = float(target.state.at(p).min())
            rows.append({"state": target.state.label, "p_cooperate": float(p), "lp_p_cooperate": target.p_cooperate,
                         "min_utility": got, "lp_value": target.value, "gap": target.value - got})
        return pd.DataFrame(rows).set_index("state")

    def __repr__(self) -> str:
        gap = self.final()["gap"].abs().max()
        return f"TabularRun({self.reward!r} vs {self.opponent!r} on {self.game!r}, largest gap to the LP {gap:.3f})"


def train_tabular(
    reward: str | Reward,
    game: MatrixGame | str = "prisoners_dilemma",
    opponent: str | Opponent = "tit_for_tat",
    *,
    stakeholders: Sequence[str | Reward] | None = None,
    updates: int = 800,
    games_per_update: int = 32,
    rounds: int = 5,
    learning_rate: float = 2.0,
    decay: float = 0.01,
    xi: float = XI,
    seed: int | None = 0,
    log_every: int = 10,
) -> TabularRun:
    """Train a :class:`TabularLearner` with ``reward`` against a fixed opponent, as an LLM is trained.

    Each update plays ``games_per_update`` games of ``rounds`` rounds from random initial states
    in :class:`moralkit.env.IteratedGame` (which also lets a MaxMin reward observe the rounds and
    update its weights between batches), then takes one policy-gradient step per state with
    learning rate ``learning_rate / (1 + decay · update)``. ``reward`` is any reward; the log
    measures ``stakeholders`` (default: the aggregate's own) against the exact max–min solution.
    """
    import pandas as pd

    from .env import IteratedGame

    game = get_game(game)
    opp = get_opponent(opponent)
    r = get_reward(reward, xi=xi) if isinstance(reward, str) else get_reward(reward)
    if stakeholders is None:
        if not isinstance(r, AggregateReward):
            raise RewardError(f"{r.name} is not an aggregate: pass stakeholders=[...] to measure it against.")
        stakeholders = r
    states = stakeholder_utilities(game, stakeholders, opp, xi=xi)
    targets = tuple(solve_maxmin(u) for u in states)
    names = states[0].stakeholders
    env = IteratedGame(game, opp, games_per_update, rounds=rounds, rewards=[r], xi=xi, seed=seed)
    rng = np.random.default_rng(None if seed is None else [seed, 7])
    learner = TabularLearner(learning_rate)
    rows = []

    def log(update: int) -> None:
        for target, p in zip(targets, learner.p_cooperate):
            u = target.state.at(p)
            rows.append({"update": update, "state": target.state.label, "p_cooperate": float(p),
                         **dict(zip(names, u.tolist())), "min_utility": float(u.min()), "lp_value": target.value})

    for t in range(updates):
        if t % log_every == 0:
            log(t)
        state = env.reset()
        batch_states, batch_moves, batch_rewards = [], [], []
        while not env.done:
            moves = learner.act(state.my_prev, state.opp_prev, rng)
            result = env.step(moves)
            batch_states.append(2 * state.my_prev + state.opp_prev)
            batch_moves.append(moves)
            batch_rewards.append(result.rewards[r.name])
            state = result.state
        env.clear()
        learner.update(np.concatenate(batch_states), np.concatenate(batch_moves), np.concatenate(batch_rewards),
                       learning_rate / (1 + decay * t))
    log(updates)
    return TabularRun(r.name, game.name, opp.name, learner, targets, pd.DataFrame(rows), seed)


# --------------------------------------------------------------------- 4. reading LLM runs
def _legal_rounds(log):
    legal = log[(log["my_move"] != "illegal") & log["my_move"].notna()]
    return legal


def llm_stakeholder_curves(log, stakeholders: Sequence[str | Reward], game: MatrixGame | str = "prisoners_dilemma",
                           *, xi: float = XI, window: int = 1):
    """Each stakeholder's mean normalised reward per training update (legal rounds), and their minimum.

    ``log`` is a run's ``rounds.csv`` (:attr:`moralkit.training.TrainingRun.log`); ``window``
    pools that many updates per point.
    """
    import pandas as pd

    game = get_game(game)
    names, tables = _stakeholder_tables(_as_list(stakeholders), game, xi)
    legal = _legal_rounds(log)
    my, opp, prev = (legal[c].map(_MOVE_CODE).to_numpy(int) for c in ("my_move", "opp_move", "opp_prev"))
    frame = pd.DataFrame(tables[:, my, opp, prev].T, columns=list(names), index=legal.index)
    frame["episode"] = (legal["episode"].to_numpy() // max(1, window)) * max(1, window)
    curves = frame.groupby("episode")[list(names)].mean()
    curves["min"] = curves.min(axis=1)
    return curves


def llm_maxmin_report(log, stakeholders: Sequence[str | Reward], game: MatrixGame | str = "prisoners_dilemma",
                      opponent: str | Opponent = "tit_for_tat", *, xi: float = XI, last: float = 0.2):
    """How close an LLM run ended to the exact max–min policy, state by state.

    Over the last ``last`` of the training episodes: P(C) among legal answers in each state,
    each stakeholder's exact utility at that P(C), the minimum, the LP value and the gap, plus a
    row ``mean`` (the four states weighted equally; NaN if a state had no legal answer) and the
    share of illegal answers. The ``mean`` row's ``min_utility`` is the run's "minimum normalised
    stakeholder utility" that issue 12's bar compares with the average run's and the LP value.
    """
    import pandas as pd

    if not 0 < last <= 1:
        raise ValueError(f"last is the share of the training episodes to read, 0 < last <= 1 (0.2 = the last 20%), "
                         f"got {last}.")
    if log.empty:
        raise ValueError("the training log is empty: nothing to report (has the run played an episode?).")
    episodes = log["episode"].max() + 1
    tail = log[log["episode"] >= math.floor(episodes * (1 - last))]
    states = stakeholder_utilities(game, _as_list(stakeholders), opponent, xi=xi)
    rows = []
    for u in states:
        here = tail[(tail["my_prev"] == _MOVE[u.my_prev]) & (tail["opp_prev"] == _MOVE[u.opp_prev])]
        legal = here[here["my_move"].isin(["C", "D"])]
        p = float((legal["my_move"] == "C").mean()) if len(legal) else math.nan
        util = u.at(p) if len(legal) else np.full(len(u.stakeholders), np.nan)
        target = solve_maxmin(u)
        rows.append({"state": u.label, "rounds": len(here), "illegal": float((here["my_move"] == "illegal").mean()) if len(here) else math.nan,
                     "p_cooperate": p, **dict(zip(u.stakeholders, util.tolist())), "min_utility": float(np.min(util)),
                     "lp_p_cooperate": target.p_cooperate, "lp_value": target.value, "gap": target.value - float(np.min(util))})
    frame = pd.DataFrame(rows).set_index("state")
    mean = frame.drop(columns=["rounds"]).mean(numeric_only=True, skipna=False)
    mean["rounds"] = frame["rounds"].sum()
    frame.loc["mean"] = mean
    return frame


def llm_maxmin_weights(log, reward: str | Reward, game: MatrixGame | str = "prisoners_dilemma", *, xi: float = XI):
    """The weights λ a stateful MaxMin reward gave each stakeholder in each state, update by update.

    A ``"weights"`` or ``"switch"`` MaxMin reward (:class:`moralkit.rewards.AggregateReward`)
    learns its weights from the rounds it sees, so they follow from the run's ``rounds.csv``
    (``log``): this replays the reward over the log, episode by episode, exactly as training did
    (observe every round, update at each new episode). One row per episode, state and stakeholder:
    ``weight`` (the λ that episode's rewards were scored with) and ``utility`` (the reward's
    running estimate of that stakeholder's normalised utility in that state when the episode
    started; NaN before the state was seen).

    The replay is checked against the rewards the run logged (column ``reward_<name>``): a log
    without that column (another reward) or whose rewards the replay does not give (other
    options, an edited or truncated log) raises ``ValueError`` instead of returning weights the
    run never used.

    >>> from moralkit.env import IteratedGame
    >>> spec = "maxmin(game,deontological,utilitarian)"
    >>> env = IteratedGame("prisoners_dilemma", "always_cooperate", 4, rewards=[spec], seed=0)
    >>> for episode in range(2):                 # a learner that always defects against a cooperator
    ...     state = env.reset()
    ...     while not env.done:
    ...         state = env.step([D] * 4).state
    >>> w = llm_maxmin_weights(env.frame(), spec, xi=3)
    >>> w[(w.episode == 1) & (w.state == "D|C")][["stakeholder", "weight"]].round(3).to_dict("list")
    {'stakeholder': ['game', 'deontological', 'utilitarian'], 'weight': [0.0, 1.0, 0.0]}

    After one episode of defecting against a cooperator, the deontologist (utility 0 there) holds
    all the weight in state D|C: the next episode is scored there by the deontological reward.
    """
    import pandas as pd

    game = get_game(game)
    reward = get_reward(reward, xi=xi)  # a fresh copy: it learns from this log only
    if not (isinstance(reward, AggregateReward) and reward.stateful):
        raise RewardError(
            f"{reward.name!r} does not learn weights from the rounds it sees; only maxmin(...) with "
            "variant=weights (the default) or variant=switch does."
        )
    missing = {"episode", "my_prev", "opp_prev", "my_move", "opp_move"} - set(log.columns)
    if missing:
        raise ValueError(f"The log lacks column(s) {sorted(missing)}: pass a run's rounds.csv (run.log).")

    def codes(column):
        return log[column].map(_MOVE_CODE).fillna(-1).to_numpy(np.int64)  # illegal (and missing) moves: -1

    my_prev, opp_prev, my, opp = (codes(c) for c in ("my_prev", "opp_prev", "my_move", "opp_move"))
    episodes = log["episode"].to_numpy()
    logged = log.get(f"reward_{reward.name}")
    if logged is None:
        present = [c[len("reward_"):] for c in log.columns if c.startswith("reward_")]
        raise ValueError(
            f"This log has no rewards of {reward.name} (it has: {', '.join(present) or 'none'}), so it was not trained "
            "with it: pass the run's own reward (its config.json), e.g. llm_maxmin_weights(run.log, run.config.reward)."
        )
    rows, replayed = [], np.empty(len(log))
    for episode in np.unique(episodes):
        reward.update()  # what IteratedGame.reset does before each episode
        lam, utility = reward.state_weights(), reward.utility_estimates
        for s, label in enumerate(STATE_LABELS):
            rows += [{"episode": int(episode), "state": label, "stakeholder": name, "weight": float(lam[s, k]),
                      "utility": float(utility[s, k])} for k, name in enumerate(reward.stakeholder_names)]
        here = np.flatnonzero(episodes == episode)  # scored and observed as IteratedGame.step does
        replayed[here] = reward(game, my[here], opp[here], opp_prev[here], my_prev_move=my_prev[here])
        reward.observe(game, my_prev[here], opp_prev[here], my[here], opp[here])
    wrong = ~(np.abs(replayed - logged.to_numpy(float)) <= 1e-6)
    if wrong.any():
        first = int(np.argmax(wrong))
        raise ValueError(
            f"Replaying {reward.name} (xi={xi:g}) does not give the rewards this log recorded (first mismatch: "
            f"row {first}, episode {episodes[first]}: replayed {replayed[first]:.6g}, logged "
            f"{logged.iloc[first]:.6g}). Pass the run's own reward and xi (its config.json) and its whole, unedited rounds.csv."
        )
    return pd.DataFrame(rows)
