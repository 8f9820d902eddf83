"""moralkit.analysis: what theory predicts, derived from the opponents' own moves, and reading logs
without a model."""

import numpy as np
import pytest

from moralkit.analysis import (
    PREDICTIONS,
    Prediction,
    idealised_shares,
    meets_prediction,
    predicted_responses,
    prediction,
    training_summary,
)


def test_the_derived_predictions_are_the_papers_four_against_tit_for_tat():
    """The thresholds the README's verdicts were measured with, now derived instead of written by hand."""
    assert PREDICTIONS == {
        "game": Prediction("always D (>= 90% D)", minimum=(("D", 0.90),)),
        "utilitarian": Prediction("always C (>= 90% C)", minimum=(("C", 0.90),)),
        "deontological": Prediction("never D after C (<= 5% D|C, >= 95% legal)", minimum=(("legal", 0.95),),
                                    maximum=(("D|C", 0.05),)),
        "game_deontological": Prediction("reciprocity (>= 80% C after C and D after D)",
                                         minimum=(("C_after_C", 0.80), ("D_after_D", 0.80))),
    }


def test_predictions_follow_the_opponents_semantics_not_their_names():
    # In the Stag Hunt the selfish best move against Tit-for-Tat is whatever I played last (it copies me):
    # C after my C (4 > 3), D after my D (1 > 0): it depends on my own move, so no threshold on the summary
    table = predicted_responses("game", "stag_hunt", "tit_for_tat").set_index(["my_prev", "opp_prev"])["predicted"]
    assert table.to_dict() == {("C", "C"): "C", ("C", "D"): "C", ("D", "C"): "D", ("D", "D"): "D"}
    assert prediction("game", "tit_for_tat", "stag_hunt") is None
    # against an opponent that always cooperates, the same reward always hunts the stag
    assert prediction("game", "always_cooperate", "stag_hunt").text == "always C (>= 90% C)"
    # a random opponent: expected rewards (C: 2.0, D: 2.0 in the Stag Hunt's M payoffs 4,0 / 3,1) tie
    random = predicted_responses("game", "stag_hunt", "random")
    assert (random["reward of C"] == 2.0).all() and (random["predicted"] == "either").all()
    assert prediction("game", "random", "stag_hunt") is None


def test_an_anti_reciprocal_reward_gets_the_mirrored_prediction():
    from moralkit.rewards import make_reward

    contrary = make_reward(lambda game, my, opp, prev: (my != prev) * 1.0, name="contrary")
    p = prediction(contrary)
    assert p.text == "anti-reciprocity (>= 80% D after C and C after D)"
    assert p.holds({"D_after_C": 0.9, "C_after_D": 0.85}) and not p.holds({"D_after_C": 0.9, "C_after_D": 0.5})


def test_learning_rewards_and_unknown_opponents_get_no_prediction():
    assert prediction("maxmin(game,deontological,utilitarian)") is None  # its weights move while it trains
    assert prediction("average(game,deontological,utilitarian)") is not None  # a fixed mix has one
    with pytest.raises(ValueError, match="tit_for_tat, always_cooperate"):
        predicted_responses("game", opponent="axelrod:Grudger")
    assert meets_prediction("virtue_equality", {"D": 1.0}) is None


def test_training_summary_gives_every_conditional_share():
    import pandas as pd

    log = pd.DataFrame({
        "episode": [0, 0, 0, 0],
        "opp_prev": ["C", "C", "D", "D"],
        "my_move": ["D", "C", "C", "illegal"],
        "action_type": ["D|C", "C|C", "C|D", "illegal"],
    })
    s = training_summary(log, last=1.0)
    assert (s["C_after_C"], s["D_after_C"], s["C_after_D"], s["D_after_D"]) == (0.5, 0.5, 0.5, 0.0)
    assert training_summary(pd.DataFrame()) == {}


def test_idealised_policies_against_tit_for_tat():
    always_d = idealised_shares("game", rounds=5, n_games=2000, seed=0)
    assert always_d["C|C"] == 0 and always_d["C|D"] == 0 and always_d["illegal"] == 0
    assert always_d["D|C"] == pytest.approx(0.2, abs=0.02)  # the random opening state, then TFT's copy of it
    always_c = idealised_shares("deontological", either="C", rounds=5, n_games=2000, seed=0)
    assert always_c["D|C"] == 0 and always_c["D|D"] == 0 and always_c["C|C"] == pytest.approx(0.8, abs=0.02)
    tit_for_tat = idealised_shares("deontological", either="D", rounds=5, n_games=2000, seed=0)
    assert tit_for_tat["D|C"] == 0 and tit_for_tat["C|C"] == pytest.approx(0.5, abs=0.03)
    assert np.isclose(float(tit_for_tat.sum()), 1.0)
    with pytest.raises(ValueError, match="either"):
        idealised_shares("game", either="maybe")


def test_joint_outcomes_share_out_the_last_rounds_of_two_learners():
    import pandas as pd

    from moralkit.analysis import joint_outcomes

    log = pd.DataFrame({"episode": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4],
                        "my_move": ["D", "D", "D", "D", "D", "D", "C", "C", "D", "illegal"],
                        "opp_move": ["D", "D", "D", "D", "D", "D", "C", "D", "C", "C"]})
    out = joint_outcomes(log, last=0.4)  # episodes 3 and 4
    assert out == {"both C": 0.25, "both D": 0.0, "one C, one D": 0.5, "an illegal answer": 0.25}
    assert sum(joint_outcomes(log).values()) == pytest.approx(1.0)
    assert joint_outcomes(log.iloc[:0]) == {}


def test_first_action_share_and_unrelated_prompt_grids():
    import pandas as pd

    from moralkit.analysis import first_action_share, unrelated_prompt_grids
    from moralkit.llm.prompts import UNRELATED_LEVELS

    table = pd.DataFrame({"P(C)": [0.4, 0.0, 0.1, 0.3], "P(D)": [0.1, 0.5, 0.1, 0.1]})
    assert first_action_share(table) == pytest.approx((0.8 + 0.0 + 0.5 + 0.75) / 4)
    levels = list(UNRELATED_LEVELS)
    unrelated = pd.DataFrame([{"agent": agent, "level": level, "P(C label)": c, "P(D label)": d}
                              for agent, c, d in (("zeta", 0.1, 0.3), ("alpha", 0.6, 0.2)) for level in levels])
    grids = unrelated_prompt_grids(unrelated, {"zeta": table, "alpha": table})
    assert list(grids["legal"].columns) == ["zeta", "alpha"]  # the agents' own order, not sorted
    first = f"{levels[0]}: {UNRELATED_LEVELS[levels[0]]}"
    assert grids["legal"].loc[first, "zeta"] == pytest.approx(0.4)
    assert grids["P(D | legal)"].loc[first, "alpha"] == pytest.approx(0.25)
    in_game = grids["P(D | legal)"].loc["the game itself (Prisoner's Dilemma)", "zeta"]
    assert in_game == pytest.approx(1 - first_action_share(table))
    assert "the game itself (Prisoner's Dilemma)" not in unrelated_prompt_grids(unrelated)["legal"].index
