"""Solutions to the workbook's exercises (peek only after trying!).

Each notebook exercise has a check in :mod:`moralkit.exercises`; the reference answers live
here, so a notebook can say "the solution is one click away" and the checks can compare
against them. ``show("game_deontological_reward")`` prints a solution's source code.

Chapter 1 (payoff matrices):
    :func:`my_social_dilemma`, :func:`my_stag_hunt`
Chapter 2 (moral rewards):
    :func:`game_deontological_reward`, :func:`inequity_averse_reward` (one possible own reward),
    :func:`cooperation_threshold` (with :func:`tft_discounted_values`)
"""

from __future__ import annotations

import inspect

import numpy as np

from .games import C, D, MatrixGame
from .tabular import cooperation_threshold, tft_discounted_values  # noqa: F401  (exercise 2.3)

__all__ = [
    "my_social_dilemma",
    "my_stag_hunt",
    "game_deontological_reward",
    "inequity_averse_reward",
    "tft_discounted_values",
    "cooperation_threshold",
    "show",
]


# --------------------------------------------------------------------- chapter 1
def my_social_dilemma() -> MatrixGame:
    """Exercise 1.1: the Stag Hunt (R=4, S=0, T=3, P=1) turned into a social dilemma.

    Raising the temptation from 3 to 5 gives T=5 > R=4 > P=1 > S=0 and 2R=8 > T+S=5.
    """
    return MatrixGame.from_cells("my_dilemma", cc=(4, 4), cd=(0, 5), dc=(5, 0), dd=(1, 1))


def my_stag_hunt() -> MatrixGame:
    """Exercise 1.2: a Stag Hunt of our own: R > T ≥ P > S (here R=5, T=4, P=2, S=0)."""
    return MatrixGame.symmetric("my_stag_hunt", R=5, S=0, T=4, P=2)


# --------------------------------------------------------------------- chapter 2
def game_deontological_reward(game, my_move, opp_move, opp_prev_move, xi=3.0):
    """Exercise 2.1: my payoff, minus ξ when I defect right after the opponent cooperated."""
    payoff = game.payoffs[my_move, opp_move, 0]  # my payoff, for every round at once
    broke_the_norm = (my_move == D) & (opp_prev_move == C)  # True where I defected against a cooperator
    return payoff - xi * broke_the_norm  # True counts as 1, False as 0


def inequity_averse_reward(game, my_move, opp_move, opp_prev_move):
    """Exercise 2.2 (one possible answer): my payoff, minus how unequal the round was.

    A simple version of Fehr and Schmidt's inequity aversion: envy when the other gets more
    (weight 1), guilt when I get more (weight 0.5).
    """
    mine = game.payoffs[my_move, opp_move, 0]
    theirs = game.payoffs[my_move, opp_move, 1]
    envy = np.maximum(theirs - mine, 0.0)
    guilt = np.maximum(mine - theirs, 0.0)
    return mine - 1.0 * envy - 0.5 * guilt


def show(name: str) -> None:
    """Print the source code of a solution, e.g. ``show("game_deontological_reward")``."""
    obj = globals().get(name)
    if obj is None or name not in __all__ or name == "show":
        raise KeyError(f"No solution called {name!r}. Solutions: {', '.join(n for n in __all__ if n != 'show')}.")
    print(inspect.getsource(obj))
