"""Solutions to the workbook's exercises (peek only after trying!).

Each notebook exercise has a check in :mod:`moralkit.exercises`; the reference answers live
here, so a notebook can say "the solution is one click away" and the checks can compare
against them. ``show("game_deontological_reward")`` prints a solution's source code.

Chapter 1 (payoff matrices):
    :func:`my_social_dilemma`, :func:`my_stag_hunt`
Chapter 2 (moral rewards):
    :func:`game_deontological_reward`, :func:`inequity_averse_reward` (one possible own reward),
    :func:`cooperation_threshold` (with :func:`tft_discounted_values`)
Chapter 7 (pluralistic alignment):
    :func:`maxmin_mix_c_d`, :func:`e_step`
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
    "maxmin_mix_c_d",
    "e_step",
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


# --------------------------------------------------------------------- chapter 7
def maxmin_mix_c_d() -> tuple[float, float]:
    """Exercise 7.1: the max–min mix in state C|D (PD vs Tit-for-Tat, ξ = 3; game, deontological, utilitarian).

    Tit-for-Tat copies my last move, C, so they play C now; they played D before, so no norm is at
    stake. Normalised (game: payoff/4; deontological: (r + 3)/3; utilitarian: (sum − 2)/4):
    C gives (3/4, 1, 1), D gives (1, 1, 1/2). With p = P(C): game 1 − p/4, deontological 1,
    utilitarian 1/2 + p/2. The lowest line is the game's for large p and the utilitarian's for
    small p; they cross where 1 − p/4 = 1/2 + p/2, at p = 2/3, where both get 5/6.
    """
    return 2 / 3, 5 / 6


def e_step(user, first, second, first_wins, rewards, n_users):
    """Exercise 7.2: each user's cluster, the one whose Bradley–Terry reward explains its comparisons best."""
    rewards = np.atleast_2d(rewards)
    margin = rewards[:, first] - rewards[:, second]  # r(first) - r(second), one row per cluster
    signed = np.where(first_wins, margin, -margin)  # r(winner) - r(loser)
    log_p = -np.logaddexp(0.0, -signed)  # log sigma(signed), computed stably
    per_user = np.zeros((n_users, len(rewards)))
    np.add.at(per_user, user, log_p.T)  # sum over each user's comparisons
    return np.argmax(per_user, axis=1)


def show(name: str) -> None:
    """Print the source code of a solution, e.g. ``show("game_deontological_reward")``."""
    obj = globals().get(name)
    if obj is None or name not in __all__ or name == "show":
        raise KeyError(f"No solution called {name!r}. Solutions: {', '.join(n for n in __all__ if n != 'show')}.")
    print(inspect.getsource(obj))
