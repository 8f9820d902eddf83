"""The pure-RL prelude (docs/science.md §7): tabular Q-learning agents with moral rewards.

A Q-learner's state is memory-1: (O's last move, M's last move). It picks C or D ε-greedily
(ε decays linearly from 1 to 0 over the run) and learns with the one-step Q-learning update

    Q(s, a) ← Q(s, a) + α [r + γ max_a' Q(s', a') − Q(s, a)].

The game is played continuously (one long iterated game, one round per iteration), as in the
IJCAI'23 work. Many independent runs advance together as numpy arrays, so twenty seeds of
10 000 iterations take well under a second.

>>> result = train_q_learning("prisoners_dilemma", "game", "tit_for_tat", gamma=0.0, n_runs=4, seed=0)
>>> result.greedy_policy("a").loc["C|C"]        # after O's C and my C: defect, says the selfish learner
'D'

With γ = 0 (myopic, the setting of the LLM fine-tuning) a learner maximises the next reward only;
with γ = 0.9 it weighs the future, and against Tit-for-Tat even the selfish reward then favours
cooperation (defection pays once, then is punished; cooperation wins for γ ≥ 1/3 in the PD).
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np

from .games import C, D, MatrixGame, get_game
from .opponents import Opponent, get_opponent
from .rewards import XI, Reward, get_reward, is_stateful

__all__ = ["tft_discounted_values", "cooperation_threshold", "QLearner", "QLearningResult", "train_q_learning", "outcome_metrics", "STATE_LABELS"]

STATE_LABELS = ("C|C", "C|D", "D|C", "D|D")
"""States as "<my last move>|<opponent's last move>", indexable by 2*my_prev + opp_prev."""


@dataclass
class QLearner:
    """ε-greedy tabular Q-learners, one per independent run.

    ``q[run, opp_prev, my_prev, action]`` holds the action values.
    """

    reward: Reward
    n_runs: int = 1
    alpha: float = 0.01
    gamma: float = 0.9
    q: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}.")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}.")
        if self.q is None:
            self.q = np.zeros((self.n_runs, 2, 2, 2))

    def act(self, my_prev: np.ndarray, opp_prev: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
        runs = np.arange(self.n_runs)
        values = self.q[runs, opp_prev, my_prev]  # (n_runs, 2)
        greedy = np.where(values[:, D] > values[:, C], D, np.where(values[:, D] < values[:, C], C, rng.integers(0, 2, self.n_runs)))
        explore = rng.random(self.n_runs) < epsilon
        return np.where(explore, rng.integers(0, 2, self.n_runs), greedy)

    def update(self, my_prev, opp_prev, action, reward, next_my_prev, next_opp_prev) -> None:
        runs = np.arange(self.n_runs)
        target = reward + self.gamma * self.q[runs, next_opp_prev, next_my_prev].max(axis=-1)
        td = target - self.q[runs, opp_prev, my_prev, action]
        self.q[runs, opp_prev, my_prev, action] += self.alpha * td

    def greedy_actions(self) -> np.ndarray:
        """Greedy action per run and state, shape (n_runs, 4) in :data:`STATE_LABELS` order:
        1.0 for D, 0.0 for C, 0.5 where both actions have the same value (indifference)."""
        q = self.q.transpose(0, 2, 1, 3).reshape(self.n_runs, 4, 2)  # [run, 2*my_prev+opp_prev, a]
        return np.where(q[..., D] > q[..., C], 1.0, np.where(q[..., D] < q[..., C], 0.0, 0.5))


@dataclass
class QLearningResult:
    """What :func:`train_q_learning` returns: the learners and every round played."""

    game: MatrixGame
    learners: dict[str, QLearner]
    opponent: str
    history: "object"  # pandas DataFrame, one row per iteration and run
    iterations: int
    policy_history: "object" = None
    """Share of runs whose greedy action is D, per state, every ``snapshot_every`` iterations."""

    def converged_at(self, expected: dict[str, str], who: str = "a", share: float = 0.9) -> int | None:
        """First snapshot iteration from which, in every state of ``expected`` (e.g.
        ``{"C|C": "D"}``), at least ``share`` of the runs' greedy actions match for good."""
        ph = self.policy_history[self.policy_history["learner"] == who].set_index("iteration")
        ok = np.ones(len(ph), dtype=bool)
        for state, action in expected.items():
            p_d = ph[state].to_numpy()
            ok &= (p_d >= share) if action == "D" else (p_d <= 1 - share)
        if not ok[-1]:
            return None
        bad = np.flatnonzero(~ok)
        first = 0 if len(bad) == 0 else bad[-1] + 1
        return int(ph.index[first])

    def greedy_policy(self, who: str = "a"):
        """The majority greedy action per state across runs (a Series indexed by state)."""
        import pandas as pd

        share_d = self.learners[who].greedy_actions().mean(axis=0)
        policy = np.where(share_d > 0.5, "D", np.where(share_d < 0.5, "C", "C or D"))
        return pd.Series(policy, index=list(STATE_LABELS), name=f"policy_{who}")

    def policy_table(self):
        """Share of runs whose greedy action is D, per learner and state (my last | opp last)."""
        import pandas as pd

        data = {f"P(D) {who} ({l.reward.name})": l.greedy_actions().mean(axis=0) for who, l in self.learners.items()}
        return pd.DataFrame(data, index=pd.Index(STATE_LABELS, name="state (my last|their last)"))

    def final_behaviour(self, last: float = 0.2):
        """Share of each action type in the last fraction of iterations (no exploration by then)."""
        from .env import action_type_shares

        h = self.history
        tail = h[h["iteration"] >= int(self.iterations * (1 - last))]
        return action_type_shares(tail)

    def __repr__(self):
        who = ", ".join(f"{k}={v.reward.name}" for k, v in self.learners.items())
        return f"QLearningResult({self.game.name}, {who}, opponent={self.opponent!r}, iterations={self.iterations})"


