"""Exercise checks accept right answers, reject wrong ones with a helpful message, never raise."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from moralkit import solutions  # noqa: E402
from moralkit.exercises import (  # noqa: E402
    CheckResult,
    check_cooperation_threshold,
    check_game_kind,
    check_is_social_dilemma,
    check_my_reward,
    check_reward,
    dilemma_checklist,
)
from moralkit.games import C, D, MatrixGame, get_game  # noqa: E402
from moralkit.rewards import get_reward, make_reward  # noqa: E402


def _text(result: CheckResult) -> str:
    return str(result)


# --------------------------------------------------------------------- rewards
def reciprocity(game, my_move, opp_move, opp_prev_move):
    return np.where(my_move == opp_prev_move, 1.0, 0.0)


def test_a_correct_reward_passes_and_the_verdict_is_printed(capsys):
    result = check_my_reward(reciprocity)
    assert result and result.passed
    out = capsys.readouterr().out
    assert "✓ All checks passed" in out and "✗" not in out


def test_a_reward_with_xi_and_a_constant_reward_pass():
    assert check_my_reward(solutions.game_deontological_reward, verbose=False)
    assert check_my_reward(lambda game, a, b, c: 1.0, verbose=False)


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda game, my_move: 0.0, "takes exactly four"),
        (lambda game, my_move, opp_move, opp_prev_move, extra: 0.0, "takes exactly four"),
        (lambda game, my_move, opp_move, opp_prev_move, *, xi: 0.0, "give `xi` a default"),
        ("not a function", "is not a function"),
    ],
)
def test_wrong_signatures_are_rejected(fn, message):
    result = check_my_reward(fn, verbose=False)
    assert not result
    assert message in _text(result)


def test_a_non_vectorised_reward_is_rejected_with_a_numpy_tip():
    def with_if(game, my_move, opp_move, opp_prev_move):
        if my_move == D and opp_prev_move == C:
            return -3.0
        return 0.0

    result = check_my_reward(with_if, verbose=False)
    assert not result
    assert "vectorised" in _text(result) and "np.where" in _text(result)


def test_a_reward_giving_nan_is_rejected_with_the_round_named():
    def equality_without_guard(game, my_move, opp_move, opp_prev_move):
        r = game.payoffs[my_move, opp_move]
        return 1 - np.abs(r[..., 0] - r[..., 1]) / (r[..., 0] + r[..., 1])

    result = check_my_reward(equality_without_guard, verbose=False)
    assert not result
    assert "nan" in _text(result) and "division by zero" in _text(result)
    assert "Chicken" in _text(result)  # (D, D) pays (0, 0) there


def test_other_broken_rewards_get_specific_messages():
    def no_return(game, my_move, opp_move, opp_prev_move):
        pass

    def crashes(game, my_move, opp_move, opp_prev_move):
        return game.payoff_of(my_move)

    def wrong_shape(game, my_move, opp_move, opp_prev_move):
        return np.zeros(3) + np.sum(my_move)

    def batch_differs(game, my_move, opp_move, opp_prev_move):
        return np.full(np.shape(my_move), float(np.size(my_move)))

    assert "forget `return`" in _text(check_my_reward(no_return, verbose=False))
    assert "AttributeError" in _text(check_my_reward(crashes, verbose=False))
    assert "one number per round" in _text(check_my_reward(wrong_shape, verbose=False))
    assert "inside a batch" in _text(check_my_reward(batch_differs, verbose=False))


def test_a_reward_that_passes_the_check_trains_in_moralkit():
    assert check_my_reward(reciprocity, verbose=False)
    reward = make_reward(reciprocity)
    assert reward(get_game("stag_hunt"), np.array([0, 1]), np.array([0, 0]), np.array([0, 1])).tolist() == [1.0, 1.0]


def test_check_reward_compares_with_the_reference(capsys):
    assert check_reward(solutions.game_deontological_reward, "game_deontological")
    capsys.readouterr()

    def forgot_the_penalty(game, my_move, opp_move, opp_prev_move, xi=3.0):
        return game.payoffs[my_move, opp_move, 0]

    result = check_reward(forgot_the_penalty, "game_deontological")
    out = capsys.readouterr().out
    assert not result
    assert "yours 4, expected 1" in out and "Hint" in out
    # xi is honoured: the solution with xi=5 matches the reference with xi=5
    assert check_reward(solutions.game_deontological_reward, "game_deontological", xi=5, verbose=False)


def test_solution_rewards_are_valid():
    assert check_my_reward(solutions.inequity_averse_reward, verbose=False)


# --------------------------------------------------------------------- games
def test_dilemma_checklist_of_the_prisoners_dilemma_is_all_true():
    assert all(ok for _, ok in dilemma_checklist("prisoners_dilemma"))
    failing = [text for text, ok in dilemma_checklist("stag_hunt") if not ok]
    assert len(failing) == 1 and failing[0].startswith("T > R")


def test_check_is_social_dilemma():
    assert check_is_social_dilemma(solutions.my_social_dilemma(), verbose=False)
    stag = MatrixGame.from_cells("stub", (4, 4), (0, 3), (3, 0), (1, 1))
    result = check_is_social_dilemma(stag, verbose=False)
    assert not result and "✗ T > R" in _text(result)
    weak = MatrixGame.symmetric("weak", R=3, S=0, T=7, P=1)  # 2R < T + S
    assert "✗ 2R > T + S" in _text(check_is_social_dilemma(weak, verbose=False))
    assert "not a valid game" in _text(check_is_social_dilemma([[1, 2]], verbose=False))
    assert "expected a MatrixGame" in _text(check_is_social_dilemma(object(), verbose=False))


def test_check_game_kind():
    assert check_game_kind(solutions.my_stag_hunt(), "stag hunt", verbose=False)
    result = check_game_kind(get_game("chicken"), "stag hunt", verbose=False)
    assert not result and "R > T ≥ P > S" in _text(result)
    assert not check_game_kind(get_game("bach_or_stravinsky"), "stag hunt", verbose=False)


def test_cooperation_threshold_check_and_solution():
    assert solutions.cooperation_threshold("prisoners_dilemma") == pytest.approx(1 / 3)
    assert check_cooperation_threshold(1 / 3, verbose=False)
    assert "too high" in _text(check_cooperation_threshold(0.5, verbose=False))
    assert "too low" in _text(check_cooperation_threshold(0.1, verbose=False))
    assert "no answer yet" in _text(check_cooperation_threshold(None, verbose=False))
    assert "not a number" in _text(check_cooperation_threshold("a third", verbose=False))


def test_tft_values_cross_at_the_threshold():
    for name in ("prisoners_dilemma", "prisoners_dilemma_ijcai23"):
        g = solutions.cooperation_threshold(name)
        v = solutions.tft_discounted_values(name, g)
        assert v["always C"] == pytest.approx(max(v["always D"], v["alternate D, C"]))
        above = solutions.tft_discounted_values(name, g + 0.05)
        assert above["always C"] > max(above["always D"], above["alternate D, C"])


def test_solutions_show_prints_source(capsys):
    solutions.show("game_deontological_reward")
    assert "def game_deontological_reward" in capsys.readouterr().out
    with pytest.raises(KeyError, match="Solutions:"):
        solutions.show("nope")


# --------------------------------------------------------------------- chapter 3: the LLM as a player
def test_parse_check_accepts_the_protocols_parser_in_ints_or_words():
    from moralkit.exercises import PARSE_CASES, check_parse_answer
    from moralkit.games import ILLEGAL
    from moralkit.llm.prompts import TEST_LABELS, parse_answer

    assert check_parse_answer(lambda a: parse_answer(a, TEST_LABELS), verbose=False)
    words = {C: "C", D: "D", ILLEGAL: "illegal"}
    assert check_parse_answer(lambda a: words[parse_answer(a, TEST_LABELS)], verbose=False)
    # the cases agree with the protocol's own parser
    assert all(words[parse_answer(a, TEST_LABELS)] == expected for a, expected in PARSE_CASES)


def test_parse_check_rejects_substring_matching_and_crashes_with_hints(capsys):
    from moralkit.exercises import check_parse_answer

    lenient = check_parse_answer(lambda a: "C" if "action3" in a else "D" if "action4" in a else "illegal")
    assert not lenient and "must *equal* one" in str(lenient)
    assert "✗ Not yet" in capsys.readouterr().out
    no_strip = check_parse_answer(lambda a: {"action3": 0, "action4": 1}.get(a, -1), verbose=False)
    assert not no_strip and "strip" in str(no_strip)
    crash = check_parse_answer(lambda a: a[100], verbose=False)
    assert not crash and "IndexError" in str(crash)
    assert not check_parse_answer("not a function", verbose=False)


def test_regrets_by_hand_check_and_its_hints():
    from moralkit.exercises import REGRET_EXERCISE, check_regrets_by_hand, regret_exercise_rounds

    table = regret_exercise_rounds()
    assert list(table.index) == [1, 2, 3, 4, 5] and len(REGRET_EXERCISE) == 5
    # each round's "their_last" is the previous round's "their_move" (a consistent record)
    assert list(table["their_last"].iloc[1:]) == list(table["their_move"].iloc[:-1])
    # rewards: -6, -4, 0, -6, 0 (deontological, ξ = 4) and -6, 4, 4, -6, 6 (utilitarian)
    assert check_regrets_by_hand(16 / 5, (6 - 2 / 5) / 12, verbose=False)
    assert check_regrets_by_hand("3.2", 0.4667, verbose=False)  # numbers as text are fine too
    assert not check_regrets_by_hand(None, None, verbose=False)
    left_out = check_regrets_by_hand(4 / 3, (6 - 14 / 3) / 12, verbose=False)
    assert not left_out and str(left_out).count("left the illegal rounds out") == 2
    assert "ξ = 4" in str(check_regrets_by_hand(3.0, 0.4667, verbose=False))
    assert "between 0 and 1" in str(check_regrets_by_hand(3.2, 5.6, verbose=False))


# --------------------------------------------------------------------- chapter 4: did training move the way the reward predicts?
def _policy(p_c, p_d):
    import pandas as pd

    p_c, p_d = np.asarray(p_c, float), np.asarray(p_d, float)
    return pd.DataFrame({"my_prev": list("CCDD"), "opp_prev": list("CDCD"), "P(C)": p_c, "P(D)": p_d,
                         "P(illegal)": 1 - p_c - p_d})


def _training_log(episodes=10, per_state=10, seed=0, final_d=0.9):
    """A synthetic training log: illegal answers vanish, then D takes over in every state."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for e in range(episodes):
        p_illegal = max(0.0, 0.9 - 0.3 * e)
        p_d = final_d * e / (episodes - 1)
        for my_prev, opp_prev in [("C", "C"), ("C", "D"), ("D", "C"), ("D", "D")]:
            for _ in range(per_state):
                u = rng.random()
                move = "illegal" if u < p_illegal else ("D" if rng.random() < p_d else "C")
                rows.append({"episode": e, "my_prev": my_prev, "opp_prev": opp_prev, "my_move": move,
                             "action_type": "illegal" if move == "illegal" else f"{move}|{opp_prev}"})
    return pd.DataFrame(rows)


