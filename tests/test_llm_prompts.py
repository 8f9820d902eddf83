"""Prompts, label sets, chat templates and answer parsing (moralkit.llm.prompts)."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest

from moralkit.games import C, D, EVALUATION_GAMES, ILLEGAL, MatrixGame, get_game
from moralkit.llm.prompts import (
    AB,
    D_FIRST,
    FORBIDDEN_WORDS,
    LABEL_SETS,
    PERMUTED_TABLE,
    SWAPPED_LABELS,
    TEST_LABELS,
    TRAIN_LABELS,
    VALUE_PROMPTS,
    XY,
    ZERO_ONE,
    LabelSet,
    chat_text,
    get_label_set,
    parse_answer,
    parse_answers,
    random_labels,
    render_prompt,
    render_prompts,
    unrelated_prompt,
)

PD = get_game("prisoners_dilemma")
STATES = [(C, C), (C, D), (D, C), (D, D)]


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.count("|") == 3]


# --------------------------------------------------------------------------- label sets
def test_named_label_sets():
    assert (TRAIN_LABELS.c, TRAIN_LABELS.d) == ("action1", "action2")
    assert (TEST_LABELS.c, TEST_LABELS.d) == ("action3", "action4")
    assert (SWAPPED_LABELS.c, SWAPPED_LABELS.d) == ("action2", "action1")
    assert (get_label_set("test_swapped").c, get_label_set("test_swapped").d) == (TEST_LABELS.d, TEST_LABELS.c)
    assert D_FIRST.d_first_in_table and D_FIRST.labels == TRAIN_LABELS.labels
    assert PERMUTED_TABLE.permute_table
    assert (AB.c, XY.d, ZERO_ONE.c, ZERO_ONE.d) == ("A", "Y", "0", "1")
    for name, labels in LABEL_SETS.items():
        assert get_label_set(name) is labels
        assert labels.label(C) == labels.c and labels.label(D) == labels.d
    assert get_label_set(TEST_LABELS) is TEST_LABELS
    assert get_label_set(" Zero-One ") is ZERO_ONE


def test_unknown_label_set_lists_valid_names():
    with pytest.raises(KeyError) as err:
        get_label_set("nope")
    for name in LABEL_SETS:
        assert name in str(err.value)


@pytest.mark.parametrize("c, d", [("a", "a"), ("", "b"), (" a", "b"), ("a", "b\n")])
def test_invalid_label_sets(c, d):
    with pytest.raises(ValueError):
        LabelSet(c, d)


def test_random_labels_reproducible_and_distinct():
    a = random_labels(np.random.default_rng(3))
    b = random_labels(np.random.default_rng(3))
    assert a == b and a.c != a.d and a.c.isalpha() and len(a.c) == 5
    assert random_labels(np.random.default_rng(4)) != a


# --------------------------------------------------------------------------- game prompts
@pytest.mark.parametrize("game_name", EVALUATION_GAMES)
@pytest.mark.parametrize("state", STATES)
def test_prompt_holds_labels_payoffs_and_last_round(game_name, state):
    game = get_game(game_name)
    my_prev, opp_prev = state
    text = render_prompt(game, my_prev, opp_prev, TEST_LABELS, np.random.default_rng(0))
    assert TEST_LABELS.c in text and TEST_LABELS.d in text
    # every cell, with the points of both players, as one table row
    rows = table_rows(text)
    for a in (C, D):
        for b in (C, D):
            r_me, r_other = game.payoff(a, b)
            row = f"{TEST_LABELS.label(a)} | {TEST_LABELS.label(b)} | {fmt(r_me)} | {fmt(r_other)}"
            assert row in rows
    assert len(rows) == 5  # a header and four cells
    # last round: both moves and both players' points
    r_me, r_other = game.payoff(my_prev, opp_prev)
    last = next(line for line in text.splitlines() if line.startswith("Last round"))
    assert f"you picked {TEST_LABELS.label(my_prev)}" in last
    assert f"other agent picked {TEST_LABELS.label(opp_prev)}" in last
    assert re.search(rf"you got {fmt(r_me)} points?", last)
    assert re.search(rf"other agent got {fmt(r_other)} points?", last)
    assert "exactly one" in text and "no explanation" in text


@pytest.mark.parametrize("game_name", EVALUATION_GAMES)
def test_prompt_never_names_the_game_or_its_story(game_name):
    game = get_game(game_name)
    rng = np.random.default_rng(1)
    for labels in LABEL_SETS.values():
        for value in (None, "utilitarian", "deontological"):
            text = render_prompt(game, D, C, labels, rng, value_prompt=value).lower()
            for word in FORBIDDEN_WORDS + ("cooperation", "defection"):
                assert word not in text
            assert game.name.replace("_", " ") not in text and game.title.lower() not in text
            for word in ("prisoner", "dilemma", "stag", "chicken", "stravinsky", "coordination"):
                assert word not in text


def test_table_lists_c_first_d_first_or_permuted():
    def first_column(labels, rng=None):
        return [row.split(" | ")[:2] for row in table_rows(render_prompt(PD, C, C, labels, rng))[1:]]

    assert first_column(TRAIN_LABELS) == [["action1", "action1"], ["action1", "action2"], ["action2", "action1"], ["action2", "action2"]]
    assert first_column(D_FIRST) == [["action2", "action2"], ["action2", "action1"], ["action1", "action2"], ["action1", "action1"]]
    orders = {tuple(map(tuple, first_column(PERMUTED_TABLE, np.random.default_rng(s)))) for s in range(20)}
    assert len(orders) > 3  # rows drawn in random orders
    assert all(sorted(o) == sorted(map(tuple, first_column(TRAIN_LABELS))) for o in orders)
    assert first_column(PERMUTED_TABLE) != first_column(TRAIN_LABELS)  # fixed scramble without rng


def test_swapped_labels_change_meaning_not_layout():
    text = render_prompt(PD, C, D, SWAPPED_LABELS)
    assert "action2 | action2 | 3 | 3" in text  # C is now called action2
    assert "you picked action2 and the other agent picked action1" in text


def test_column_players_view_via_swap_players():
    text = render_prompt(PD.swap_players(), D, C, TRAIN_LABELS)
    # the column player defected against a cooperator: it got 4, the row player 0
    assert "you got 4 points and the other agent got 0 points" in text
    assert "action1 | action2 | 0 | 4" in text


def test_asymmetric_game_points_are_not_mixed_up():
    game = MatrixGame.from_cells("asym", (1, 2), (3, 4), (5, 6), (7, 8))
    text = render_prompt(game, D, C, AB)
    for row in ("A | A | 1 | 2", "A | B | 3 | 4", "B | A | 5 | 6", "B | B | 7 | 8"):
        assert row in text
    assert "you got 5 points and the other agent got 6 points" in text


def _orders(text: str, labels: LabelSet = TRAIN_LABELS) -> tuple[bool, bool]:
    """(instruction lists D first, answer sentence lists D first)."""
    last = [l for l in text.splitlines() if l.startswith("Now pick")][-1]
    instruction, answer = last.split(". Answer")
    return (instruction.index(labels.d) < instruction.index(labels.c), answer.index(labels.d) < answer.index(labels.c))


def test_label_orders_are_two_independent_shuffles():
    seen = [_orders(render_prompt(PD, C, C, TRAIN_LABELS, np.random.default_rng(s))) for s in range(200)]
    counts = {combo: seen.count(combo) for combo in set(seen)}
    assert len(counts) == 4 and min(counts.values()) > 25  # all four combinations, roughly evenly
    assert _orders(render_prompt(PD, C, C, TRAIN_LABELS)) == (False, False)  # no rng: C first
    assert _orders(render_prompt(PD, C, C, TRAIN_LABELS, flips=(True, False))) == (True, False)


def test_shuffles_reproducible_with_the_same_seed():
    my, opp = np.array([0, 1, 0, 1, 1, 0, 0, 1]), np.array([0, 0, 1, 1, 0, 1, 0, 1])
    a = render_prompts(PD, my, opp, TRAIN_LABELS, np.random.default_rng(7))
    b = render_prompts(PD, my, opp, TRAIN_LABELS, np.random.default_rng(7))
    c = render_prompts(PD, my, opp, TRAIN_LABELS, np.random.default_rng(8))
    assert a == b and a != c
    assert len(set(map(_orders, a))) > 1  # orders vary within a batch too


def test_render_prompts_matches_render_prompt_and_validates():
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    batch = render_prompts(PD, [0, 1], [1, 1], XY, rng1)
    assert batch == [render_prompt(PD, 0, 1, XY, rng2), render_prompt(PD, 1, 1, XY, rng2)]
    with pytest.raises(ValueError):
        render_prompts(PD, [0, 1], [1], XY)
    with pytest.raises(ValueError):
        render_prompt(PD, ILLEGAL, C, XY)


def test_value_prompts():
    plain = render_prompt(PD, C, C)
    util = render_prompt(PD, C, C, value_prompt="utilitarian")
    deon = render_prompt(PD, C, C, value_prompt="deontological")
    free = render_prompt(PD, C, C, value_prompt="You love the number seven.")
    assert util.startswith(VALUE_PROMPTS["utilitarian"]) and util.endswith(plain)
    assert deon.startswith(VALUE_PROMPTS["deontological"]) and deon.endswith(plain)
    assert free.startswith("You love the number seven.") and free.endswith(plain)


# --------------------------------------------------------------------------- unrelated prompts
def test_unrelated_prompt_levels():
    one = unrelated_prompt(1, TEST_LABELS, np.random.default_rng(0))
    two = unrelated_prompt(2, TEST_LABELS, np.random.default_rng(0))
    three = unrelated_prompt(3, TEST_LABELS, np.random.default_rng(0), opp_prev=D)
    for text in (one, two, three):
        assert "action3" in text and "action4" in text and "exactly one" in text
        assert "|" not in text and "points" not in text
    assert "game" not in one and "game" in two and "game" in three
    assert "Last time" not in two and "Last time, the other agent picked action4." in three
    assert three.endswith(unrelated_prompt(1, TEST_LABELS, np.random.default_rng(0)))
    with pytest.raises(ValueError):
        unrelated_prompt(4, TEST_LABELS)


# --------------------------------------------------------------------------- chat template


def test_chat_text_with_and_without_system(tokenizer):
    user = render_prompt(PD, C, D)
    text = chat_text(tokenizer, user)
    assert user in text and text.rstrip().endswith("assistant")  # ready for the answer
    with_system = chat_text(tokenizer, user, system="You are a careful player.")
    assert "You are a careful player." in with_system and user in with_system
    assert with_system.index("careful") < with_system.index(user)


GEMMA_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def test_chat_text_folds_system_into_user_turn_when_rejected(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = GEMMA_LIKE
    with pytest.raises(Exception):
        tok.apply_chat_template([{"role": "system", "content": "x"}], tokenize=False)
    text = chat_text(tok, "Pick one.", system="Be kind.")
    assert text.endswith("<start_of_turn>user\nBe kind.\n\nPick one.<end_of_turn>\n<start_of_turn>model\n")
    assert chat_text(tok, "Pick one.").endswith("<start_of_turn>user\nPick one.<end_of_turn>\n<start_of_turn>model\n")


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, move",
    [
        ("action1", C),
        ("action2", D),
        ("  action1\n", C),
        ("\taction2 ", D),
        ("action1.", ILLEGAL),
        ("Action1", ILLEGAL),
        ("ACTION2", ILLEGAL),
        ("", ILLEGAL),
        ("   ", ILLEGAL),
        ("action1 action2", ILLEGAL),
        ("action1action2", ILLEGAL),
        ("action", ILLEGAL),
        ("action3", ILLEGAL),
        ("I choose action1", ILLEGAL),
        ("'action1'", ILLEGAL),
    ],
)
def test_parse_answer(text, move):
    assert parse_answer(text, TRAIN_LABELS) == move


def test_parse_answer_respects_the_label_set():
    assert parse_answer("action2", SWAPPED_LABELS) == C
    assert parse_answer("action1", TEST_LABELS) == ILLEGAL
    assert parse_answer("0", ZERO_ONE) == C and parse_answer(" 1", ZERO_ONE) == D
    assert parse_answer(None, AB) == ILLEGAL  # type: ignore[arg-type]


def test_parse_answers_vectorised():
    moves = parse_answers(["action1", " action2", "nope", "action1."], TRAIN_LABELS)
    assert moves.dtype.kind == "i" and moves.tolist() == [C, D, ILLEGAL, ILLEGAL]
    assert parse_answers([], TRAIN_LABELS).shape == (0,)
