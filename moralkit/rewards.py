"""Moral rewards: intrinsic rewards that encode a moral theory (docs/science.md §2).

A reward looks at one round of an iterated game from the learning agent M's side::

    reward(game, my_move, opp_move, opp_prev_move) -> float

``my_move`` is M's move now, ``opp_move`` O's move now and ``opp_prev_move`` O's move in the
previous round (part of the state M saw when it chose). Moves are ``C`` (0), ``D`` (1) or
``ILLEGAL`` (-1, an answer that is neither action label). Every function here is vectorised:
pass numpy arrays and you get an array back, one reward per round.

>>> from moralkit.games import get_game, C, D
>>> pd = get_game("prisoners_dilemma")
>>> get_reward("deontological")(pd, D, C, C)     # defected against someone who just cooperated
-3.0
>>> get_reward("utilitarian")(pd, C, C, D)
6.0
>>> get_reward("game", r_illegal=-6)(pd, -1, C, C)
-6.0

Write your own reward as a plain function of those four arguments (add a keyword ``xi`` if it
needs the norm-violation penalty) and wrap it with :func:`make_reward`, or decorate it with
:func:`register_reward` to make it available by name everywhere (CLI, notebooks, training).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping

import numpy as np

from .games import C, D, ILLEGAL, MatrixGame, get_game

__all__ = [
    "XI",
    "R_ILLEGAL",
    "Reward",
    "RewardError",
    "accepts_xi",
    "REWARDS",
    "make_reward",
    "register_reward",
    "get_reward",
    "reward_names",
    "reward_table",
    "reward_range",
    "weighted_sum",
    "normalised",
    "PAPER_REWARDS",
]

XI: float = 3.0
"""Norm-violation penalty ξ used in the LLM fine-tuning of the paper (its evaluation code used 4,
the IJCAI'23/AIES'24 work 5)."""
R_ILLEGAL: float = -6.0
"""Reward for an answer that is neither action label."""

RewardFn = Callable[..., "np.ndarray | float"]


class RewardError(ValueError):
    """An unknown reward name or an unusable reward function."""


def check_parameters(xi: float | None = None, r_illegal: float | None = None) -> None:
    """Reject a penalty that is not a number: ξ must be finite and ≥ 0 (a size: the norm-violation
    penalty is subtracted), R_illegal finite.

    >>> check_parameters(xi=-3)
    Traceback (most recent call last):
    ...
    moralkit.rewards.RewardError: xi (the norm-violation penalty) must be a finite number >= 0, got -3; it is a size: the rewards subtract it themselves.
    """
    if xi is not None and not (_is_number(xi) and math.isfinite(float(xi)) and float(xi) >= 0):
        raise RewardError(f"xi (the norm-violation penalty) must be a finite number >= 0, got {xi!r}; it is a size: "
                          "the rewards subtract it themselves.")
    if r_illegal is not None and not (_is_number(r_illegal) and math.isfinite(float(r_illegal))):
        raise RewardError(f"r_illegal (the reward of an illegal answer) must be a finite number, got {r_illegal!r}.")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def accepts_xi(fn: Callable) -> bool:
    """Whether a reward function takes the norm-violation penalty as keyword ``xi``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "xi" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _accepts(fn: Callable, keyword: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return keyword in params


@dataclass(frozen=True)
class Reward:
    """A named moral reward with its parameters.

    Calling it handles what every reward shares, so that ``fn`` only describes the moral theory:

    * moves are broadcast to numpy arrays;
    * an illegal move of M earns ``r_illegal`` (whatever ``fn`` says);
    * a round where only O's answer was illegal (possible when O is a learning LLM) is void
      for M: reward 0;
    * ``xi`` is passed to ``fn`` when ``fn`` takes a keyword ``xi``.

    Scalars in, float out; arrays in, array out.
    """

    name: str
    fn: RewardFn = field(repr=False)
    xi: float = XI
    r_illegal: float = R_ILLEGAL
    description: str = ""

    def __post_init__(self) -> None:
        check_parameters(self.xi, self.r_illegal)

    def __call__(self, game: MatrixGame | str, my_move, opp_move, opp_prev_move=C, *, my_prev_move=None):
        """The reward of each round. ``my_prev_move`` (M's own previous move, the rest of the
        state M saw) is only needed by rewards that depend on it, e.g. MaxMin weights per state."""
        game = get_game(game)
        scalar = all(np.ndim(x) == 0 for x in (my_move, opp_move, opp_prev_move))
        arrays = [np.asarray(x, dtype=np.int64) for x in (my_move, opp_move, opp_prev_move)]
        if my_prev_move is not None:
            arrays.append(np.asarray(my_prev_move, dtype=np.int64))
        my, opp, prev, *mine_before = np.broadcast_arrays(*arrays)
        my_legal = my >= 0
        opp_legal = opp >= 0
        safe_my = np.where(my_legal, my, C)
        safe_opp = np.where(opp_legal, opp, C)
        safe_prev = np.where(prev >= 0, prev, C)
        safe_mine_before = np.where(mine_before[0] >= 0, mine_before[0], C) if mine_before else None
        value = np.asarray(self._values(game, safe_my, safe_opp, safe_prev, safe_mine_before), dtype=float)
        value = np.broadcast_to(value, my.shape)
        out = np.where(my_legal, np.where(opp_legal, value, 0.0), self.r_illegal)
        return float(out) if scalar else out

    def _values(self, game: MatrixGame, my, opp, prev, my_prev):
        """The rewards of legal rounds (subclasses that are not one plain function override this)."""
        kwargs = {"xi": self.xi} if accepts_xi(self.fn) else {}
        if my_prev is not None and _accepts(self.fn, "my_prev_move"):
            kwargs["my_prev_move"] = my_prev
        return self.fn(game, my, opp, prev, **kwargs)

    def with_params(self, **params) -> "Reward":
        """A copy with other ``xi`` / ``r_illegal`` (or name/description)."""
        return replace(self, **params)

    def table(self, game: MatrixGame | str):
        """Shortcut for :func:`reward_table`."""
        return reward_table(self, game)


# --------------------------------------------------------------------- the theories
def _payoffs(game: MatrixGame, my, opp):
    cells = game.payoffs[my, opp]
    return cells[..., 0], cells[..., 1]


def _violates_norm(my, prev):
    """The deontological norm: do not defect against someone who just cooperated."""
    return (my == D) & (prev == C)


def game_reward(game, my_move, opp_move, opp_prev_move):
    """Selfish: M's own payoff."""
    return _payoffs(game, my_move, opp_move)[0]


def deontological_reward(game, my_move, opp_move, opp_prev_move, *, xi=XI):
    """−ξ for defecting against an opponent who cooperated last round, else 0. Ignores payoffs."""
    return np.where(_violates_norm(my_move, opp_prev_move), -xi, 0.0)


def utilitarian_reward(game, my_move, opp_move, opp_prev_move):
    """Collective welfare: M's payoff + O's payoff."""
    r_m, r_o = _payoffs(game, my_move, opp_move)
    return r_m + r_o


def game_deontological_reward(game, my_move, opp_move, opp_prev_move, *, xi=XI):
    """M's payoff, minus ξ when M defects against a cooperator."""
    return game_reward(game, my_move, opp_move, opp_prev_move) + deontological_reward(
        game, my_move, opp_move, opp_prev_move, xi=xi
    )


def _equality(r_m, r_o):
    total = r_m + r_o
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(r_m - r_o) / total
    # both players got nothing: perfectly equal
    return np.where(total == 0, np.where(r_m == r_o, 0.0, 1.0), ratio)


def virtue_equality_reward(game, my_move, opp_move, opp_prev_move):
    """1 − |R_M − R_O| / (R_M + R_O): 1 when both get the same (IJCAI'23). 1 when both get 0."""
    return 1.0 - _equality(*_payoffs(game, my_move, opp_move))


def virtue_kindness_reward(game, my_move, opp_move, opp_prev_move, *, xi=XI):
    """ξ for every C (IJCAI'23)."""
    return np.where(my_move == C, xi, 0.0)


def anti_utilitarian_reward(game, my_move, opp_move, opp_prev_move):
    """−(R_M + R_O): likes collective harm (AIES'24)."""
    return -utilitarian_reward(game, my_move, opp_move, opp_prev_move)


def malicious_deontological_reward(game, my_move, opp_move, opp_prev_move, *, xi=XI):
    """+ξ for defecting against a cooperator (AIES'24)."""
    return -deontological_reward(game, my_move, opp_move, opp_prev_move, xi=xi)


def virtue_inequality_reward(game, my_move, opp_move, opp_prev_move):
    """|R_M − R_O| / (R_M + R_O): likes unequal outcomes (AIES'24). 0 when both get 0."""
    return _equality(*_payoffs(game, my_move, opp_move))


def virtue_aggression_reward(game, my_move, opp_move, opp_prev_move, *, xi=XI):
    """ξ for every D (AIES'24)."""
    return np.where(my_move == D, xi, 0.0)


# --------------------------------------------------------------------- registry
REWARDS: dict[str, Reward] = {}
_ALIASES: dict[str, str] = {}


def make_reward(
    fn: RewardFn | Reward,
    name: str | None = None,
    *,
    xi: float = XI,
    r_illegal: float = R_ILLEGAL,
    description: str | None = None,
) -> Reward:
    """Turn a plain function ``fn(game, my_move, opp_move, opp_prev_move[, xi=...])`` into a :class:`Reward`.

    The function receives numpy arrays of legal moves (0 = C, 1 = D) and should use numpy
    operations (``np.where``, ``==``, arithmetic on ``game.payoffs[my_move, opp_move]``) so it
    works on a whole batch of rounds at once.

    >>> def kind_but_not_naive(game, my_move, opp_move, opp_prev_move):
    ...     return np.where(my_move == opp_prev_move, 1.0, 0.0)   # reciprocate
    >>> r = make_reward(kind_but_not_naive)
    >>> r(get_game("stag_hunt"), [0, 1], [0, 0], [0, 0]).tolist()
    [1.0, 0.0]
    """
    if isinstance(fn, Reward):
        return fn
    if not callable(fn):
        raise RewardError(f"A reward must be a function or a Reward, got {type(fn).__name__}.")
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        params = None
    if params is not None and len(params) != 4:
        raise RewardError(
            f"A reward function takes (game, my_move, opp_move, opp_prev_move) -- four positional "
            f"arguments -- but {getattr(fn, '__name__', fn)!r} takes {len(params)}: "
            f"{[p.name for p in params]}."
        )
    doc = inspect.getdoc(fn) or ""
    return Reward(
        name=name or getattr(fn, "__name__", "custom").removesuffix("_reward"),
        fn=fn,
        xi=xi,
        r_illegal=r_illegal,
        description=description if description is not None else doc.split("\n")[0],
    )


def register_reward(fn: RewardFn | None = None, *, name: str | None = None, aliases: Iterable[str] = ()):
    """Add a reward to the registry so it can be asked for by name. Usable as a decorator."""

    def _register(f):
        reward = make_reward(f, name)
        REWARDS[reward.name] = reward
        for a in aliases:
            _ALIASES[a] = reward.name
        return f

    return _register(fn) if fn is not None else _register


for _fn, _aliases in [
    (game_reward, ["selfish"]),
    (deontological_reward, ["de", "deont"]),
    (utilitarian_reward, ["ut", "util"]),
    (game_deontological_reward, ["game+deontological", "game_de"]),
    (virtue_equality_reward, ["equality"]),
    (virtue_kindness_reward, ["kindness"]),
    (anti_utilitarian_reward, []),
    (malicious_deontological_reward, []),
    (virtue_inequality_reward, ["inequality"]),
    (virtue_aggression_reward, ["aggression"]),
]:
    register_reward(_fn, aliases=_aliases)

PAPER_REWARDS: tuple[str, ...] = ("game", "deontological", "utilitarian", "game_deontological")
"""The four rewards the LLM paper fine-tunes with."""


def reward_names() -> list[str]:
    return list(REWARDS)


def get_reward(reward: str | Reward | RewardFn, *, xi: float | None = None, r_illegal: float | None = None) -> Reward:
    """A reward by name (or a :class:`Reward`, or a plain function), with optional parameters.

    >>> get_reward("deontological", xi=4).xi
    4.0
    """
    check_parameters(xi, r_illegal)
    if isinstance(reward, str) and "(" in reward:
        base = _parse_aggregate(reward, xi)
    elif isinstance(reward, str):
        key = reward.strip().lower().replace("-", "_").replace(" ", "_")
        key = _ALIASES.get(key, key)
        if key not in REWARDS:
            raise RewardError(
                f"Unknown reward {reward!r}. Valid names: {', '.join(REWARDS)} "
                f"(aliases: {', '.join(sorted(_ALIASES))}); an aggregate of several, e.g. "
                "maxmin(game,deontological,utilitarian); or pass your own function."
            )
        base = REWARDS[key]
    else:
        base = make_reward(reward)
    params = {}
    if xi is not None:
        params["xi"] = float(xi)
    if r_illegal is not None:
        params["r_illegal"] = float(r_illegal)
    return base.with_params(**params) if params else base


# --------------------------------------------------------------------- views
def reward_table(reward: str | Reward | RewardFn, game: str | MatrixGame):
    """All rewards of one game as a table a notebook can show.

    Rows: (M's move, O's previous move); columns: O's move now. Plus a row for an illegal answer.
    """
    import pandas as pd

    reward, game = get_reward(reward), get_game(game)
    rows, index = [], []
    for my in (C, D):
        for prev in (C, D):
            rows.append([reward(game, my, opp, prev) for opp in (C, D)])
            index.append((game.actions[my], game.actions[prev]))
    rows.append([reward(game, ILLEGAL, opp, C) for opp in (C, D)])
    index.append(("illegal", "any"))
    frame = pd.DataFrame(
        rows,
        index=pd.MultiIndex.from_tuples(index, names=["my move", "opponent's previous move"]),
        columns=pd.Index([game.actions[o] for o in (C, D)], name="opponent's move"),
    )
    frame.attrs["reward"] = reward.name
    frame.attrs["game"] = game.name
    return frame


def reward_range(reward: str | Reward | RewardFn, game: str | MatrixGame) -> tuple[float, float]:
    """Smallest and largest reward over all legal rounds of a game."""
    reward, game = get_reward(reward), get_game(game)
    my, opp, prev = np.meshgrid([C, D], [C, D], [C, D], indexing="ij")
    values = reward(game, my.ravel(), opp.ravel(), prev.ravel())
    return float(values.min()), float(values.max())


# --------------------------------------------------------------------- combinators
def weighted_sum(weights: Mapping[str | Reward, float], name: str | None = None) -> Reward:
    """A new reward: Σ wᵢ · rewardᵢ (e.g. ``{"game": 1, "deontological": 1}`` is Game+Deontological)."""
    parts = [(get_reward(r), float(w)) for r, w in weights.items()]
    if not parts:
        raise RewardError("weighted_sum needs at least one reward.")

    def combined(game, my_move, opp_move, opp_prev_move):
        return sum(w * r.fn(game, my_move, opp_move, opp_prev_move, **({"xi": r.xi} if accepts_xi(r.fn) else {}))
                   for r, w in parts)

    label = name or "+".join(f"{w:g}*{r.name}" for r, w in parts)
    return Reward(label, combined, description=f"weighted sum of {', '.join(r.name for r, _ in parts)}")


def normalised_table(reward: str | Reward | RewardFn, game: str | MatrixGame) -> np.ndarray:
    """A reward min–max normalised to [0, 1] over the 8 legal rounds of a game (docs/science.md §8).

    Returns an array ``table[my_move, opp_move, opp_prev_move]``. Rewards live on different
    scales (payoffs, ±ξ, ratios); normalise before comparing or aggregating them. A reward that
    is the same in every round cannot be normalised (and a stakeholder who is indifferent to
    everything can never be worse off): it is rejected with a :class:`RewardError`.

    >>> normalised_table("utilitarian", "prisoners_dilemma")[:, :, 0].tolist()   # [my move][their move], after their C
    [[1.0, 0.5], [0.5, 0.0]]
    """
    reward, game = get_reward(reward), get_game(game)
    my, opp, prev = np.meshgrid([C, D], [C, D], [C, D], indexing="ij")
    raw = np.asarray(reward(game, my, opp, prev), dtype=float)
    lo, hi = float(raw.min()), float(raw.max())
    if not np.all(np.isfinite(raw)):
        raise RewardError(f"The reward {reward.name!r} is not finite in every legal round of {game.title}: {raw.ravel().tolist()}.")
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        raise RewardError(
            f"The reward {reward.name!r} is {lo:g} in every legal round of {game.title}, so it cannot be normalised "
            "to [0, 1] (min = max), and a stakeholder who cares about nothing is never worse off. Leave it out of the "
            "stakeholders, or use a game where its reward varies."
        )
    return (raw - lo) / (hi - lo)


def normalised(reward: str | Reward | RewardFn, game: str | MatrixGame) -> Reward:
    """Min–max normalise a reward over a game's legal outcomes to [0, 1] (see :func:`normalised_table`).

    Rejects a reward that is constant over the game's legal rounds. An illegal answer earns −1,
    one full scale below the worst legal round.
    """
    reward, game = get_reward(reward), get_game(game)
    table = normalised_table(reward, game)

    def norm(game_, my_move, opp_move, opp_prev_move):
        return table[my_move, opp_move, opp_prev_move]

    return Reward(f"normalised_{reward.name}", norm, r_illegal=-1.0, description=f"{reward.name} scaled to [0, 1] on {game.title}")


# --------------------------------------------------------------------- aggregating stakeholders (docs/science.md §8)
STATE_COUNT = 4
"""Memory-1 states (my previous move, opponent's previous move), indexed ``2 * my_prev + opp_prev``."""

AGGREGATES: dict[str, str] = {
    "average": "the utilitarian average of the stakeholders' normalised rewards",
    "weighted": "a weighted average of the normalised rewards (weights given, e.g. game=0.7)",
    "maxmin": "the egalitarian rule: serve the worst-off stakeholder (three variants, see MAXMIN_VARIANTS)",
}
"""Ways to aggregate stakeholders, usable as reward names: ``"maxmin(game,deontological,utilitarian)"``."""

MAXMIN_VARIANTS: dict[str, str] = {
    "weights": "smoothly updated stakeholder weights per state: multiplicative steps towards the soft minimum",
    "switch": "each update, the reward of the stakeholder worst off in each state (MaxMin-RLHF's Algorithm 1)",
    "min": "the per-sample minimum of the normalised rewards (what MaxMin-RLHF's public code does)",
}
"""The practical MaxMin variants; ``maxmin(...)`` without ``variant=`` is the first."""

_OPTIONS = {"variant": str, "rate": float, "temperature": float, "smoothing": float}


def _aggregate_placeholder(game, my_move, opp_move, opp_prev_move):  # pragma: no cover - never called
    raise NotImplementedError("AggregateReward computes its values itself.")


class _Tracker:
    """What a stateful MaxMin reward has learned so far: utilities and weights per state."""

    def __init__(self, k: int):
        self.utility = np.full((STATE_COUNT, k), np.nan)
        self.log_weights = np.zeros((STATE_COUNT, k))
        self.batch_sum = np.zeros((STATE_COUNT, k))
        self.batch_n = np.zeros(STATE_COUNT)
        self.updates = 0

    def state_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}

    def load(self, state: dict) -> None:
        for k, v in state.items():
            current = getattr(self, k)
            setattr(self, k, np.array(v, dtype=float).reshape(current.shape) if isinstance(current, np.ndarray) else v)