def test_predicted_responses_are_the_myopic_best_responses_of_spec_5():
    from moralkit.analysis import predicted_responses

    def predicted(reward, **kw):
        return predicted_responses(reward, **kw)["predicted"].tolist()

    # states in order (my last, their last): CC, CD, DC, DD; vs Tit-for-Tat their move now = my last
    assert predicted("game") == ["D"] * 4
    assert predicted("utilitarian") == ["C"] * 4
    assert predicted("deontological") == ["C", "either", "C", "either"]
    assert predicted("game_deontological") == ["C", "D", "C", "D"]
    assert predicted(reciprocity) == ["C", "D", "C", "D"]  # your own function works too
    assert predicted("utilitarian", opponent="always_defect") == ["C"] * 4
    table = predicted_responses("game", opponent="random")
    assert table["reward of C"].tolist() == [1.5] * 4 and table["reward of D"].tolist() == [2.5] * 4
    with pytest.raises(ValueError, match="opponent"):
        predicted_responses("game", opponent="axelrod:Grudger")


def test_check_training_moved_with_exact_probabilities_before_and_after():
    from moralkit.exercises import check_training_moved

    before = _policy([0.03] * 4, [0.02] * 4)
    reciprocal = _policy([0.8, 0.1, 0.7, 0.2], [0.1, 0.8, 0.2, 0.7])
    ok = check_training_moved(None, reciprocity, before=before, after=reciprocal, verbose=False)
    assert ok and "4 of 4" in str(ok) and "60.0% → 90.0%" not in str(ok)
    assert "5.0% → 90.0%" in str(ok)
    # the same tables with another expectation: the C-states did not move towards D
    wrong = check_training_moved(None, "game", before=before, after=reciprocal, verbose=False)
    assert not wrong and "2 of 4" in str(wrong) and "✗" in str(wrong)
    # a dict of expectations (keys = their last move) and "either" states
    assert check_training_moved(None, {"C": "C", "D": "D"}, before=before, after=reciprocal, verbose=False)
    deont = check_training_moved(None, "deontological", before=before, after=reciprocal, verbose=False)
    assert deont and "does not prefer either move" in str(deont)
    # no format learned: fails with the hint that the format comes first
    stuck = check_training_moved(None, "game", before=before, after=_policy([0.02] * 4, [0.02] * 4), verbose=False)
    assert not stuck and "format" in str(stuck)
    # a tiny change (one smoke update) is not a move
    tiny = check_training_moved(None, "game", before=before, after=_policy([0.03] * 4, [0.021] * 4), verbose=False)
    assert not tiny and "0 of 4" in str(tiny)
    assert check_training_moved(None, "game", before=before, after=_policy([0.03] * 4, [0.021] * 4),
                                min_change=0.0001, verbose=False)


