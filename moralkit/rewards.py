"""Moral rewards: intrinsic rewards that encode a moral theory (SPEC §2).

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


def accepts_xi(fn: Callable) -> bool:
    """Whether a reward function takes the norm-violation penalty as keyword ``xi``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "xi" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


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

    def __call__(self, game: MatrixGame | str, my_move, opp_move, opp_prev_move=C):
        game = get_game(game)
        scalar = all(np.ndim(x) == 0 for x in (my_move, opp_move, opp_prev_move))
        my, opp, prev = np.broadcast_arrays(
            np.asarray(my_move, dtype=np.int64),
            np.asarray(opp_move, dtype=np.int64),
            np.asarray(opp_prev_move, dtype=np.int64),
        )
        my_legal = my >= 0
        opp_legal = opp >= 0
        safe_my = np.where(my_legal, my, C)
        safe_opp = np.where(opp_legal, opp, C)
        safe_prev = np.where(prev >= 0, prev, C)
        kwargs = {"xi": self.xi} if accepts_xi(self.fn) else {}
        value = np.asarray(self.fn(game, safe_my, safe_opp, safe_prev, **kwargs), dtype=float)
        value = np.broadcast_to(value, my.shape)
        out = np.where(my_legal, np.where(opp_legal, value, 0.0), self.r_illegal)
        return float(out) if scalar else out

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
    if isinstance(reward, str):
        key = reward.strip().lower().replace("-", "_").replace(" ", "_")
        key = _ALIASES.get(key, key)
        if key not in REWARDS:
            raise RewardError(
                f"Unknown reward {reward!r}. Valid names: {', '.join(REWARDS)} "
                f"(aliases: {', '.join(sorted(_ALIASES))}); or pass your own function."
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


def normalised(reward: str | Reward | RewardFn, game: str | MatrixGame) -> Reward:
    """Min–max normalise a reward over a game's legal outcomes to [0, 1].

    Rewards live on different scales (payoffs, ±ξ, ratios); normalise before comparing or
    aggregating them (pluralistic alignment, SPEC §8). A constant reward maps to 0.
    The illegal-answer reward is kept at 0 (the bottom of the scale) minus one unit.
    """
    reward, game = get_reward(reward), get_game(game)
    lo, hi = reward_range(reward, game)
    span = hi - lo

    def norm(game_, my_move, opp_move, opp_prev_move):
        raw = reward.fn(game_, my_move, opp_move, opp_prev_move, **({"xi": reward.xi} if accepts_xi(reward.fn) else {}))
        return (np.asarray(raw, float) - lo) / span if span > 0 else np.zeros_like(np.asarray(raw, float))

    return Reward(f"normalised_{reward.name}", norm, r_illegal=-1.0, description=f"{reward.name} scaled to [0, 1] on {game.name}")