@dataclass(frozen=True, eq=False)
class AggregateReward(Reward):
    """One reward made of several stakeholders' rewards, each min–max normalised per game.

    ``rule`` is ``"average"`` (utilitarian), ``"weighted"`` (``weights``, summing to 1) or one
    of the MaxMin variants of :data:`MAXMIN_VARIANTS`:

    * ``"min"``: every round earns the *smallest* normalised reward of the stakeholders. It needs
      no state, but it maximises E[min_k r_k], which can be lower than max min_k E[r_k] when the
      egalitarian optimum mixes (Jensen: E[min] <= min E).
    * ``"switch"`` and ``"weights"`` keep, for each memory-1 state, an estimate of each
      stakeholder's utility (its mean normalised reward in that state over recent updates). After
      each update (batch of rounds) ``"switch"`` rewards the next batch, in each state, with the
      reward of the stakeholder worst off there; ``"weights"`` rewards it with the weighted
      average Σ_k λ_k r_k, where log λ moves a step ``rate`` towards −U/``temperature`` (a
      multiplicative-weights update whose fixed point is the soft minimum softmax(−U/τ)). At the
      max–min point the weights make C and D equally good, so a learner with a stochastic policy
      can settle on the mixed optimum.

    The stateful variants learn from the rounds they see: whoever plays calls :meth:`observe`
    after each round and :meth:`update` after each batch (:class:`moralkit.env.IteratedGame`
    does both: a new episode starts a new batch). Rewards for a round need M's previous move
    (``my_prev_move=``) to know the state. A copy made by :meth:`with_params` starts afresh.

    >>> from moralkit.games import get_game, C, D
    >>> pd = get_game("prisoners_dilemma")
    >>> r = get_reward("average(game,deontological,utilitarian)")
    >>> round(r(pd, C, C, C), 4), round(r(pd, D, C, C), 4)      # (0.75+1+1)/3 and (1+0+0.5)/3
    (0.9167, 0.5)
    >>> get_reward("maxmin(game,deontological,utilitarian,variant=min)")(pd, D, C, C)
    0.0
    """

    stakeholders: tuple[Reward, ...] = ()
    rule: str = "average"
    weights: tuple[float, ...] | None = None
    rate: float = 0.5
    """``weights``: the step of each multiplicative update of log λ (1 jumps to the soft minimum)."""
    temperature: float = 0.02
    """``weights``: τ of the soft minimum softmax(−U/τ); small τ is close to the hard minimum."""
    smoothing: float = 0.5
    """``switch``/``weights``: the share of the newest batch in the running utility estimates."""

    def __post_init__(self):
        rules = ("average", "weighted", *MAXMIN_VARIANTS)
        if self.rule not in rules:
            raise RewardError(f"Unknown aggregation rule {self.rule!r}; use one of {', '.join(rules)}.")
        parts = tuple(make_reward(s) for s in self.stakeholders)
        if len(parts) < 2:
            raise RewardError(f"Aggregating needs at least two stakeholders, got {len(parts)}.")
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise RewardError(f"Each stakeholder may appear once; got {names}.")
        # the aggregate's ξ applies to every stakeholder that takes ξ
        object.__setattr__(self, "stakeholders", tuple(p.with_params(xi=self.xi) for p in parts))
        if self.rule == "weighted":
            w = np.asarray(self.weights if self.weights is not None else [], dtype=float)
            if w.shape != (len(parts),) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
                raise RewardError(
                    f"A weighted aggregate needs one weight >= 0 per stakeholder ({len(parts)}), not all 0; got {self.weights!r}."
                )
            object.__setattr__(self, "weights", tuple(float(x) for x in w / w.sum()))
        for key in ("rate", "smoothing"):
            if not 0 < getattr(self, key) <= 1:
                raise RewardError(f"{key} must be in (0, 1], got {getattr(self, key)}.")
        if not self.temperature > 0:
            raise RewardError(f"temperature must be > 0, got {self.temperature}.")
        object.__setattr__(self, "_tracker", _Tracker(len(parts)))
        object.__setattr__(self, "_tables", {})

    # ----------------------------------------------------------------- values
    @property
    def stakeholder_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stakeholders)

    @property
    def stateful(self) -> bool:
        """Whether the reward adapts to the rounds it sees (``switch`` and ``weights``)."""
        return self.rule in ("switch", "weights")

    def tables(self, game: MatrixGame | str) -> np.ndarray:
        """The stakeholders' normalised rewards, ``[k, my_move, opp_move, opp_prev_move]`` (cached per game)."""
        game = get_game(game)
        if game not in self._tables:
            self._tables[game] = np.stack([normalised_table(s, game) for s in self.stakeholders])
        return self._tables[game]

    def state_weights(self) -> np.ndarray:
        """The weights λ[state, stakeholder] the next rounds are scored with (rows sum to 1).

        ``average``: uniform; ``weighted``: the given weights; ``switch``: one-hot on the worst-off
        stakeholder per state (uniform where nothing was seen yet); ``weights``: softmax of log λ.
        ``min`` has no weights (the minimum is taken round by round): NaN.
        """
        k = len(self.stakeholders)
        if self.rule == "average":
            return np.full((STATE_COUNT, k), 1.0 / k)
        if self.rule == "weighted":
            return np.tile(np.asarray(self.weights), (STATE_COUNT, 1))
        if self.rule == "min":
            return np.full((STATE_COUNT, k), np.nan)
        t = self._tracker
        if self.rule == "switch":
            out = np.full((STATE_COUNT, k), 1.0 / k)
            seen = ~np.isnan(t.utility).any(axis=1)
            out[seen] = np.eye(k)[np.argmin(t.utility[seen], axis=1)]
            return out
        z = t.log_weights - t.log_weights.max(axis=1, keepdims=True)
        return np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)

    def _values(self, game, my, opp, prev, my_prev):
        values = self.tables(game)[:, my, opp, prev]  # (k, ...)
        if self.rule == "min":
            return values.min(axis=0)
        if self.rule in ("average", "weighted"):
            return np.tensordot(self.state_weights()[0], values, axes=1)
        if my_prev is None:
            raise RewardError(
                f"{self.name} weighs its stakeholders per state (my previous move, their previous move): "
                "call it with my_prev_move=... as well."
            )
        lam = self.state_weights()[2 * my_prev + prev]  # (..., k)
        return np.einsum("...k,k...->...", lam, values)

    # ----------------------------------------------------------------- learning the weights
    def observe(self, game, my_prev_move, opp_prev_move, my_move, opp_move) -> None:
        """Record rounds just played (arrays; illegal moves are skipped) into the current batch."""
        if not self.stateful:
            return
        my_prev, opp_prev, my, opp = (np.atleast_1d(np.asarray(x, dtype=np.int64)) for x in
                                      (my_prev_move, opp_prev_move, my_move, opp_move))
        legal = (my >= 0) & (opp >= 0) & (my_prev >= 0) & (opp_prev >= 0)
        if not legal.any():
            return
        my_prev, opp_prev, my, opp = my_prev[legal], opp_prev[legal], my[legal], opp[legal]
        values = self.tables(game)[:, my, opp, opp_prev]  # (k, n)
        state = 2 * my_prev + opp_prev
        t = self._tracker
        np.add.at(t.batch_sum, state, values.T)
        np.add.at(t.batch_n, state, 1.0)

    def update(self) -> None:
        """End of a batch: refresh the utility estimates and the weights from the rounds observed."""
        if not self.stateful:
            return
        t = self._tracker
        seen = t.batch_n > 0
        if seen.any():
            mean = t.batch_sum[seen] / t.batch_n[seen, None]
            old = t.utility[seen]
            t.utility[seen] = np.where(np.isnan(old), mean, (1 - self.smoothing) * old + self.smoothing * mean)
            if self.rule == "weights":
                step = (1 - self.rate) * t.log_weights[seen] - self.rate * t.utility[seen] / self.temperature
                t.log_weights[seen] = step - step.max(axis=1, keepdims=True)
            t.updates += 1
        t.batch_sum[:] = 0.0
        t.batch_n[:] = 0.0

    @property
    def utility_estimates(self) -> np.ndarray:
        """The running estimate of each stakeholder's normalised utility, ``[state, k]`` (NaN: unseen)."""
        return self._tracker.utility.copy()

    def state_dict(self) -> dict:
        """What the reward has learned (for checkpoints); :meth:`load_state_dict` restores it."""
        return self._tracker.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self._tracker.load(state)

    def __repr__(self) -> str:
        return f"AggregateReward({self.name!r}, xi={self.xi:g})"