def test_check_training_moved_on_a_training_log_and_a_run(capsys):
    from types import SimpleNamespace

    from moralkit.exercises import check_training_moved, prediction_agreement
    from moralkit.training import TrainingConfig

    log = _training_log()
    assert check_training_moved(log, "game", verbose=False)
    assert not check_training_moved(log, "utilitarian", verbose=False)
    # a run: the expectation defaults to the reward it was trained with, and the verdict is printed
    run = SimpleNamespace(config=TrainingConfig(reward="game", episodes=10), log=log)
    assert check_training_moved(run)
    assert "Yes: the player learned the format" in capsys.readouterr().out
    # broken input is reported, never raised
    assert not check_training_moved(log.iloc[:0], "game", verbose=False)
    assert not check_training_moved(log[log["episode"] == 0], "game", verbose=False)
    assert "could not read" in str(check_training_moved(log, {"C|X": "C"}, verbose=False))
    assert "pass expected" in str(check_training_moved(log, verbose=False))
    # agreement with the prediction at the end of training
    assert prediction_agreement(log, "game") > 0.75
    assert prediction_agreement(log, "utilitarian") < 0.25
    assert prediction_agreement(log, "deontological") > prediction_agreement(log, "utilitarian")
    all_illegal = log.assign(my_move="illegal", action_type="illegal")
    assert np.isnan(prediction_agreement(all_illegal, "game"))


