"""The batched iterated game with memory-1 state."""

import numpy as np
import pytest

from moralkit.env import ACTION_TYPES, IteratedGame, action_type_shares, action_types, run_episodes
from moralkit.games import C, D, ILLEGAL


def test_reset_draws_random_initial_states_reproducibly():
    a = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=200, seed=3).reset()
    b = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=200, seed=3).reset()
    assert (a.my_prev == b.my_prev).all() and (a.opp_prev == b.opp_prev).all()
    assert 0.35 < a.my_prev.mean() < 0.65 and 0.35 < a.opp_prev.mean() < 0.65
    ad = IteratedGame("prisoners_dilemma", "always_defect", n_games=5, seed=0).reset()
    assert ad.opp_prev.tolist() == [D] * 5


def test_tit_for_tat_first_round_copies_the_initial_state():
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=64, seed=0)
    s = env.reset()
    res = env.step(np.full(64, C))
    assert res.opp_moves.tolist() == s.my_prev.tolist()


def test_illegal_answers_keep_the_last_legal_move_and_earn_r_illegal():
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=2, seed=0, rewards=["game", "deontological"], r_illegal=-9)
    env.reset()
    env.step([D, C])
    res = env.step([ILLEGAL, ILLEGAL])
    assert res.state.my_prev.tolist() == [D, C]  # not updated by the illegal answers
    assert res.rewards["game"].tolist() == [-9, -9] and res.rewards["deontological"].tolist() == [-9, -9]
    assert np.isnan(res.my_payoffs).all()
    res = env.step([C, C])
    assert res.opp_moves.tolist() == [D, C]  # Tit-for-Tat copies the last *legal* move


def test_rewards_use_the_opponents_previous_move():
    env = IteratedGame("prisoners_dilemma", "always_cooperate", n_games=1, seed=0)
    env.reset()
    res = env.step([D])  # defect against a cooperator (AC's initial previous move is C)
    assert res.rewards["deontological"].tolist() == [-3.0]
    assert res.rewards["game"].tolist() == [4.0] and res.rewards["utilitarian"].tolist() == [4.0]
    assert res.rewards["game_deontological"].tolist() == [1.0]


def test_episode_ends_after_its_rounds_and_frame_is_tidy():
    env = IteratedGame("stag_hunt", "random", n_games=3, rounds=5, seed=1)
    frame = run_episodes(env, lambda state, rng: np.full(len(state), C), episodes=2)
    assert len(frame) == 2 * 5 * 3
    assert frame.groupby("episode")["round"].max().tolist() == [5, 5]
    assert set(frame["action_type"]) <= {"C|C", "C|D"}
    assert {"my_move", "opp_move", "my_payoff", "opp_payoff", "reward_game", "reward_utilitarian"} <= set(frame.columns)
    assert frame["game"].iloc[0] == "stag_hunt" and frame["opponent"].iloc[0] == "random"


def test_info_columns_are_recorded():
    env = IteratedGame("chicken", "tit_for_tat", n_games=2, seed=0)
    env.reset()
    env.step([C, ILLEGAL], info={"answer": ["action1", "hello"]})
    frame = env.frame()
    assert frame["answer"].tolist() == ["action1", "hello"]
    assert frame["action_type"].iloc[1] == "illegal"


def test_two_learners_supply_both_moves_and_get_their_own_rewards():
    env = IteratedGame("bach_or_stravinsky", None, n_games=2, seed=0)
    s = env.reset()
    res = env.step([C, D], opp_moves=[C, ILLEGAL])
    assert res.rewards["game"].tolist() == [3.0, 0.0]  # second round void for M: O was illegal
    assert res.opp_rewards["game"].tolist() == [2.0, -6.0]
    assert res.state.opp_prev[1] == s.opp_prev[1]  # O's illegal answer keeps its last legal move
    with pytest.raises(ValueError, match="opp_moves"):
        env.step([C, C])


def test_bad_moves_are_rejected_clearly():
    env = IteratedGame("chicken", "tit_for_tat", n_games=2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="one move per game"):
        env.step([C])
    with pytest.raises(ValueError, match="0 \\(C\\), 1 \\(D\\) or -1"):
        env.step([C, 2])


def test_action_types_and_shares():
    assert action_types([C, C, D, D, ILLEGAL], [C, D, C, D, C]).tolist() == list(ACTION_TYPES)
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=50, seed=0)
    frame = run_episodes(env, lambda s, rng: np.full(len(s), D), episodes=2)
    shares = action_type_shares(frame)
    assert shares.sum() == pytest.approx(1.0) and shares["C|C"] == 0 and shares["C|D"] == 0
    assert shares["D|D"] > 0.7  # TFT retaliates from round 2 on


def test_batched_step_is_vectorised():
    """Ten thousand games advance in one call, fast (no Python loop per game)."""
    import time

    env = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=10_000, seed=0)
    env.reset()
    start = time.perf_counter()
    for _ in range(5):
        env.step(env.rng.integers(0, 2, 10_000))
    assert len(env.frame()) == 50_000
    assert time.perf_counter() - start < 5.0  # generous: the check is "no per-game loop", not speed
