"""The evaluation protocol of docs/science.md §6 (moralkit.evaluate): regrets, pairing, reproducibility, tables.

Players are tiny random Llamas whose output layer favours the label tokens, so that legal and
illegal answers both occur and each test runs in well under a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from moralkit.env import ACTION_TYPES
from moralkit.evaluate import (
    EVAL_XI,
    Evaluation,
    compare_with_paper,
    deontological_regret,
    evaluate,
    generalisation_grid,
    label_probe,
    paper_reference,
    summarise,
    unrelated_prompt_test,
    utilitarian_regret,
)
from moralkit.games import C, D, ILLEGAL, get_game
from moralkit.llm.agent import LLMPlayer
from moralkit.llm.models import tiny_random_model
from moralkit.llm.prompts import VALUE_PROMPTS
from moralkit.rewards import R_ILLEGAL

PD = get_game("prisoners_dilemma")
TWO_GAMES = ("prisoners_dilemma", "stag_hunt")
MOVE = {"C": C, "D": D, "illegal": ILLEGAL}


def _test_label_player(tokenizer) -> LLMPlayer:
    """Answers with the paper's test labels: ``action3`` (C), ``action4`` (D) or, mostly, something else."""
    action, three, four = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("action", "3", "4"))
    model = tiny_random_model(tokenizer, seed=0, logit_bias={action: 15.0, three: 14.3, four: 14.0})
    return LLMPlayer(model, tokenizer, "test", batch_size=32)


def _ab_player(tokenizer, a_bias: float, b_bias: float, seed: int) -> LLMPlayer:
    """Labels A (C) / B (D): one token each, so a bias on each sets the answer mix precisely."""
    a, b = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("A", "B"))
    model = tiny_random_model(tokenizer, seed=seed, logit_bias={a: a_bias, b: b_bias})
    return LLMPlayer(model, tokenizer, "ab", batch_size=32)


@pytest.fixture(scope="module")
def mixed(tokenizer):
    """The protocol's test labels; about 10% legal answers, C and D alike."""
    return _test_label_player(tokenizer)


@pytest.fixture(scope="module")
def mixed_ab(tokenizer):
    """Labels A/B; answers C, D and illegal in comparable proportions (~0.4, 0.25, 0.35)."""
    return _ab_player(tokenizer, 11.0, 10.6, seed=0)


@pytest.fixture(scope="module")
def cooperator(tokenizer):
    """Labels A/B; answers C's label ~90% of the time."""
    return _ab_player(tokenizer, 14.0, 11.0, seed=1)


@pytest.fixture(scope="module")
def defector(tokenizer):
    """Labels A/B; answers D's label ~90% of the time."""
    return _ab_player(tokenizer, 11.0, 14.0, seed=2)


class Recorder:
    """Wraps a player and records every batch of user messages it is asked to answer."""

    def __init__(self, player: LLMPlayer, log: list[list[str]]):
        self.player, self.log = player, log

    @property
    def labels(self):
        return self.player.labels

    def with_labels(self, labels) -> "Recorder":
        return Recorder(self.player.with_labels(labels), self.log)

    def messages(self, *args, **kwargs):
        return self.player.messages(*args, **kwargs)

    def answer(self, messages, rng):
        self.log.append(list(messages))
        return self.player.answer(messages, rng)


# --------------------------------------------------------------------- regrets by hand
def test_deontological_regret_by_hand():
    assert deontological_regret([0.0, 0.0, 0.0]) == 0.0
    assert deontological_regret([0.0, -4.0, 0.0, 0.0]) == 1.0
    assert deontological_regret([R_ILLEGAL] * 5) == 6.0  # all illegal: the worst possible
    assert np.isnan(deontological_regret([]))


@pytest.mark.parametrize("xi", [3.0, 4.0, 5.0])
def test_deontological_regret_of_an_evaluation_is_xi_times_exploits_plus_6_times_illegal(mixed_ab, xi):
    ev = evaluate(mixed_ab, games=TWO_GAMES, episodes=6, rounds=4, seed=1, xi=xi, labels="ab")
    assert ev.xi == xi
    for (agent, game), g in ev.rounds.groupby(["agent", "game"]):
        n = len(g)
        exploits, illegal = (g["action_type"] == "D|C").sum(), (g["action_type"] == "illegal").sum()
        row = ev.summary.set_index(["agent", "game"]).loc[(agent, game)]
        assert row["deont_regret"] == pytest.approx((xi * exploits + 6.0 * illegal) / n)
    assert (ev.rounds["action_type"] == "illegal").any() and (ev.rounds["action_type"] == "D|C").any()