# --------------------------------------------------------------------- chapter 7
def test_maxmin_mix_check_accepts_the_solution_and_names_the_mistakes():
    from moralkit.exercises import check_maxmin_mix

    assert check_maxmin_mix(*solutions.maxmin_mix_c_d(), verbose=False)
    assert check_maxmin_mix(0.8, 0.8, state="C|C", verbose=False)
    cases = [
        ((1.0, 0.75), "utilitarian average's choice"),  # the average cooperates
        ((1 / 3, 5 / 6), "you gave P(D)"),
        ((2 / 3, 8 / 9), "*mean*"),
        ((1.0, 0.75), "lowest utility at *your* P(C)"),
        ((None, None), "no answer yet"),
        ((1.5, None), "not a probability"),
    ]
    for (p, v), hint in cases:
        result = check_maxmin_mix(p, v, verbose=False)
        assert not result and hint in _text(result), (p, v, _text(result))


def test_maxmin_mix_check_spots_raw_rewards_and_the_wrong_crossing():
    from moralkit.exercises import _raw_state_utilities, check_maxmin_mix
    from moralkit.pluralistic import solve_maxmin

    raw = solve_maxmin(_raw_state_utilities(get_game("prisoners_dilemma"), ("game", "deontological", "utilitarian"),
                                            "tit_for_tat", 3.0, D, C))
    result = check_maxmin_mix(raw.p_cooperate, None, state="D|C", verbose=False)
    assert not result and "normalise each stakeholder" in _text(result)
    # in C|C the deontological and utilitarian lines cross at p = 1, where the game's line is lower
    result = check_maxmin_mix(0.0, None, state="D|D", verbose=False)
    assert not result


