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

from .games import C, D, MatrixGame, get_game

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


def show(name: str) -> None:
    """Print the source code of a solution, e.g. ``show("game_deontological_reward")``."""
    obj = globals().get(name)
    if obj is None or name not in __all__ or name == "show":
        raise KeyError(f"No solution called {name!r}. Solutions: {', '.join(n for n in __all__ if n != 'show')}.")
    print(inspect.getsource(obj))
