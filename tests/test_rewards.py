"""Moral rewards: docs/science.md §2 on every case of every game, with ξ and R_illegal honoured."""

import itertools

import numpy as np
import pytest

from moralkit.games import C, D, ILLEGAL, get_game
from moralkit.rewards import (
    REWARDS,
    RewardError,
    get_reward,
    make_reward,
    normalised,
    register_reward,
    reward_range,
    reward_table,
    weighted_sum,
)

SIX_GAMES = ["prisoners_dilemma", "stag_hunt", "chicken", "bach_or_stravinsky", "defective_coordination", "volunteers_dilemma"]
CASES = list(itertools.product((C, D), repeat=3))  # (my move, opp move, opp previous move)


def reference(name, game, my, opp, prev, xi):
    """docs/science.md §2 written out case by case, independently of the library's vectorised code."""
    r_m, r_o = game.payoff(my, opp)
    violation = my == D and prev == C
    if name == "game":
        return r_m
    if name == "deontological":
        return -xi if violation else 0.0
    if name == "utilitarian":
        return r_m + r_o
    if name == "game_deontological":
        return r_m - (xi if violation else 0.0)
    if name == "virtue_equality":
        return 1.0 if r_m + r_o == 0 else 1 - abs(r_m - r_o) / (r_m + r_o)
    if name == "virtue_kindness":
        return xi if my == C else 0.0
    if name == "anti_utilitarian":
        return -(r_m + r_o)
    if name == "malicious_deontological":
        return xi if violation else 0.0
    if name == "virtue_inequality":
        return 0.0 if r_m + r_o == 0 else abs(r_m - r_o) / (r_m + r_o)
    if name == "virtue_aggression":
        return xi if my == D else 0.0
    raise KeyError(name)


ALL_NAMES = ["game", "deontological", "utilitarian", "game_deontological", "virtue_equality", "virtue_kindness",
             "anti_utilitarian", "malicious_deontological", "virtue_inequality", "virtue_aggression"]


def test_registry_holds_every_reward_of_the_spec():
    assert set(ALL_NAMES) <= set(REWARDS)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("game_name", SIX_GAMES)
@pytest.mark.parametrize("xi, r_illegal", [(3.0, -6.0), (5.0, -10.0)])
def test_every_case_of_every_game(name, game_name, xi, r_illegal):
    game = get_game(game_name)
    reward = get_reward(name, xi=xi, r_illegal=r_illegal)
    for my, opp, prev in CASES:
        assert reward(game, my, opp, prev) == pytest.approx(reference(name, game, my, opp, prev, xi)), (my, opp, prev)
    # the vectorised call agrees with the scalar one
    my, opp, prev = map(np.array, zip(*CASES))
    expected = [reference(name, game, *c, xi) for c in CASES]
    np.testing.assert_allclose(reward(game, my, opp, prev), expected)
    # an illegal answer earns R_illegal whatever else happened
    for opp_move, prev in itertools.product((C, D), repeat=2):
        assert reward(game, ILLEGAL, opp_move, prev) == r_illegal


def test_hand_computed_values_in_the_prisoners_dilemma():
    pd = get_game("prisoners_dilemma")
    assert get_reward("game")(pd, D, C, C) == 4
    assert get_reward("deontological")(pd, D, C, C) == -3
    assert get_reward("deontological")(pd, D, C, D) == 0  # defecting after their D breaks no norm
    assert get_reward("deontological", xi=4)(pd, D, D, C) == -4
    assert get_reward("utilitarian")(pd, C, D, C) == 4
    assert get_reward("game_deontological")(pd, D, C, C) == 1
    assert get_reward("virtue_equality")(pd, C, D, C) == 0  # 1 - |0 - 4| / 4
    assert get_reward("virtue_equality")(pd, D, D, C) == 1
    assert get_reward("virtue_kindness")(pd, C, D, D) == 3
    assert get_reward("virtue_aggression")(pd, D, D, D) == 3
    assert get_reward("game", r_illegal=-6)(pd, ILLEGAL, C, C) == -6


def test_deontological_reward_ignores_payoffs():
    a, b = get_game("prisoners_dilemma"), get_game("defective_coordination")
    deont = get_reward("deontological")
    for c in CASES:
        assert deont(a, *c) == deont(b, *c)


def test_void_round_when_only_the_opponent_was_illegal():
    assert get_reward("utilitarian")(get_game("stag_hunt"), C, ILLEGAL, C) == 0.0


def test_unknown_name_lists_the_choices():
    with pytest.raises(RewardError, match="Valid names: game, deontological, utilitarian"):
        get_reward("kantian")
    assert get_reward("Game+Deontological").name == "game_deontological"
    assert get_reward("selfish").name == "game"


def test_student_defined_rewards():
    def reciprocity(game, my_move, opp_move, opp_prev_move):
        """+1 for answering like with like."""
        return np.where(my_move == opp_prev_move, 1.0, 0.0)

    r = make_reward(reciprocity)
    assert r.name == "reciprocity" and r.description == "+1 for answering like with like."
    assert r(get_game("chicken"), [C, D, ILLEGAL], [C, C, C], [C, C, C]).tolist() == [1.0, 0.0, -6.0]

    def penalised(game, my_move, opp_move, opp_prev_move, xi=1.0):
        return np.where(my_move == D, -xi, 0.0)

    assert get_reward(penalised, xi=7)(get_game("chicken"), D, C, C) == -7

    with pytest.raises(RewardError, match="four positional"):
        make_reward(lambda game, my_move: 0)
    with pytest.raises(RewardError, match="function"):
        make_reward(42)


def test_register_reward_makes_it_available_by_name():
    @register_reward(name="test_only_pacifist", aliases=["test_pacifist"])
    def pacifist(game, my_move, opp_move, opp_prev_move):
        return np.where(my_move == C, 1.0, -1.0)

    try:
        assert get_reward("test_pacifist")(get_game("chicken"), D, C, C) == -1
    finally:
        REWARDS.pop("test_only_pacifist")


def test_reward_table_rows_and_values():
    t = reward_table("game_deontological", "prisoners_dilemma")
    assert t.loc[("D", "C"), "C"] == 1.0  # exploit a cooperator: 4 - 3
    assert t.loc[("D", "D"), "C"] == 4.0
    assert t.loc[("illegal", "any"), "D"] == -6.0
    assert t.shape == (5, 2)


def test_combinators():
    pd = get_game("prisoners_dilemma")
    combo = weighted_sum({"game": 1, "deontological": 1})
    gd = get_reward("game_deontological")
    for c in CASES:
        assert combo(pd, *c) == gd(pd, *c)
    assert reward_range("utilitarian", pd) == (2.0, 6.0)
    n = normalised("utilitarian", pd)
    assert n(pd, C, C, C) == 1.0 and n(pd, D, D, C) == 0.0 and n(pd, C, D, C) == 0.5