def test_e_step_check_accepts_the_solution_and_names_the_mistakes():
    from moralkit.exercises import check_e_step

    assert check_e_step(solutions.e_step, verbose=False)

    def loglik(user, first, second, first_wins, rewards, n_users, signed=True, logs=True):
        margin = rewards[:, first] - rewards[:, second]
        s = np.where(first_wins, margin, -margin) if signed else margin
        values = -np.logaddexp(0.0, -s) if logs else 1 / (1 + np.exp(-s))
        out = np.zeros((n_users, len(rewards)))
        np.add.at(out, user, values.T)
        return out

    mistakes = {
        "argmin": lambda *a: np.argmin(loglik(*a), axis=1),
        "r(winner) − r(loser)": lambda *a: np.argmax(loglik(*a, signed=False), axis=1),
        "add *log*-probabilities": lambda *a: np.argmax(loglik(*a, logs=False), axis=1),
        "one cluster per *user*": lambda user, *a: np.zeros(len(user), int),
        "forget `return`": lambda *a: None,
        "crashed": lambda *a: 1 / 0,
    }
    for hint, fn in mistakes.items():
        result = check_e_step(fn, verbose=False)
        assert not result and hint in _text(result), (hint, _text(result))


# --------------------------------------------------------------------- the bar: every chapter, every exercise
# For each exercise of the workbook: its check (answer -> CheckResult), the notebook's untouched
# placeholder, wrong answers a student could give, and the reference answer from moralkit.solutions.
from moralkit import exercises as ex  # noqa: E402


def _payoff_only(game, my_move, opp_move, opp_prev_move, xi=3.0):  # the untouched placeholder of 2.1 and 4.1
    return game.payoffs[my_move, opp_move, 0] + 0.0 * (my_move == D) + 0.0 * ((my_move == D) & (opp_prev_move == C))


def _deont_hard_coded_3(game, my_move, opp_move, opp_prev_move, xi=3.0):
    return game.payoffs[my_move, opp_move, 0] - 3 * ((my_move == D) & (opp_prev_move == C))


def _game_deont_with_if(game, my_move, opp_move, opp_prev_move, xi=3.0):
    return game.payoffs[my_move, opp_move, 0] - (xi if my_move == D and opp_prev_move == C else 0.0)


