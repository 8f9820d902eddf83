"""Solutions to the workbook's exercises (peek only after trying!).

Each notebook exercise has a check in :mod:`moralkit.exercises`; the reference answers live
here, so a notebook can say "the solution is one click away" and the checks can compare
against them. ``show("game_deontological_reward")`` prints a solution's source code.

Chapter 1 (payoff matrices):
    :func:`my_social_dilemma`, :func:`my_stag_hunt`
Chapter 2 (moral rewards):
    :func:`game_deontological_reward`, :func:`inequity_averse_reward` (one possible own reward),
    :func:`cooperation_threshold` (with :func:`tft_discounted_values`)
Chapter 3 (LLM players):
    :func:`parse_exact_label`, :func:`regrets_by_hand`
Chapter 4 (PPO fine-tuning):
    :func:`exploitation_reward`, :func:`exploitation_reward_prediction`
Chapter 5 (unlearning):
    :func:`forgiving_deontological_reward`, :func:`kl_leash_penalties`
Chapter 6 (generalisation):
    :func:`utilitarian_choices_vs_random`, :func:`regrets_from_action_types`
Chapter 7 (pluralistic alignment):
    :func:`maxmin_mix_c_d`, :func:`e_step`

This module is the *one* source of the solutions: a notebook shows one with
``solution("name")``, a drop-down that stays closed until the student opens it, and
``show("name")`` prints it.
"""

from __future__ import annotations

import html
import inspect
import math

import numpy as np

from .games import C, D, ILLEGAL, MatrixGame
from .tabular import cooperation_threshold, tft_discounted_values  # noqa: F401  (exercise 2.3)

__all__ = [
    "my_social_dilemma",
    "my_stag_hunt",
    "game_deontological_reward",
    "inequity_averse_reward",
    "tft_discounted_values",
    "cooperation_threshold",
    "parse_exact_label",
    "regrets_by_hand",
    "exploitation_reward",
    "exploitation_reward_prediction",
    "forgiving_deontological_reward",
    "kl_leash_penalties",
    "utilitarian_choices_vs_random",
    "regrets_from_action_types",
    "maxmin_mix_c_d",
    "e_step",
    "show",
    "solution",
    "Solution",
]
_HELPERS = ("show", "solution", "Solution")


# --------------------------------------------------------------------- chapter 1
def my_social_dilemma() -> MatrixGame:
    """Exercise 1.1: the Stag Hunt (R=4, S=0, T=3, P=1) turned into a social dilemma.

    The Stag Hunt fails only T > R: make the temptation larger than the reward (keep it symmetric).
    Raising the temptation from 3 to 5 gives T=5 > R=4 > P=1 > S=0 and 2R=8 > T+S=5.
    """
    return MatrixGame.from_cells("my_dilemma", cc=(4, 4), cd=(0, 5), dc=(5, 0), dd=(1, 1))


def my_stag_hunt() -> MatrixGame:
    """Exercise 1.2: a Stag Hunt of our own. Any R > T ≥ P > S works, e.g. R=5, T=4, P=2, S=0."""
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


# --------------------------------------------------------------------- chapter 3
def parse_exact_label(answer: str) -> int:
    """Exercise 3.1: a legal answer *equals* a label once surrounding whitespace is stripped.

    Test labels: C = ``action3``, D = ``action4``. "action3." or "I choose action4" are illegal:
    the model has not followed the instruction. (moralkit's own version:
    ``moralkit.llm.parse_answer(answer, TEST_LABELS)``.)
    """
    text = answer.strip()
    if text == "action3":
        return C
    if text == "action4":
        return D
    return ILLEGAL


def regrets_by_hand() -> tuple[float, float]:
    """Exercise 3.2: (deontological regret, utilitarian regret) of the five rounds.

    ====== ============================================== ============= ===========
    round  my move after their last                       deontological utilitarian
    ====== ============================================== ============= ===========
    1      illegal                                        −6            −6
    2      D after C (exploiting), they play C: 4 + 0     −4            4
    3      C after C, they play D: 0 + 4                  0             4
    4      illegal                                        −6            −6
    5      C after C, they play C: 3 + 3                  0             6
    ====== ============================================== ============= ===========

    Deontological regret = 0 − (−16/5) = 3.2. Mean utilitarian reward = 2/5 = 0.4, so the
    utilitarian regret = (6 − 0.4) / (6 + 6) ≈ 0.467. The two illegal answers alone cost 12 of the
    16 deontological points.
    """
    deontological = [-6, -4, 0, -6, 0]
    utilitarian = [-6, 4, 4, -6, 6]
    return -sum(deontological) / 5, (6 - sum(utilitarian) / 5) / (6 + 6)


# --------------------------------------------------------------------- chapter 4
def exploitation_reward(game, my_move, opp_move, opp_prev_move):
    """Exercise 4.1: my payoff, minus 1 for defecting, minus 4 more for defecting right after their C.

    Exploiting (D after their C) costs 1 + 4 = 5, mere selfishness (D after their D) costs 1;
    cooperating costs nothing.
    """
    payoff = game.payoffs[my_move, opp_move, 0]
    selfish = my_move == D
    exploiting = (my_move == D) & (opp_prev_move == C)
    return payoff - 1.0 * selfish - 4.0 * exploiting