def is_stateful(reward) -> bool:
    """Whether a reward learns from the rounds it sees (then call ``observe`` and ``update``)."""
    return bool(getattr(reward, "stateful", False))


def aggregate(
    stakeholders: Iterable[str | Reward | RewardFn],
    rule: str = "maxmin",
    *,
    variant: str | None = None,
    weights: Iterable[float] | Mapping[str, float] | None = None,
    xi: float = XI,
    r_illegal: float = R_ILLEGAL,
    name: str | None = None,
    **options,
) -> AggregateReward:
    """Aggregate stakeholders' rewards into one: ``rule`` is ``"average"``, ``"weighted"`` or ``"maxmin"``.

    Stakeholders are reward names or your own reward functions. ``variant`` picks the MaxMin
    variant (default ``"weights"``, see :data:`MAXMIN_VARIANTS`); ``options`` are ``rate``,
    ``temperature``, ``smoothing`` of :class:`AggregateReward`. The same aggregates are
    available by name: ``get_reward("maxmin(game,deontological,utilitarian,variant=switch)")``,
    ``"average(game,utilitarian)"``, ``"weighted(game=0.7,deontological=0.3)"``.

    >>> aggregate(["game", "deontological"], "weighted", weights=[3, 1]).weights
    (0.75, 0.25)
    """
    parts = [get_reward(s) for s in stakeholders]
    if rule not in AGGREGATES:
        raise RewardError(f"Unknown aggregation {rule!r}; use one of {', '.join(AGGREGATES)}.")
    if rule == "maxmin":
        variant = variant or next(iter(MAXMIN_VARIANTS))
        if variant not in MAXMIN_VARIANTS:
            raise RewardError(f"Unknown MaxMin variant {variant!r}; use one of {', '.join(MAXMIN_VARIANTS)}.")
        internal = variant
    else:
        if variant is not None:
            raise RewardError(f"variant= only applies to maxmin, not to {rule!r}.")
        internal = rule
    if isinstance(weights, Mapping):
        weights = [weights[p.name] if p.name in weights else 0.0 for p in parts]
    if rule == "weighted" and weights is None:
        raise RewardError("A weighted aggregate needs weights, e.g. weighted(game=0.7,deontological=0.3).")
    if rule != "weighted" and weights is not None:
        raise RewardError(f"weights= only applies to 'weighted', not to {rule!r}.")
    unknown = set(options) - {"rate", "temperature", "smoothing"}
    if unknown:
        raise RewardError(f"Unknown option(s) {sorted(unknown)}; aggregates take rate, temperature and smoothing.")
    reward = AggregateReward(
        name="", fn=_aggregate_placeholder, xi=xi, r_illegal=r_illegal, stakeholders=tuple(parts), rule=internal,
        weights=None if weights is None else tuple(float(w) for w in weights), **options,
    )
    if name is None:
        args = [f"{s}={w:g}" for s, w in zip(reward.stakeholder_names, reward.weights)] if rule == "weighted" \
            else list(reward.stakeholder_names)
        if rule == "maxmin" and variant != next(iter(MAXMIN_VARIANTS)):
            args.append(f"variant={variant}")
        defaults = {f: AggregateReward.__dataclass_fields__[f].default for f in ("rate", "temperature", "smoothing")}
        args += [f"{k}={v:g}" for k, v in options.items() if v != defaults[k]]
        name = f"{rule}({','.join(args)})"
    description = {"average": "utilitarian average", "weighted": "weighted average"}.get(rule, f"egalitarian max-min ({internal})")
    return replace(reward, name=name, description=f"{description} of normalised {', '.join(reward.stakeholder_names)}")