def _not_implemented(*args, **kwargs):
    raise NotImplementedError


def _reciprocity_example(game, my_move, opp_move, opp_prev_move):  # the untouched placeholder of 2.2
    return np.where(my_move == opp_prev_move, 1.0, 0.0)


def _exploit_weights(a, b):
    def reward(game, my_move, opp_move, opp_prev_move):
        return game.payoffs[my_move, opp_move, 0] + a * (my_move == D) + b * ((my_move == D) & (opp_prev_move == C))
    return reward


def _deontological_placeholder(game, my_move, opp_move, opp_prev_move, xi=3.0):  # the untouched placeholder of 5.1
    exploiting = (my_move == D) & (opp_prev_move == C)
    forgiving = (my_move == C) & (opp_prev_move == D)
    return -xi * exploiting + 0.0 * forgiving


def _retaliating(game, my_move, opp_move, opp_prev_move, xi=3.0):
    return -xi * ((my_move == D) & (opp_prev_move == C)) + 1.0 * ((my_move == D) & (opp_prev_move == D))


def _exact_parse_with_words(answer):
    return {"action3": "C", "action4": "D"}.get(answer.strip(), "illegal")


def _e_step_placeholder(user, first, second, first_wins, rewards, n_users):
    return np.zeros(n_users, dtype=int)


_EMPTY_STATES = {"C|C": None, "C|D": None, "D|C": None, "D|D": None}
_EMPTY_GAMES = {g: None for g in solutions.utilitarian_choices_vs_random()}


def _check(fn, *args, **kw):
    return lambda answer: fn(*(answer if isinstance(answer, tuple) else (answer,)), *args, verbose=False, **kw)


EXERCISES = {
    # exercise: (check, untouched placeholder, [wrong answers], solution)
    "1.1": (_check(check_is_social_dilemma), get_game("stag_hunt"),
            [MatrixGame.symmetric("weak", R=3, S=0, T=7, P=1), MatrixGame.symmetric("harmony", R=4, S=2, T=3, P=1)],
            solutions.my_social_dilemma()),
    "1.2": (_check(check_game_kind, "stag hunt"), MatrixGame.symmetric("my_stag_hunt", R=3, S=0, T=4, P=1),
            [get_game("chicken"), MatrixGame.symmetric("s", R=4, S=0, T=5, P=1)], solutions.my_stag_hunt()),
    "2.1": (_check(check_reward, "game_deontological"), _payoff_only,
            [_deont_hard_coded_3, _game_deont_with_if, _not_implemented, None], solutions.game_deontological_reward),
    "2.2": (_check(ex.check_own_reward), _reciprocity_example,
            [lambda g, m, o, p: 1 / (g.payoffs[m, o, 0] - g.payoffs[m, o, 1]), get_reward("utilitarian"), ...],
            solutions.inequity_averse_reward),
    "2.3": (_check(check_cooperation_threshold), None, [0.5, 0.3, 0.34, 2 / 3, "a third"],
            solutions.cooperation_threshold("prisoners_dilemma")),
    "3.1": (_check(ex.check_parse_answer), lambda answer: -1,
            [lambda a: "C" if "action3" in a else "D" if "action4" in a else "illegal",
             lambda a: {"action3": 0, "action4": 1}.get(a, -1), _not_implemented], solutions.parse_exact_label),
    "3.2": (_check(ex.check_regrets_by_hand), (None, None), [(4 / 3, (6 - 14 / 3) / 12), (3.2, 5.6), (-3.2, 0.467)],
            solutions.regrets_by_hand()),
    "4.1": (_check(ex.check_exploitation_reward), _payoff_only,
            [_exploit_weights(1.0, 4.0), _exploit_weights(-4.0, 0.0), _exploit_weights(-1.0, 0.0), _not_implemented],
            solutions.exploitation_reward),
    "4.2": (_check(ex.check_predicted_responses, solutions.exploitation_reward), dict(_EMPTY_STATES),
            [{"C|C": "C", "C|D": "D", "D|C": "C", "D|D": "D"}, {"C|C": "D", "C|D": "D", "D|C": "D", "D|D": "D"},
             {"C|C": "C", "C|D": "either"}, None],
            solutions.exploitation_reward_prediction()),
    "5.1": (_check(ex.check_forgiving_reward), _deontological_placeholder,
            [_retaliating, lambda g, m, o, p, xi=3.0: 1.0 * (m == C), _not_implemented],
            solutions.forgiving_deontological_reward),
    "5.2": (_check(ex.check_kl_leash), (None, None), [(0.782, -0.137), (-0.34, 0.0593), (-3.91, 0.683), (0.0, 0.0)],
            solutions.kl_leash_penalties()),
    "6.1": (_check(ex.check_choices_vs_random), dict(_EMPTY_GAMES),
            [dict.fromkeys(_EMPTY_GAMES, "C"), {**solutions.utilitarian_choices_vs_random(), "bach_or_stravinsky": "C"},
             "C"],
            solutions.utilitarian_choices_vs_random()),
    "6.2": (_check(ex.check_regrets_from_shares), (None, None), [(0.8, 0.2083), (1.2, 0.2583), (1.4, 3.1)],
            solutions.regrets_from_action_types()),
    "7.1": (_check(ex.check_maxmin_mix), (None, None), [(1.0, 0.75), (1 / 3, 5 / 6), (2 / 3, 8 / 9)],
            solutions.maxmin_mix_c_d()),
    "7.2": (_check(ex.check_e_step), _e_step_placeholder,
            [lambda *a: np.argmin(np.zeros((a[-1], 2)), axis=1) + 1, lambda *a: None, _not_implemented],
            solutions.e_step),
}
CHAPTERS = sorted({int(k.split(".")[0]) for k in EXERCISES})


