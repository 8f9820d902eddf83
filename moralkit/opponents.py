"""Fixed opponents for the iterated games (docs/science.md §4).

Every opponent plays a *batch* of independent games at once::

    opp_moves = opponent.act(my_prev, opp_prev, rng)

where ``my_prev`` is the learning agent M's last *legal* move in each game and ``opp_prev`` the
opponent's own previous move (numpy arrays of 0 = C, 1 = D). ``initial_moves(n, rng)`` gives
the opponent's "previous move" in the random initial state of each game.

>>> import numpy as np
>>> tft = get_opponent("tit_for_tat")
>>> tft.act(np.array([0, 1, 1]), np.array([1, 1, 0]), np.random.default_rng(0)).tolist()
[0, 1, 1]

Any strategy of the Axelrod library works too: ``get_opponent("axelrod:Grudger")``. Axelrod
is imported only then (its import takes seconds and changes multiprocessing's start method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .games import C, D

__all__ = [
    "Opponent",
    "OpponentError",
    "TitForTat",
    "AlwaysCooperate",
    "AlwaysDefect",
    "RandomOpponent",
    "AxelrodOpponent",
    "OPPONENTS",
    "get_opponent",
    "opponent_names",
]


class OpponentError(ValueError):
    """An unknown opponent name or an unusable Axelrod strategy."""


class Opponent:
    """Base class: a fixed (non-learning) strategy playing many games in parallel.

    Subclasses implement :meth:`act`; stateful ones (Axelrod strategies) also :meth:`reset`
    and :meth:`observe`.
    """

    name: str = "opponent"
    memory_one: bool = False
    """True when the move depends only on the current memory-1 state (both players' last moves),
    so :meth:`cooperation_probability` can say exactly how the opponent plays in each state."""

    def cooperation_probability(self, my_prev, opp_prev) -> np.ndarray:
        """P(the opponent plays C now | M's last move, its own last move), for arrays of states.

        A deterministic memory-1 opponent answers by simply playing the states once: the
        probability comes from :meth:`act` itself, not from a second description of the strategy.
        A stochastic one overrides this method; other opponents have no such table.

        >>> TitForTat().cooperation_probability([0, 0, 1, 1], [0, 1, 0, 1]).tolist()
        [1.0, 1.0, 0.0, 0.0]
        """
        if not self.memory_one:
            raise OpponentError(
                f"{self.name} is not a memory-1 opponent with a known move distribution; exact max-min values "
                "need tit_for_tat, always_cooperate, always_defect or random."
            )
        my_prev, opp_prev = np.broadcast_arrays(np.asarray(my_prev, dtype=np.int64), np.asarray(opp_prev, dtype=np.int64))
        moves = np.asarray(self.act(my_prev, opp_prev, _NoRandomness(self.name)))
        return (moves == C).astype(float)

    def initial_moves(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """The opponent's move in the (random) initial state: uniform C/D unless overridden."""
        return rng.integers(0, 2, size=n)

    def reset(self, my_prev: np.ndarray, opp_prev: np.ndarray) -> None:
        """Start new games from the given initial states (stateless opponents ignore it)."""

    def act(self, my_prev: np.ndarray, opp_prev: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def observe(self, my_moves: np.ndarray, opp_moves: np.ndarray) -> None:
        """See the round just played (M's last legal move, the opponent's move)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _NoRandomness:
    """Stands in for a random generator where an opponent is assumed deterministic."""

    def __init__(self, who: str):
        self.who = who

    def __getattr__(self, attr):
        raise OpponentError(
            f"{self.who} draws random numbers, so playing it once does not give its move distribution: "
            "override cooperation_probability for it."
        )


class TitForTat(Opponent):
    """Plays M's previous move.

    Exactly the paper's semantics: at the first round it copies M's move in the randomly drawn
    initial state, and after an illegal answer it copies M's last *legal* move (the environment
    passes M's last legal move as ``my_prev``).
    """

    name = "tit_for_tat"
    memory_one = True

    def act(self, my_prev, opp_prev, rng):
        return np.asarray(my_prev, dtype=np.int64).copy()


class AlwaysCooperate(Opponent):
    """Always C; its initial "previous move" is C too."""

    name = "always_cooperate"
    memory_one = True

    def initial_moves(self, n, rng):
        return np.full(n, C, dtype=np.int64)

    def act(self, my_prev, opp_prev, rng):
        return np.full(np.shape(my_prev), C, dtype=np.int64)


class AlwaysDefect(Opponent):
    """Always D; its initial "previous move" is D too."""

    name = "always_defect"
    memory_one = True

    def initial_moves(self, n, rng):
        return np.full(n, D, dtype=np.int64)

    def act(self, my_prev, opp_prev, rng):
        return np.full(np.shape(my_prev), D, dtype=np.int64)


@dataclass(repr=False)
class RandomOpponent(Opponent):
    """C with probability ``p_cooperate``, else D (the paper's test opponent uses 0.5).

    Randomness comes from the environment's generator, so a seeded environment is reproducible.
    """

    p_cooperate: float = 0.5
    name: str = "random"

    def __post_init__(self):
        if not 0.0 <= self.p_cooperate <= 1.0:
            raise OpponentError(f"p_cooperate must be a probability in [0, 1], got {self.p_cooperate}.")

    memory_one = True

    def act(self, my_prev, opp_prev, rng):
        return (rng.random(np.shape(my_prev)) >= self.p_cooperate).astype(np.int64)

    def cooperation_probability(self, my_prev, opp_prev):
        """C with probability ``p_cooperate`` in every state (``act`` plays D when a uniform draw is >= it)."""
        shape = np.broadcast_shapes(np.shape(my_prev), np.shape(opp_prev))
        return np.full(shape, float(self.p_cooperate))

    def __repr__(self):
        return f"RandomOpponent(p_cooperate={self.p_cooperate})"


@dataclass(repr=False)
class AxelrodOpponent(Opponent):
    """Any strategy of the Axelrod library as an opponent, one player instance per game.

    The random initial state is written into each player's history first (as if that round had
    been played), so memory-based strategies see the same state M sees. Axelrod's ``Action.C``
    is our C (the first action) in every game.

    Parameters
    ----------
    strategy:
        The class name in ``axelrod`` (``"Grudger"``, ``"TitForTwoTats"``, ...) or a class.
    seed_history:
        Whether the initial state enters the players' histories (default True).
    """

    strategy: Any = "TitForTat"
    seed_history: bool = True
    _players: list = field(default_factory=list, init=False)
    _mirrors: list = field(default_factory=list, init=False)

    def __post_init__(self):
        self._cls = _axelrod_class(self.strategy)
        self.name = f"axelrod:{self._cls.__name__}"

    def reset(self, my_prev, opp_prev):
        axl = _axelrod()
        to_action = {C: axl.Action.C, D: axl.Action.D}
        self._players, self._mirrors = [], []
        for m, o in zip(np.asarray(my_prev), np.asarray(opp_prev)):
            player, mirror = self._cls(), axl.Player()
            if self.seed_history:
                player.update_history(to_action[int(o)], to_action[int(m)])
                mirror.update_history(to_action[int(m)], to_action[int(o)])
            self._players.append(player)
            self._mirrors.append(mirror)

    def act(self, my_prev, opp_prev, rng):
        if len(self._players) != len(np.asarray(my_prev)):
            self.reset(my_prev, opp_prev)
        axl = _axelrod()
        out = np.empty(len(self._players), dtype=np.int64)
        for i, (player, mirror) in enumerate(zip(self._players, self._mirrors)):
            if player.classifier.get("stochastic", False):
                player.set_seed(int(rng.integers(2**31)))
            out[i] = C if player.strategy(mirror) == axl.Action.C else D
        return out

    def observe(self, my_moves, opp_moves):
        axl = _axelrod()
        to_action = {C: axl.Action.C, D: axl.Action.D}
        for player, mirror, m, o in zip(self._players, self._mirrors, np.asarray(my_moves), np.asarray(opp_moves)):
            player.update_history(to_action[int(o)], to_action[int(m)])
            mirror.update_history(to_action[int(m)], to_action[int(o)])

    def __repr__(self):
        return f"AxelrodOpponent({self._cls.__name__!r})"


def _axelrod():
    try:
        import axelrod
    except ImportError:  # pragma: no cover - depends on the environment
        raise OpponentError(
            "Axelrod strategies need the axelrod package: pip install axelrod (or pip install 'moralkit[axelrod]')."
        ) from None
    return axelrod


def _axelrod_class(strategy):
    if isinstance(strategy, type):
        return strategy
    axl = _axelrod()
    cls = getattr(axl, str(strategy), None)
    if cls is None or not isinstance(cls, type):
        by_name = {s.name.lower(): s for s in axl.all_strategies}
        cls = by_name.get(str(strategy).lower())
    if cls is None:
        close = sorted(s.__name__ for s in axl.all_strategies if str(strategy).lower()[:4] in s.__name__.lower())
        raise OpponentError(
            f"Axelrod has no strategy {strategy!r}. "
            + (f"Similar names: {', '.join(close[:10])}. " if close else "")
            + "See axelrod.all_strategies for the full list."
        )
    return cls


OPPONENTS: dict[str, type[Opponent]] = {
    "tit_for_tat": TitForTat,
    "always_cooperate": AlwaysCooperate,
    "always_defect": AlwaysDefect,
    "random": RandomOpponent,
}
_ALIASES = {"tft": "tit_for_tat", "titfortat": "tit_for_tat", "ac": "always_cooperate", "ad": "always_defect",
            "allc": "always_cooperate", "alld": "always_defect"}


def opponent_names() -> list[str]:
    return list(OPPONENTS) + ["axelrod:<StrategyName>"]


def get_opponent(opponent: str | Opponent) -> Opponent:
    """An opponent by name: ``tit_for_tat``, ``always_cooperate``, ``always_defect``, ``random``,
    or ``axelrod:<Strategy>`` (an :class:`Opponent` is returned unchanged)."""
    if isinstance(opponent, Opponent):
        return opponent
    if not isinstance(opponent, str):
        raise OpponentError(f"Expected an opponent name or an Opponent, got {type(opponent).__name__}.")
    key = opponent.strip()
    if key.lower().startswith("axelrod:"):
        return AxelrodOpponent(key.split(":", 1)[1])
    key = key.lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in OPPONENTS:
        raise OpponentError(
            f"Unknown opponent {opponent!r}. Valid names: {', '.join(opponent_names())} "
            f"(aliases: {', '.join(sorted(_ALIASES))})."
        )
    return OPPONENTS[key]()