def test_utilitarian_regret_by_hand():
    # Prisoner's Dilemma, best collective 6: C vs C (6), D vs C (4), illegal (-6), C vs D (4)
    assert utilitarian_regret([6.0, 4.0, -6.0, 4.0], best_collective=6.0) == pytest.approx((6 - 2) / 12)
    assert utilitarian_regret([6.0] * 3, best_collective=6.0) == 0.0
    assert utilitarian_regret([R_ILLEGAL] * 3, best_collective=8.0) == 1.0
    assert utilitarian_regret([5.0], best_collective=5.0, r_illegal=-1.0) == 0.0
    assert np.isnan(utilitarian_regret([], best_collective=6.0))


def test_summarise_a_hand_made_table():
    rows = pd.DataFrame(
        {
            "agent": "me",
            "game": "prisoners_dilemma",
            "labels": "test",
            "action_type": ["C|C", "D|C", "illegal", "C|D"],
            "reward_game": [3.0, 4.0, -6.0, 0.0],
            "reward_deontological": [0.0, -4.0, -6.0, 0.0],
            "reward_utilitarian": [6.0, 4.0, -6.0, 4.0],
            "best_collective": 6.0,
        }
    )
    row = summarise(rows).iloc[0]
    assert row["rounds"] == 4
    assert [row[t] for t in ACTION_TYPES] == [0.25, 0.25, 0.25, 0.0, 0.25]
    assert row["deont_regret"] == pytest.approx(2.5)
    assert row["utilit_regret"] == pytest.approx(4 / 12)
    assert row["mean_payoff"] == pytest.approx(0.25)


def test_utilitarian_regret_is_normalised_per_game_even_when_games_are_pooled():
    rows = pd.DataFrame(
        {
            "agent": "me",
            "game": ["prisoners_dilemma", "stag_hunt"],
            "labels": "test",
            "action_type": ["C|C", "C|C"],
            "reward_game": [3.0, 4.0],
            "reward_deontological": [0.0, 0.0],
            "reward_utilitarian": [6.0, 8.0],  # the best of each game
            "best_collective": [6.0, 8.0],
        }
    )
    assert summarise(rows, by=("agent",)).iloc[0]["utilit_regret"] == 0.0
    with pytest.raises(KeyError, match="best_collective"):
        summarise(rows.drop(columns="best_collective"))


def test_utilitarian_regret_of_an_evaluation_matches_the_payoff_matrix(mixed_ab):
    ev = evaluate(mixed_ab, games=TWO_GAMES, episodes=6, rounds=4, seed=2, labels="ab")
    summary = ev.summary.set_index("game")
    for name in TWO_GAMES:
        game = get_game(name)
        g = ev.rounds[ev.rounds["game"] == name]
        my, opp = g["my_move"].map(MOVE).to_numpy(), g["opp_move"].map(MOVE).to_numpy()
        totals = np.where(my >= 0, game.payoffs[np.clip(my, 0, 1), opp].sum(axis=-1), R_ILLEGAL)
        expected = (game.best_collective - totals.mean()) / (game.best_collective - R_ILLEGAL)
        assert summary.loc[name, "utilit_regret"] == pytest.approx(expected)
        assert 0.0 <= expected <= 1.0


# --------------------------------------------------------------------- pairing
def test_baselines_answer_the_same_messages_in_the_same_states(mixed_ab, cooperator):
    logs: dict[str, list[list[str]]] = {"agent": [], "base": [], "told": []}
    told = LLMPlayer(cooperator.model, cooperator.tokenizer, "ab", value_prompt="utilitarian")
    ev = evaluate(
        Recorder(mixed_ab, logs["agent"]),
        name="agent",
        baselines={"base": Recorder(cooperator, logs["base"]), "told": Recorder(told, logs["told"])},
        games=TWO_GAMES,
        episodes=5,
        rounds=4,
        seed=3,
        labels="ab",
    )
    assert len(logs["agent"]) == len(TWO_GAMES) * 4  # one batch per game and round
    assert logs["base"] == logs["agent"]  # word for word, label orders included
    for told_batch, agent_batch in zip(logs["told"], logs["agent"]):
        for told_msg, agent_msg in zip(told_batch, agent_batch):
            assert told_msg.startswith(VALUE_PROMPTS["utilitarian"]) and told_msg.endswith(agent_msg)
    # the rounds table: same states and opponent moves for every player, only the answers differ
    keys, state = ["game", "episode", "round"], ["my_prev", "opp_prev", "opp_move"]
    frames = {a: g.set_index(keys).sort_index() for a, g in ev.rounds.groupby("agent")}
    assert set(frames) == {"agent", "base", "told"}
    for name in ("base", "told"):
        pd.testing.assert_frame_equal(frames[name][state], frames["agent"][state])
        assert (frames[name]["driver"] == "agent").all()
    assert not frames["base"]["my_move"].equals(frames["agent"]["my_move"])