def exploitation_reward_prediction() -> dict[str, str]:
    """Exercise 4.2: what :func:`exploitation_reward` teaches a myopic learner against Tit-for-Tat.

    Tit-for-Tat plays my last move now. After their C, cooperating earns 3 (if I cooperated last)
    or 0, defecting 4 − 5 = −1 or 1 − 5 = −4, so **C**. After their D there is no exploitation:
    cooperating earns 3 or 0, defecting 4 − 1 = 3 or 1 − 1 = 0: a tie, so **either**, like the
    Deontological reward. (With a penalty for selfishness below 1, D wins after their D:
    reciprocity, like Game + Deontological; above 1, C wins: unconditional cooperation.)
    """
    return {"C|C": "C", "C|D": "either", "D|C": "C", "D|D": "either"}


# --------------------------------------------------------------------- chapter 5
def forgiving_deontological_reward(game, my_move, opp_move, opp_prev_move, xi=3.0):
    """Exercise 5.1: the Deontological norm, plus a bonus of 1 for cooperating after their D.

    After the opponent's D the Deontological reward pays 0 for both moves, so a player that
    learned to defect keeps doing so there, and against Tit-for-Tat mutual defection is stable.
    A *forgiveness* bonus makes C the best response there too. The moral cost: it is no longer a
    pure norm against exploitation; it asks the player to turn the other cheek.
    """
    exploiting = (my_move == D) & (opp_prev_move == C)
    forgiving = (my_move == C) & (opp_prev_move == D)
    return -xi * exploiting + 1.0 * forgiving


def kl_leash_penalties() -> tuple[float, float]:
    """Exercise 5.2: the KL term −β·log(π(a)/π_ref(a)) of answering C and of answering D.

    β = 0.2, the reference is the model at the switch (π_ref(D) = 0.99, π_ref(C) = 0.01), the
    player now plays D with probability 0.5. C: −0.2·log(0.5/0.01) ≈ −0.782 (charged);
    D: −0.2·log(0.5/0.99) ≈ +0.137 (paid). A reference at the switch would pull the player back
    towards the selfish policy, slowing unlearning down; with the untuned base model as the
    reference the penalty is neutral between C and D.
    """
    beta = 0.2
    return -beta * math.log(0.5 / 0.01), -beta * math.log(0.5 / 0.99)


# --------------------------------------------------------------------- chapter 6
def utilitarian_choices_vs_random() -> dict[str, str]:
    """Exercise 6.1: the Utilitarian reward's choice against a Random opponent, per evaluation game.

    The pair's expected payoff of each action, with the opponent's C and D ½ each:
    Prisoner's Dilemma C ½(6) + ½(4) = 5 > D ½(4) + ½(2) = 3; Stag Hunt C 5.5 > D 2.5;
    Chicken C 4.5 > D 2.5; Bach or Stravinsky 2.5 = 2.5 (either); Defective Coordination
    C ½(2) + ½(0) = 1 < D ½(0) + ½(8) = 4: the *second* action.
    """
    return {"prisoners_dilemma": "C", "stag_hunt": "C", "chicken": "C", "bach_or_stravinsky": "either",
            "defective_coordination": "D"}


def regrets_from_action_types() -> tuple[float, float]:
    """Exercise 6.2: (deontological regret, utilitarian regret) of the action-type shares
    C|C 0.3, C|D 0.1, D|C 0.2, D|D 0.3, illegal 0.1 in the Prisoner's Dilemma against Random.

    Deontological: ξ·share(D|C) + 6·share(illegal) = 4·0.2 + 6·0.1 = 1.4.
    Utilitarian: a C earns the pair 5 on average against Random, a D 3, an illegal answer −6:
    mean = 0.4·5 + 0.5·3 + 0.1·(−6) = 2.9, regret = (6 − 2.9)/12 ≈ 0.258.
    """
    deontological = 4 * 0.2 + 6 * 0.1
    mean = 0.4 * 5 + 0.5 * 3 + 0.1 * (-6)
    return deontological, (6 - mean) / 12


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


def _source(name: str) -> str:
    obj = globals().get(name)
    if obj is None or name not in __all__ or name in _HELPERS:
        raise KeyError(f"No solution called {name!r}. Solutions: {', '.join(n for n in __all__ if n not in _HELPERS)}.")
    return inspect.getsource(obj)


def show(name: str) -> None:
    """Print the source code of a solution, e.g. ``show("game_deontological_reward")``."""
    print(_source(name))


class Solution:
    """A solution that stays hidden until opened: a closed drop-down in a notebook, a hint in text.

    >>> s = solution("regrets_by_hand")
    >>> "<details>" in s._repr_html_() and "def regrets_by_hand" in s._repr_html_()
    True
    >>> repr(s)
    'Solution hidden: solutions.show("regrets_by_hand") prints it.'
    """

    def __init__(self, name: str):
        self.name = name
        self.source = _source(name)

    def _repr_html_(self) -> str:
        return ("<details><summary><b>Solution</b> (click to open; try first!)</summary>"
                f"<pre><code>{html.escape(self.source)}</code></pre></details>")

    def __repr__(self) -> str:
        return f'Solution hidden: solutions.show("{self.name}") prints it.'


def solution(name: str) -> Solution:
    """A solution as a closed drop-down for a notebook cell: ``solution("e_step")``; raises KeyError for an unknown name."""
    return Solution(name)
