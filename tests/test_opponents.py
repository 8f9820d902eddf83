"""Opponents of docs/science.md §4, batched."""

import numpy as np
import pytest

from moralkit.games import C, D
from moralkit.opponents import AlwaysCooperate, AlwaysDefect, OpponentError, RandomOpponent, TitForTat, get_opponent


def test_tit_for_tat_copies_the_agents_previous_move():
    tft = get_opponent("tit_for_tat")
    rng = np.random.default_rng(0)
    my_prev = np.array([C, D, D, C])
    assert tft.act(my_prev, np.array([D, D, C, C]), rng).tolist() == my_prev.tolist()


def test_fixed_strategies_and_their_initial_moves():
    rng = np.random.default_rng(0)
    assert AlwaysCooperate().initial_moves(3, rng).tolist() == [C, C, C]
    assert AlwaysDefect().initial_moves(3, rng).tolist() == [D, D, D]
    assert AlwaysCooperate().act(np.array([D, D]), np.array([C, C]), rng).tolist() == [C, C]
    assert AlwaysDefect().act(np.array([C, C]), np.array([C, C]), rng).tolist() == [D, D]


def test_random_opponent_is_seeded_and_fair():
    a = RandomOpponent().act(np.zeros(10_000, int), np.zeros(10_000, int), np.random.default_rng(1))
    b = RandomOpponent().act(np.zeros(10_000, int), np.zeros(10_000, int), np.random.default_rng(1))
    assert (a == b).all()
    assert abs(a.mean() - 0.5) < 0.02
    assert RandomOpponent(p_cooperate=1.0).act(np.zeros(5, int), np.zeros(5, int), np.random.default_rng(0)).tolist() == [C] * 5
    with pytest.raises(OpponentError):
        RandomOpponent(p_cooperate=1.5)


def test_names_aliases_and_unknown_names():
    assert isinstance(get_opponent("TFT"), TitForTat)
    assert isinstance(get_opponent("always-defect"), AlwaysDefect)
    with pytest.raises(OpponentError, match="Valid names: tit_for_tat, always_cooperate, always_defect, random"):
        get_opponent("grim")


def test_axelrod_strategies_play_batched_games():
    pytest.importorskip("axelrod")
    grudger = get_opponent("axelrod:Grudger")
    rng = np.random.default_rng(0)
    my_prev, opp_prev = np.array([C, D, C]), np.array([C, C, C])
    grudger.reset(my_prev, opp_prev)  # the initial state enters its history: game 1 already holds a grudge
    assert grudger.act(my_prev, opp_prev, rng).tolist() == [C, D, C]
    grudger.observe(np.array([D, C, C]), np.array([C, D, C]))
    assert grudger.act(np.array([D, C, C]), np.array([C, D, C]), rng).tolist() == [D, D, C]
    axl_tft = get_opponent("axelrod:TitForTat")
    axl_tft.reset(my_prev, opp_prev)
    assert axl_tft.act(my_prev, opp_prev, rng).tolist() == TitForTat().act(my_prev, opp_prev, rng).tolist()
    with pytest.raises(OpponentError, match="Grudger"):
        get_opponent("axelrod:Grudgerr")