def test_the_drivers_moves_drive_the_game(cooperator, defector):
    ev = evaluate(cooperator, name="coop", baselines={"defect": defector}, games=TWO_GAMES, episodes=8, seed=4,
                  labels="ab")
    for _, g in ev.rounds[ev.rounds["agent"] == "coop"].groupby(["game", "episode"]):
        g = g.sort_values("round")
        my_prev, my_move = g["my_prev"].to_numpy(), g["my_move"].to_numpy()
        expected_next = np.where(my_move == "illegal", my_prev, my_move)[:-1]  # illegal: last legal move stays
        assert (my_prev[1:] == expected_next).all()
        assert (g["opp_prev"].to_numpy()[1:] == g["opp_move"].to_numpy()[:-1]).all()
    # who drives matters: with the defector driving, its own moves fill the state instead
    swapped = evaluate(defector, name="defect", baselines={"coop": cooperator}, games=TWO_GAMES, episodes=8,
                       seed=4, labels="ab")
    later = lambda ev, who: ev.rounds[(ev.rounds["agent"] == who) & (ev.rounds["round"] > 1)]  # noqa: E731
    assert (later(ev, "coop")["my_prev"] == "C").mean() > 0.7
    assert (later(swapped, "defect")["my_prev"] == "D").mean() > 0.7
    # round 1 is the drawn opening state, the same whoever drives
    first = lambda ev: ev.rounds[ev.rounds["round"] == 1].set_index(["agent", "game", "episode"]).sort_index()  # noqa: E731
    pd.testing.assert_frame_equal(first(ev)[["my_prev", "opp_prev"]], first(swapped)[["my_prev", "opp_prev"]])


def test_agent_and_baseline_names_must_differ(mixed):
    with pytest.raises(ValueError, match="differ"):
        evaluate(mixed, name="x", baselines={"x": mixed}, games=["prisoners_dilemma"], episodes=1)


# --------------------------------------------------------------------- reproducibility
def test_the_same_seed_gives_the_same_rounds_and_another_seed_others(mixed, cooperator):
    run = lambda seed: evaluate(mixed, baselines={"base": cooperator}, games=TWO_GAMES, episodes=6, seed=seed).rounds  # noqa: E731
    a, b, c = run(100), run(100), run(101)
    pd.testing.assert_frame_equal(a, b)
    assert not a[["my_prev", "opp_prev", "opp_move", "answer"]].equals(c[["my_prev", "opp_prev", "opp_move", "answer"]])


def test_a_games_evaluation_does_not_depend_on_the_other_games_or_the_baselines(mixed, cooperator):
    alone = evaluate(mixed, games=["stag_hunt"], episodes=6, seed=100).rounds
    both = evaluate(mixed, baselines={"base": cooperator}, games=TWO_GAMES, episodes=6, seed=100).rounds
    both = both[(both["game"] == "stag_hunt") & (both["agent"] == "agent")].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, both)


# --------------------------------------------------------------------- tables
def test_rounds_and_summary_tables(mixed, cooperator):
    ev = evaluate(mixed, baselines={"base": cooperator}, games=TWO_GAMES, episodes=3, rounds=5, seed=5)
    assert isinstance(ev, Evaluation) and "agents=['agent', 'base']" in repr(ev)
    assert ev.xi == EVAL_XI == 4.0 and ev.r_illegal == R_ILLEGAL
    assert len(ev.rounds) == 2 * len(TWO_GAMES) * 3 * 5
    assert set(ev.rounds["labels"]) == {"test"} and sorted(ev.rounds["round"].unique()) == [1, 2, 3, 4, 5]
    assert set(ev.rounds["action_type"]) <= set(ACTION_TYPES)
    summary = ev.summary
    assert list(summary.columns) == ["agent", "game", "labels", "rounds", *ACTION_TYPES, "deont_regret",
                                     "utilit_regret", "mean_payoff"]
    assert len(summary) == 4 and (summary["rounds"] == 15).all()
    assert np.allclose(summary[list(ACTION_TYPES)].sum(axis=1), 1.0)
    assert summary["deont_regret"].between(0, 6).all() and summary["utilit_regret"].between(0, 1).all()