def _check_sizes(**sizes: int) -> None:
    """Each size must be a whole number of at least 1 (a clear error instead of an empty or NaN table)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}.")


def _check_share(name: str, value: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """``value`` must be a number in [0, 1] (``low_open``: above 0; ``high_open``: below 1)."""
    ok = isinstance(value, (int, float, np.floating)) and math.isfinite(value)
    ok = ok and (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")


def train_q_learning(
    game: MatrixGame | str,
    reward: str | Reward,
    opponent: str | Opponent | Reward = "tit_for_tat",
    *,
    opponent_reward: str | Reward | None = None,
    iterations: int = 10_000,
    n_runs: int = 10,
    alpha: float = 0.01,
    gamma: float = 0.9,
    epsilon_start: float = 1.0,
    epsilon_end: float = 0.0,
    xi: float = XI,
    seed: int | None = None,
    snapshot_every: int = 100,
) -> QLearningResult:
    """Train a Q-learner (``"a"``) against a fixed opponent, or two Q-learners against each other.

    Two learners: pass ``opponent="learner"`` and ``opponent_reward=...`` (learner ``"b"``).
    Returns a :class:`QLearningResult` whose ``history`` has one row per iteration and run.

    Aggregates of stakeholders work as rewards too (``"maxmin(game,deontological,utilitarian)"``).
    A MaxMin variant that learns its weights (``weights``, ``switch``) sees all runs' rounds of an
    iteration as one batch. A greedy Q-learner can only play pure policies, though, while the
    max–min optimum is often mixed: :func:`moralkit.pluralistic.train_tabular` has a learner that
    can represent the mix.
    """
    import pandas as pd

    _check_sizes(iterations=iterations, n_runs=n_runs, snapshot_every=snapshot_every)
    _check_share("alpha", alpha, low_open=True)
    _check_share("gamma", gamma, high_open=True)
    for name, value in (("epsilon_start", epsilon_start), ("epsilon_end", epsilon_end)):
        _check_share(name, value)
    game = get_game(game)
    rng = np.random.default_rng(seed)
    reward_a = get_reward(reward, xi=xi) if isinstance(reward, str) else get_reward(reward)
    learner_a = QLearner(reward_a, n_runs, alpha, gamma)
    learners = {"a": learner_a}
    two_learners = isinstance(opponent, str) and opponent == "learner"
    if two_learners:
        if opponent_reward is None:
            raise ValueError("Two learners: name the second learner's reward too (opponent_reward=...; on the command "
                             "line --opponent-reward).")
        reward_b = get_reward(opponent_reward, xi=xi) if isinstance(opponent_reward, str) else get_reward(opponent_reward)
        if is_stateful(reward_a) or is_stateful(reward_b):
            raise ValueError("MaxMin rewards that learn their weights follow one learner against a fixed opponent; "
                             "for two learners use average, weighted or maxmin(...,variant=min).")
        learners["b"] = QLearner(reward_b, n_runs, alpha, gamma)
        opp = None
        opp_name = f"learner ({reward_b.name})"
    else:
        opp = get_opponent(opponent)
        opp_name = opp.name

    swapped = game.swap_players()
    a_prev = rng.integers(0, 2, n_runs)
    b_prev = opp.initial_moves(n_runs, rng) if opp is not None else rng.integers(0, 2, n_runs)
    if opp is not None:
        opp.reset(a_prev, b_prev)

    cols = {k: np.empty((iterations, n_runs), dtype=np.float64) for k in ("a_prev", "b_prev", "a", "b", "pay_a", "pay_b", "r_a", "r_b")}
    snapshots = []
    for t in range(iterations):
        if t % snapshot_every == 0:
            snapshots += [(t, who, *l.greedy_actions().mean(axis=0)) for who, l in learners.items()]
        eps = epsilon_start + (epsilon_end - epsilon_start) * t / max(iterations - 1, 1)
        a = learner_a.act(a_prev, b_prev, eps, rng)
        if opp is None:
            b = learners["b"].act(b_prev, a_prev, eps, rng)
        else:
            b = np.asarray(opp.act(a_prev, b_prev, rng))
        r_a = reward_a(game, a, b, b_prev, my_prev_move=a_prev)
        if is_stateful(reward_a):
            reward_a.observe(game, a_prev, b_prev, a, b)
            reward_a.update()
        learner_a.update(a_prev, b_prev, a, r_a, a, b)
        if opp is None:
            r_b = learners["b"].reward(swapped, b, a, a_prev, my_prev_move=b_prev)
            learners["b"].update(b_prev, a_prev, b, r_b, b, a)
        else:
            r_b = np.full(n_runs, np.nan)
            opp.observe(a, b)
        pay = game.payoffs[a, b]
        for k, v in (("a_prev", a_prev), ("b_prev", b_prev), ("a", a), ("b", b), ("pay_a", pay[:, 0]), ("pay_b", pay[:, 1]), ("r_a", r_a), ("r_b", r_b)):
            cols[k][t] = v
        a_prev, b_prev = a, b

    names = {0: "C", 1: "D"}
    history = pd.DataFrame(
        {
            "iteration": np.repeat(np.arange(iterations), n_runs),
            "run": np.tile(np.arange(n_runs), iterations),
            **{k: cols[k].ravel() for k in cols},
        }
    )
    for k in ("a_prev", "b_prev", "a", "b"):
        history[k] = history[k].astype(int)
    from .env import action_types

    history["action_type"] = action_types(history["a"].to_numpy(), history["b_prev"].to_numpy())
    for k in ("a_prev", "b_prev", "a", "b"):
        history[k] = history[k].map(names)
    snapshots += [(iterations, who, *l.greedy_actions().mean(axis=0)) for who, l in learners.items()]
    policy_history = pd.DataFrame(snapshots, columns=["iteration", "learner", *STATE_LABELS])
    return QLearningResult(game, learners, opp_name, history, iterations, policy_history)


def outcome_metrics(history, window: int = 500):
    """Outcome metrics of docs/science.md §7 per window of iterations (mean over runs and rounds).

    * ``collective``: R_a + R_b per round;
    * ``equality``: 1 − Gini of the two players' payoffs in the window (1 = perfectly equal);
    * ``worse_off``: min(R_a, R_b) per round (the worse-off player's payoff).
    """
    import pandas as pd

    h = history.assign(window=(history["iteration"] // window) * window)
    g = h.groupby(["window", "run"])
    sums = g[["pay_a", "pay_b"]].sum()
    total = sums["pay_a"] + sums["pay_b"]
    gini = (sums["pay_a"] - sums["pay_b"]).abs() / (2 * total.where(total != 0, np.nan))
    per_run = pd.DataFrame(
        {
            "collective": g.apply(lambda x: (x["pay_a"] + x["pay_b"]).mean(), include_groups=False),
            "equality": 1 - gini.fillna(0.0),
            "worse_off": g.apply(lambda x: np.minimum(x["pay_a"], x["pay_b"]).mean(), include_groups=False),
        }
    )
    return per_run.groupby("window").mean()


def tft_discounted_values(game: MatrixGame | str, gamma) -> dict[str, np.ndarray]:
    """Against Tit-for-Tat, the average payoff per round, ``(1 − γ) × Σ γ^t r_t``, of three plans.

    Every plan starts in a state where Tit-for-Tat is about to cooperate (I cooperated last).
    With the letters R (CC), S (CD), T (DC), P (DD) of my payoffs:

    * always C: R, R, R, ... → R
    * always D: T, P, P, ... → (1 − γ) T + γ P
    * alternate D, C: T, S, T, S, ... → (T + γ S) / (1 + γ)

    ``gamma`` may be a number or an array; values come back in the same shape.
    """
    L = get_game(game).letters()
    R, S, T, P = L["R"], L["S"], L["T"], L["P"]
    g = np.asarray(gamma, dtype=float)
    return {
        "always C": np.full_like(g, R),
        "always D": (1 - g) * T + g * P,
        "alternate D, C": (T + g * S) / (1 + g),
    }


def cooperation_threshold(game: MatrixGame | str = "prisoners_dilemma") -> float:
    """Exercise 2.3: the smallest γ for which cooperating forever is best against Tit-for-Tat.

    Defecting forever loses to cooperating when R ≥ (1 − γ) T + γ P, i.e. γ ≥ (T − R) / (T − P);
    alternating loses when R (1 + γ) ≥ T + γ S, i.e. γ ≥ (T − R) / (R − S). Both must hold.
    In the paper's Prisoner's Dilemma (R=3, S=0, T=4, P=1) both give 1/3.

    Needs T > R > P and R > S (a Prisoner's-Dilemma-like game); if T ≤ R cooperating never
    loses and the threshold is 0.
    """
    L = get_game(game).letters()
    R, S, T, P = L["R"], L["S"], L["T"], L["P"]
    if T <= R:
        return 0.0
    if not (R > P and R > S):
        raise ValueError(
            f"Cooperating never beats defecting against Tit-for-Tat here (R={R:g}, S={S:g}, T={T:g}, P={P:g}): "
            "the threshold needs R > P and R > S."
        )
    return float(max((T - R) / (T - P), (T - R) / (R - S)))