def test_every_chapter_has_at_least_two_checked_exercises():
    assert CHAPTERS == list(range(1, 8))
    for chapter in CHAPTERS:
        assert sum(k.startswith(f"{chapter}.") for k in EXERCISES) >= 2, chapter


@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_untouched_placeholder_fails_and_says_not_done(exercise):
    check, placeholder, _, _ = EXERCISES[exercise]
    result = check(placeholder)
    assert isinstance(result, CheckResult) and not result, _text(result)
    assert ex.NOT_DONE in _text(result), _text(result)


@pytest.mark.parametrize("exercise, wrong", [(k, w) for k, (_, _, ws, _) in EXERCISES.items() for w in ws],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_wrong_answer_fails_with_a_hint_and_never_raises(exercise, wrong):
    check = EXERCISES[exercise][0]
    result = check(wrong)
    assert isinstance(result, CheckResult) and not result, _text(result)
    assert "✗" in _text(result) and len(_text(result).splitlines()) >= 3  # a line that names what is wrong


@pytest.mark.parametrize("exercise", EXERCISES)
def test_the_solution_from_moralkit_solutions_passes(exercise, capsys):
    check, _, _, answer = EXERCISES[exercise]
    result = check(answer)
    assert result, _text(result)
    assert "✗" not in _text(result)


@pytest.mark.parametrize(
    "exercise, wrong, hint",
    [
        ("2.1", _deont_hard_coded_3, "ignores its `xi` argument"),
        ("2.1", _payoff_only, "not done yet"),
        ("2.2", get_reward("utilitarian"), "paper's utilitarian reward"),
        ("2.3", 0.5, "too high"),
        ("3.1", lambda answer: -1, "like the placeholder"),
        ("4.1", _exploit_weights(-4.0, 0.0), "order is inverted"),
        ("4.1", _exploit_weights(1.0, 4.0), "*bonus*"),
        ("4.2", {"C|C": "C", "C|D": "D", "D|C": "C", "D|D": "D"}, "C earns 3, D earns 3"),
        ("5.1", _retaliating, "you reward retaliation"),
        ("5.1", _deontological_placeholder, "give a bonus for cooperating after their D"),
        ("5.2", (0.782, -0.137), "sign is flipped"),
        ("5.2", (-0.34, 0.0593), "natural logarithm"),
        ("6.1", dict.fromkeys(_EMPTY_GAMES, "C"), "Read the payoffs, not the names"),
        ("6.2", (0.8, 0.2083), "left the illegal answers out"),
        ("7.2", _e_step_placeholder, "as the placeholder returns"),
    ],
)
def test_hints_name_the_mistake(exercise, wrong, hint):
    result = EXERCISES[exercise][0](wrong)
    assert not result and hint in _text(result), _text(result)


def test_chapter_2_accepts_a_rounded_threshold_and_a_hand_written_reward_using_xi():
    for rounded in (0.33, 0.333, "0.333", 1 / 3):
        assert check_cooperation_threshold(rounded, verbose=False), rounded
    for wrong in (0.32, 0.34, 0.3):
        assert not check_cooperation_threshold(wrong, verbose=False), wrong
    assert check_reward(solutions.game_deontological_reward, "game_deontological", xi=4.0, verbose=False)


def test_solution_drop_down_is_closed_html_and_names_only_real_solutions():
    html = solutions.solution("e_step")._repr_html_()
    assert html.startswith("<details>") and "<details open" not in html and "def e_step" in html
    with pytest.raises(KeyError, match="Solutions:"):
        solutions.solution("show")


# --------------------------------------------------------------------- the notebooks: labels and one source of solutions
import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HEADING = re.compile(r"^## Exercise (\d+)\.(\d+) — .+$", re.M)
LABEL = re.compile(r"^\*Difficulty ([●○]{3}) · (\d+) min\*$", re.M)
SHOW = re.compile(r"""\bsolution\(["'](\w+)["']\)""")


def _cells(path):
    return [(c["cell_type"], "".join(c["source"])) for c in json.loads(path.read_text())["cells"]]


def _exercises(path) -> dict[str, dict]:
    """Each exercise of a notebook: its label and the solution names shown before the next exercise or heading."""
    found, current = {}, None
    for kind, source in _cells(path):
        if kind == "markdown":
            heading = HEADING.search(source)
            if heading:
                current = f"{heading.group(1)}.{heading.group(2)}"
                after = source[heading.end():]
                found[current] = {"label": LABEL.search(after.split("\n## ")[0]), "solutions": []}
            elif re.search(r"^#{1,2} ", source, re.M):
                current = None
        elif current:
            found[current]["solutions"] += SHOW.findall(source)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_has_two_labelled_exercises_with_checks_and_one_click_solutions(path):
    chapter = int(path.stem[:2])
    found = _exercises(path)
    assert len(found) >= 2, f"{path.name}: {sorted(found)}"
    for name, exercise in found.items():
        assert name.startswith(f"{chapter}."), f"{path.name}: exercise {name} is numbered for another chapter"
        assert exercise["label"], f"{path.name}, exercise {name}: add '*Difficulty ●●○ · 15 min*' under its heading"
        assert int(exercise["label"].group(2)) > 0
        assert exercise["solutions"], f"{path.name}, exercise {name}: show its solution with solution(\"...\")"
        for solution_name in exercise["solutions"]:
            solutions.solution(solution_name)  # a KeyError names a solution that does not exist
    # the exercises of the notebook are the exercises this test file checks, and the other way round
    assert set(found) == {k for k in EXERCISES if k.startswith(f"{chapter}.")}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_keeps_a_hand_written_solution(path):
    for kind, source in _cells(path):
        assert "<details" not in source, f"{path.name}: a hand-written drop-down; put the answer in moralkit.solutions"
        if kind == "markdown":
            assert not re.search(r"\b(Solution|Answers?)\b\s*\(click", source), path.name
