"""Two-player, two-action matrix games.

A :class:`MatrixGame` is an immutable payoff table. Throughout moralkit the learning agent
**M** is the row player and its opponent **O** the column player; the first action of every
game is called ``C`` (index 0) and the second ``D`` (index 1), whatever the game calls them.

``game.payoffs[a_M, a_O]`` is the pair ``(M's payoff, O's payoff)``:

>>> pd = get_game("prisoners_dilemma")
>>> pd.payoff(C, D)
(0.0, 4.0)
>>> pd.is_social_dilemma()
True
>>> pd.pure_nash_equilibria()
[('D', 'D')]

The catalogue (docs/science.md §1 plus the IJCAI'23 Prisoner's Dilemma) lives in ``moralkit/data/games.json``: a
payoff matrix is data, never hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .data import DATA_DIR, data_file
from .storage import read_json

__all__ = [
    "C",
    "D",
    "ILLEGAL",
    "MOVE_NAMES",
    "GameError",
    "MatrixGame",
    "GAMES",
    "get_game",
    "game_names",
    "load_games",
    "DATA_DIR",
]

C: int = 0
"""Index of the first action ("cooperate" in the Prisoner's Dilemma)."""
D: int = 1
"""Index of the second action ("defect" in the Prisoner's Dilemma)."""
ILLEGAL: int = -1
"""Marker for an answer that is neither action label (an LLM's format failure)."""
MOVE_NAMES: dict[int, str] = {C: "C", D: "D", ILLEGAL: "illegal"}


class GameError(ValueError):
    """An invalid payoff matrix or an unknown game name."""


@dataclass(frozen=True, eq=False)
class MatrixGame:
    """An immutable 2x2 game for two players.

    Parameters
    ----------
    name:
        Identifier used in the catalogue, tables and file names (``"stag_hunt"``).
    payoffs:
        Array-like of shape ``(2, 2, 2)``: ``payoffs[a_M][a_O] = (R_M, R_O)``.
    actions:
        Display names of the two actions (index 0 and 1), e.g. ``("C", "D")``.
    title:
        Human-readable name (``"Stag Hunt"``).
    description:
        One or two sentences for a notebook.

    Use :meth:`from_cells` to build a game from its four cells written as in docs/science.md §1.
    """

    name: str
    payoffs: np.ndarray
    actions: tuple[str, str] = ("C", "D")
    title: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise GameError("A game needs a non-empty name (e.g. 'my_game').")
        try:
            arr = np.array(self.payoffs, dtype=float)
        except (TypeError, ValueError) as exc:
            raise GameError(
                f"Game {self.name!r}: payoffs must be numbers, got {self.payoffs!r} ({exc})."
            ) from None
        if arr.shape != (2, 2, 2):
            raise GameError(
                f"Game {self.name!r}: payoffs must have shape (2, 2, 2) -- "
                "payoffs[my_move][opponent_move] = (my payoff, opponent payoff) -- "
                f"but got shape {arr.shape}. Tip: MatrixGame.from_cells(name, cc=(3, 3), "
                "cd=(0, 4), dc=(4, 0), dd=(1, 1)) builds one from its four cells."
            )
        if not np.all(np.isfinite(arr)):
            raise GameError(f"Game {self.name!r}: every payoff must be a finite number, got {arr.tolist()}.")
        actions = tuple(self.actions)
        if len(actions) != 2 or not all(isinstance(a, str) and a.strip() for a in actions):
            raise GameError(f"Game {self.name!r}: needs exactly two non-empty action names, got {self.actions!r}.")
        if actions[0] == actions[1]:
            raise GameError(f"Game {self.name!r}: the two action names must differ, got {actions!r}.")
        arr.setflags(write=False)
        object.__setattr__(self, "payoffs", arr)
        object.__setattr__(self, "actions", actions)
        if not self.title:
            object.__setattr__(self, "title", self.name.replace("_", " ").title())

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_cells(
        cls,
        name: str,
        cc: Sequence[float],
        cd: Sequence[float],
        dc: Sequence[float],
        dd: Sequence[float],
        **kwargs,
    ) -> "MatrixGame":
        """Build a game from its four cells, each ``(M's payoff, O's payoff)``.

        >>> MatrixGame.from_cells("pd", (3, 3), (0, 4), (4, 0), (1, 1)).payoff(D, C)
        (4.0, 0.0)
        """
        return cls(name, [[cc, cd], [dc, dd]], **kwargs)

    @classmethod
    def symmetric(cls, name: str, R: float, S: float, T: float, P: float, **kwargs) -> "MatrixGame":
        """A symmetric game from the classic letters: Reward, Sucker, Temptation, Punishment."""
        return cls.from_cells(name, (R, R), (S, T), (T, S), (P, P), **kwargs)

    def with_payoffs(self, payoffs, name: str | None = None) -> "MatrixGame":
        """A copy with other payoffs (and optionally another name)."""
        return MatrixGame(name or self.name, payoffs, self.actions, self.title if name is None else "", self.description)

    # ----------------------------------------------------------------- lookups
    def payoff(self, my_move: int, opp_move: int) -> tuple[float, float]:
        """``(M's payoff, O's payoff)`` for one pair of legal moves."""
        r = self.payoffs[int(my_move), int(opp_move)]
        return float(r[0]), float(r[1])

    def payoffs_for(self, my_moves, opp_moves) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised payoffs: arrays of M's and O's payoffs; ``nan`` where a move is illegal."""
        my = np.asarray(my_moves)
        opp = np.asarray(opp_moves)
        legal = (my >= 0) & (opp >= 0)
        cells = self.payoffs[np.where(legal, my, 0), np.where(legal, opp, 0)]
        r_m = np.where(legal, cells[..., 0], np.nan)
        r_o = np.where(legal, cells[..., 1], np.nan)
        return r_m, r_o

    @property
    def row_matrix(self) -> np.ndarray:
        """M's (row player's) payoffs as a 2x2 matrix ``[a_M, a_O]``."""
        return self.payoffs[:, :, 0]

    @property
    def col_matrix(self) -> np.ndarray:
        """O's (column player's) payoffs as a 2x2 matrix ``[a_M, a_O]``."""
        return self.payoffs[:, :, 1]

    @property
    def collective(self) -> np.ndarray:
        """Sum of both payoffs per cell, ``[a_M, a_O]``."""
        return self.payoffs.sum(axis=-1)

    @property
    def best_collective(self) -> float:
        """The highest total payoff any cell gives (6 in the Prisoner's Dilemma)."""
        return float(self.collective.max())

    def swap_players(self) -> "MatrixGame":
        """The same game seen by the column player (so O can be treated as a row player)."""
        swapped = np.transpose(self.payoffs, (1, 0, 2))[:, :, ::-1]
        return MatrixGame(self.name, swapped, self.actions, self.title, self.description)

    @property
    def is_symmetric(self) -> bool:
        return bool(np.allclose(self.row_matrix, self.col_matrix.T))

    # ----------------------------------------------------------------- game theory
    def pure_nash_equilibria(self) -> list[tuple[str, str]]:
        """Cells where neither player gains by deviating alone, as pairs of action names."""
        out = []
        for a in (C, D):
            for b in (C, D):
                m_ok = self.payoffs[a, b, 0] >= self.payoffs[1 - a, b, 0]
                o_ok = self.payoffs[a, b, 1] >= self.payoffs[a, 1 - b, 1]
                if m_ok and o_ok:
                    out.append((self.actions[a], self.actions[b]))
        return out

    def nash_equilibria(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """All Nash equilibria (pure and mixed) as ``(sigma_M, sigma_O)`` probability vectors.

        Computed by nashpy's vertex enumeration, which also handles degenerate games.
        """
        import warnings

        import nashpy

        g = nashpy.Game(self.row_matrix, self.col_matrix)
        found: list[tuple[np.ndarray, np.ndarray]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                candidates = list(g.vertex_enumeration())
            except Exception:  # pragma: no cover - nashpy's fallback
                candidates = list(g.support_enumeration())
        for s_m, s_o in candidates:
            s_m, s_o = np.round(np.asarray(s_m, float), 10), np.round(np.asarray(s_o, float), 10)
            if not any(np.allclose(s_m, a) and np.allclose(s_o, b) for a, b in found):
                found.append((s_m, s_o))
        found.sort(key=lambda p: (-p[0][0], -p[1][0]))
        return found

    def pareto_optimal_cells(self) -> list[tuple[str, str]]:
        """Cells that no other cell improves for one player without hurting the other."""
        cells = [(a, b) for a in (C, D) for b in (C, D)]
        out = []
        for a, b in cells:
            p = self.payoffs[a, b]
            dominated = any(
                np.all(self.payoffs[x, y] >= p) and np.any(self.payoffs[x, y] > p) for x, y in cells if (x, y) != (a, b)
            )
            if not dominated:
                out.append((self.actions[a], self.actions[b]))
        return out

    def letters(self) -> dict[str, float]:
        """M's payoffs under the classic names: R (CC), S (CD), T (DC), P (DD)."""
        m = self.row_matrix
        return {"R": float(m[C, C]), "S": float(m[C, D]), "T": float(m[D, C]), "P": float(m[D, D])}

    def is_social_dilemma(self) -> bool:
        """True for a symmetric Prisoner's Dilemma: T > R > P > S and 2R > T + S.

        Mutual cooperation is best for the pair, yet defecting is better for each player
        whatever the other does, and alternating exploitation does not beat cooperating.
        """
        if not self.is_symmetric:
            return False
        L = self.letters()
        return L["T"] > L["R"] > L["P"] > L["S"] and 2 * L["R"] > L["T"] + L["S"]

    def classify(self) -> str:
        """A short name for the kind of game (symmetric games by the order of R, S, T, P)."""
        if not self.is_symmetric:
            if len(self.pure_nash_equilibria()) == 2:
                return "coordination game (asymmetric)"
            return "asymmetric game"
        L = self.letters()
        R, S, T, P = L["R"], L["S"], L["T"], L["P"]
        if self.is_social_dilemma():
            return "prisoner's dilemma"
        if T > R > P > S:
            return "not a social dilemma (T > R > P > S, but 2R <= T + S)"
        if R > T >= P > S:
            return "stag hunt"
        if T > R > S > P:
            return "chicken"
        if P > R and P > T and P > S:
            return "coordination game (mutual D best)"
        if R > T and R > S and R > P:
            return "harmony (no dilemma)"
        return "other symmetric game"

    def kind_caption(self) -> str:
        """:meth:`classify` as a caption under the game's picture.

        A game ordered like Chicken (T > R > S > P) that is not Chicken itself, such as the
        Volunteer's Dilemma, is captioned for what it is, an anti-coordination game, not "chicken".

        >>> get_game("volunteers_dilemma").kind_caption(), get_game("chicken").kind_caption()
        ('anti-coordination (ordered like Chicken)', 'chicken')
        """
        kind = self.classify()
        if kind == "chicken" and self.name != "chicken":
            return "anti-coordination (ordered like Chicken)"
        return kind

    def summary(self) -> dict:
        """Facts a course discusses, as a dict (one row of a table)."""
        return {
            "game": self.name,
            "title": self.title,
            "kind": self.kind_caption(),
            "symmetric": self.is_symmetric,
            "social_dilemma": self.is_social_dilemma(),
            "pure_nash": self.pure_nash_equilibria(),
            "pareto_optimal": self.pareto_optimal_cells(),
            "best_collective": self.best_collective,
        }

    # ----------------------------------------------------------------- display
    def to_frame(self):
        """The payoff table as a pandas DataFrame of ``"R_M, R_O"`` strings (rows: M, columns: O)."""
        import pandas as pd

        def fmt(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else f"{x:g}"

        data = [[f"{fmt(self.payoffs[a, b, 0])}, {fmt(self.payoffs[a, b, 1])}" for b in (C, D)] for a in (C, D)]
        return pd.DataFrame(data, index=[f"M: {a}" for a in self.actions], columns=[f"O: {a}" for a in self.actions])

    def __repr__(self) -> str:
        cells = ", ".join(
            f"{self.actions[a]}{self.actions[b]}=({self.payoffs[a, b, 0]:g},{self.payoffs[a, b, 1]:g})"
            for a in (C, D)
            for b in (C, D)
        )
        return f"MatrixGame({self.name!r}: {cells})"

    def _repr_html_(self) -> str:
        return f"<b>{self.title}</b>" + self.to_frame().to_html()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MatrixGame):
            return NotImplemented
        return (
            self.name == other.name
            and self.actions == other.actions
            and np.array_equal(self.payoffs, other.payoffs)
        )

    def __hash__(self) -> int:
        return hash((self.name, self.actions, self.payoffs.tobytes()))

    def to_dict(self) -> dict:
        p = self.payoffs
        return {
            "name": self.name,
            "title": self.title,
            "actions": list(self.actions),
            "cells": {
                "CC": p[C, C].tolist(),
                "CD": p[C, D].tolist(),
                "DC": p[D, C].tolist(),
                "DD": p[D, D].tolist(),
            },
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "MatrixGame":
        try:
            cells = d["cells"]
            return cls.from_cells(
                d["name"],
                cells["CC"],
                cells["CD"],
                cells["DC"],
                cells["DD"],
                actions=tuple(d.get("actions", ("C", "D"))),
                title=d.get("title", ""),
                description=d.get("description", ""),
            )
        except KeyError as exc:
            raise GameError(f"Game definition {d!r} lacks the key {exc}; needs name and cells CC, CD, DC, DD.") from None


# --------------------------------------------------------------------- catalogue
def load_games(path: str | Path | None = None) -> dict[str, MatrixGame]:
    """Load a catalogue of games from a JSON file (default: moralkit's ``data/games.json``).

    A damaged file, or two games of one name, raise an error naming the file (and the game).
    """
    path = Path(path) if path is not None else data_file("games.json")
    raw = read_json(path, fix="Restore the file, or pass a catalogue of your own.")
    if not isinstance(raw, dict) or not isinstance(raw.get("games"), list):
        raise GameError(f"{path} is not a game catalogue: it needs a list under the key 'games'.")
    games = {}
    for d in raw["games"]:
        g = MatrixGame.from_dict(d)
        if g.name in games:
            raise GameError(
                f"{path} defines the game {g.name!r} twice; every game needs its own name. Rename or remove one of them."
            )
        games[g.name] = g
    return games


@lru_cache(maxsize=1)
def _catalogue() -> dict[str, MatrixGame]:
    return load_games()


class _Catalogue(dict):
    """Read-only view of the shipped games, loaded lazily."""

    def _load(self):
        if not super().__len__():
            super().update(_catalogue())

    def __getitem__(self, k):
        self._load()
        return super().__getitem__(k)

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __len__(self):
        self._load()
        return super().__len__()

    def __contains__(self, k):
        self._load()
        return super().__contains__(k)

    def keys(self):
        self._load()
        return super().keys()

    def values(self):
        self._load()
        return super().values()

    def items(self):
        self._load()
        return super().items()

    def __repr__(self):
        self._load()
        return f"GAMES({', '.join(super().keys())})"


GAMES: dict[str, MatrixGame] = _Catalogue()
"""The shipped catalogue, by name."""

EVALUATION_GAMES: tuple[str, ...] = (
    "prisoners_dilemma",
    "stag_hunt",
    "chicken",
    "bach_or_stravinsky",
    "defective_coordination",
)
"""The five games of the paper's generalisation test (docs/science.md §6)."""


def game_names() -> list[str]:
    return list(GAMES.keys())


def get_game(game: str | MatrixGame) -> MatrixGame:
    """Look a game up by name (a :class:`MatrixGame` is returned unchanged).

    >>> get_game("stag_hunt").best_collective
    8.0
    """
    if isinstance(game, MatrixGame):
        return game
    if not isinstance(game, str):
        raise GameError(f"Expected a game name or a MatrixGame, got {type(game).__name__}.")
    key = game.strip().lower().replace(" ", "_").replace("'", "").replace("-", "_")
    if key in GAMES:
        return GAMES[key]
    raise GameError(f"Unknown game {game!r}. Valid names: {', '.join(GAMES.keys())}.")


SIX_GAMES: tuple[str, ...] = (
    "prisoners_dilemma",
    "stag_hunt",
    "chicken",
    "bach_or_stravinsky",
    "defective_coordination",
    "volunteers_dilemma",
)
"""The six games of docs/science.md §1, in the order the chapters show them."""


def _number(x: float) -> str:
    """A payoff as short text: ``3`` rather than ``3.0``, ``2.5`` stays ``2.5``."""
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.3g}"


def game_facts(game: MatrixGame | str) -> dict:
    """What a course says about a game, as short text: kind, equilibria (pure and mixed), Pareto cells.

    Mixed equilibria come from nashpy (:meth:`MatrixGame.nash_equilibria`) and show each player's
    probability of playing the first action and the expected payoffs.

    >>> game_facts("prisoners_dilemma")["pure Nash"]
    '(D, D)'
    """
    game = get_game(game)
    equilibria = []
    for s_m, s_o in game.nash_equilibria():
        pay_m = float(s_m @ game.row_matrix @ s_o)
        pay_o = float(s_m @ game.col_matrix @ s_o)
        pure = all(np.isclose(s.max(), 1.0) for s in (s_m, s_o))
        a = game.actions[0]
        pick = lambda sigma: game.actions[0] if sigma[0] >= sigma[1] else game.actions[1]  # noqa: E731
        where = (
            f"({pick(s_m)}, {pick(s_o)})"
            if pure
            else f"mixed: P(M plays {a}) = {s_m[0]:.2g}, P(O plays {a}) = {s_o[0]:.2g}"
        )
        equilibria.append(f"{where} → {_number(round(pay_m, 3))}, {_number(round(pay_o, 3))}")
    cells = lambda pairs: ", ".join(f"({a}, {b})" for a, b in pairs) or "none"  # noqa: E731
    return {
        "game": game.name,
        "title": game.title,
        "payoffs (M, O)": "  ".join(f"{game.actions[a]}{game.actions[b]}={_number(game.payoffs[a, b, 0])},"
                                    f"{_number(game.payoffs[a, b, 1])}" for a in (C, D) for b in (C, D)),
        "kind": game.kind_caption(),
        "symmetric": game.is_symmetric,
        "social dilemma": game.is_social_dilemma(),
        "pure Nash": cells(game.pure_nash_equilibria()),
        "all Nash (payoffs M, O)": "; ".join(equilibria),
        "Pareto-optimal": cells(game.pareto_optimal_cells()),
        "best collective": game.best_collective,
    }


def games_table(names: Iterable[str | MatrixGame] | None = None):
    """:func:`game_facts` of several games (default: the whole catalogue), one row each, indexed by name."""
    import pandas as pd

    return pd.DataFrame([game_facts(n) for n in (names or GAMES.keys())]).set_index("game")


__all__ += ["EVALUATION_GAMES", "SIX_GAMES", "game_facts", "games_table"]
