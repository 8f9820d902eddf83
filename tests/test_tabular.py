"""The pure-RL prelude reproduces theory (docs/science.md §5, §7)."""

import pytest

from moralkit.tabular import outcome_metrics, train_q_learning

ALL = ("C|C", "C|D", "D|C", "D|D")  # state: my last move | opponent's last move


def policy(reward, gamma, **kw):
    res = train_q_learning("prisoners_dilemma", reward, "tit_for_tat", gamma=gamma, n_runs=20, seed=1, **kw)
    return res, res.policy_table().iloc[:, 0]  # share of runs whose greedy action is D, per state


def test_myopic_selfish_learner_defects_against_tit_for_tat():
    res, p_d = policy("game", 0.0)
    assert (p_d == 1.0).all()
    assert res.converged_at({s: "D" for s in ALL}) is not None
    assert res.final_behaviour()[["D|C", "D|D"]].sum() > 0.85


def test_myopic_utilitarian_learner_cooperates():
    _, p_d = policy("utilitarian", 0.0)
    assert (p_d == 0.0).all()


def test_myopic_deontological_learner_stops_exploiting_and_is_indifferent_after_d():
    _, p_d = policy("deontological", 0.0)
    assert p_d["C|C"] == 0.0 and p_d["D|C"] == 0.0  # after the opponent's C: never D
    assert p_d["C|D"] == 0.5 and p_d["D|D"] == 0.5  # after a D both actions are worth 0: a tie


def test_myopic_game_deontological_learner_reciprocates():
    _, p_d = policy("game_deontological", 0.0)
    assert p_d["C|C"] == 0.0 and p_d["D|C"] == 0.0  # C after C
    assert p_d["C|D"] == 1.0 and p_d["D|D"] == 1.0  # D after D


def test_far_sighted_selfish_learner_cooperates_with_tit_for_tat():
    res, p_d = policy("game", 0.9)
    assert (p_d <= 0.1).all()
    assert res.converged_at({s: "C" for s in ALL}) is not None
    assert res.final_behaviour()["C|C"] > 0.8


def test_two_learners_and_outcome_metrics():
    res = train_q_learning("prisoners_dilemma", "utilitarian", "learner", opponent_reward="utilitarian",
                           gamma=0.0, n_runs=5, iterations=3000, seed=0)
    assert (res.policy_table().to_numpy() == 0.0).all()  # both cooperate everywhere
    m = outcome_metrics(res.history, window=1000)
    assert list(m.columns) == ["collective", "equality", "worse_off"]
    assert m["collective"].iloc[-1] > 5.0 and m["equality"].iloc[-1] > 0.9
    selfish = train_q_learning("prisoners_dilemma", "game", "learner", opponent_reward="game",
                               gamma=0.0, n_runs=5, iterations=3000, seed=0)
    assert outcome_metrics(selfish.history, 1000)["collective"].iloc[-1] < 3.0


def test_bad_parameters():
    with pytest.raises(ValueError, match="opponent_reward"):
        train_q_learning("prisoners_dilemma", "game", "learner")
    with pytest.raises(ValueError, match="gamma"):
        train_q_learning("prisoners_dilemma", "game", gamma=1.0)