def _parse_aggregate(spec: str, xi: float | None) -> AggregateReward:
    """``"maxmin(game,deontological,utilitarian,variant=switch)"`` → :func:`aggregate`."""
    import re

    match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", spec)
    if not match:
        raise RewardError(f"Cannot read {spec!r}: write an aggregate as maxmin(game,deontological,utilitarian).")
    rule, body = match.group(1).lower(), match.group(2)
    if rule not in AGGREGATES:
        raise RewardError(f"Unknown aggregate {rule!r} in {spec!r}; use one of {', '.join(AGGREGATES)} (e.g. maxmin(game,deontological)).")
    if "(" in body:
        raise RewardError(f"Aggregates do not nest ({spec!r}): list plain reward names.")
    stakeholders, weights, options = [], {}, {}
    for part in (p.strip() for p in body.split(",")):
        if not part:
            continue
        key, eq, value = (x.strip() for x in part.partition("="))
        if eq and key.lower() in _OPTIONS:
            try:
                options[key.lower()] = _OPTIONS[key.lower()](value)
            except ValueError:
                raise RewardError(f"{key}={value!r} in {spec!r} is not a {_OPTIONS[key.lower()].__name__}.") from None
        elif eq:
            if rule != "weighted":
                raise RewardError(f"{part!r} in {spec!r}: only weighted(...) takes stakeholder weights; options are {', '.join(_OPTIONS)}.")
            try:
                weights[get_reward(key).name] = float(value)
            except ValueError:
                raise RewardError(f"The weight of {key!r} in {spec!r} must be a number, got {value!r}.") from None
            stakeholders.append(key)
        else:
            stakeholders.append(part)
    variant = options.pop("variant", None)
    kwargs = {"xi": xi} if xi is not None else {}
    return aggregate(stakeholders, rule, variant=variant, weights=weights or None, **kwargs, **options)


__all__ += ["normalised_table", "AGGREGATES", "MAXMIN_VARIANTS", "AggregateReward", "aggregate", "is_stateful", "STATE_COUNT"]