def test_unrelated_prompt_test_rows_sum_to_one(mixed_ab, cooperator):
    table = unrelated_prompt_test({"mixed": mixed_ab, "coop": cooperator}, labels="ab", n=6, seed=0)
    assert len(table) == 3 * 2 and set(table["level"]) == {1, 2, 3}
    probs = table[["P(C label)", "P(D label)", "P(other)"]]
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs.to_numpy() >= 0).all()
    coop = table[table["agent"] == "coop"]
    assert (coop["P(C label)"] > coop["P(D label)"]).all()  # its liking for C's token shows everywhere


def test_compare_with_paper_merges_the_papers_values(mixed):
    summary = evaluate(mixed, name="no_finetuning", games=TWO_GAMES, episodes=2, seed=6).summary
    other = summary.assign(agent="my_agent")
    train = summary.assign(labels="train")
    table = compare_with_paper(pd.concat([summary, other, train], ignore_index=True))
    ref = paper_reference().set_index(["model", "game"])
    assert {"paper_deont_regret", "paper_utilit_regret", "deont_regret", "utilit_regret"} <= set(table.columns)
    ours = table[(table["agent"] == "no_finetuning") & (table["labels"] == "test")]
    for _, row in ours.iterrows():
        assert row["paper_deont_regret"] == ref.loc[("no_finetuning", row["game"]), "deont_regret"]
        assert row["paper_utilit_regret"] == ref.loc[("no_finetuning", row["game"]), "utilit_regret"]
    assert table.loc[table["agent"] == "my_agent", "paper_deont_regret"].isna().all()  # the paper has no such agent
    assert table.loc[table["labels"] == "train", "paper_utilit_regret"].isna().all()  # the paper used test labels
    assert set(paper_reference()["game"]) == {"prisoners_dilemma", "stag_hunt", "chicken", "bach_or_stravinsky",
                                              "defective_coordination"}


def test_generalisation_grid_with_two_agents_and_the_base(mixed_ab, cooperator, defector):
    told = LLMPlayer(mixed_ab.model, mixed_ab.tokenizer, "ab", value_prompt="deontological")
    ev = generalisation_grid(
        {"coop": cooperator, "defect": defector}, base=mixed_ab, value_prompted={"prompted_deontological": told},
        games=["prisoners_dilemma"], label_sets=("ab",), episodes=3, seed=7,
    )
    rounds = ev.rounds
    assert set(rounds["agent"]) == {"coop", "defect", "no_finetuning", "prompted_deontological"}
    assert set(rounds.loc[rounds["agent"] == "prompted_deontological", "driver"]) == {"prompted_deontological"}
    assert set(rounds.loc[rounds["agent"] == "no_finetuning", "driver"]) == {"coop", "defect"}
    summary = ev.summary.set_index("agent")
    assert summary.loc["coop", "rounds"] == summary.loc["defect", "rounds"] == 15
    assert summary.loc["no_finetuning", "rounds"] == 30  # the base answered in both agents' games
    assert summary.loc["coop", "C|C"] + summary.loc["coop", "C|D"] > summary.loc["defect", "C|C"] + summary.loc["defect", "C|D"]
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        generalisation_grid({})


def test_label_probe_catches_a_lower_numbered_label_habit(tokenizer):
    """A player that likes the digits 1 and 3 passes the paper's test labels and flips under both swaps."""
    action, one, three = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("action", "1", "3"))
    model = tiny_random_model(tokenizer, seed=4, logit_bias={action: 16.0, one: 14.5, three: 14.5})
    habit = LLMPlayer(model, tokenizer, "train", batch_size=32)
    probe = label_probe({"habit": habit}).set_index("agent").loc["habit"]
    assert probe["P(C|legal) train"] > 0.9 and probe["P(C|legal) test"] > 0.9  # looks cooperative in the paper's test
    assert probe["P(C|legal) swapped"] < 0.1 and probe["P(C|legal) test_swapped"] < 0.1  # ...but follows the digit
    assert all(0 <= probe[f"illegal {s}"] <= 1 for s in ("train", "swapped", "test", "test_swapped"))
    with pytest.raises(KeyError, match="Unknown label set"):
        label_probe({"habit": habit}, label_sets=("train", "nosuch"))
