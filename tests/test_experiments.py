"""Chapters 5-6: the unlearning metric, the second learner's view, several agents on one base model,
the generalisation table (moralkit.analysis on hand-made logs) and grids of runs (moralkit.experiments)."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from moralkit.env import ACTION_TYPES
from moralkit.evaluate import Evaluation
from moralkit.analysis import agent_kind, generalisation_table, opponent_log, phase_shares, reward_switches, state_policy
from moralkit.experiments import adapter_key, agent_players, evaluate_runs
from moralkit.training import TrainingConfig


def hand_log(types_per_episode, rewards=None):
    """A training log: one list of action types per episode (opp_prev and my_move follow from them)."""
    rows = []
    for episode, types in enumerate(types_per_episode):
        for t in types:
            my, prev = ("illegal", "C") if t == "illegal" else t.split("|")
            rows.append({"episode": episode, "train_reward": (rewards or {}).get(episode, "game"),
                         "my_prev": "D", "opp_prev": prev, "my_move": my, "action_type": t})
    return pd.DataFrame(rows)


def unlearning_log():
    """10 episodes: Game for 5 (all exploiting/retaliating), then Deontological (cooperation returns)."""
    episodes = [["D|C", "D|D"]] * 5 + [["C|C", "D|D"]] * 3 + [["C|C", "C|C"], ["C|C", "illegal"]]
    return hand_log(episodes, rewards={e: "deontological" for e in range(5, 10)})


def test_reward_switches():
    log = unlearning_log()
    assert reward_switches(log) == [5]
    assert reward_switches(hand_log([["C|C"]] * 3)) == []
    three = hand_log([["C|C"]] * 6, rewards={2: "deontological", 3: "deontological", 4: "utilitarian", 5: "utilitarian"})
    assert reward_switches(three) == [2, 4]
    assert reward_switches(pd.DataFrame()) == []


def test_phase_shares_compares_the_end_with_just_before_the_switch():
    table = phase_shares(unlearning_log(), last=0.2).set_index("window")
    assert list(table.index) == ["before switch", "end"]
    before, end = table.loc["before switch"], table.loc["end"]
    assert (before["first_episode"], before["last_episode"]) == (4, 4)  # last 20% of episodes 0-4
    assert (end["first_episode"], end["last_episode"]) == (8, 9)  # last 20% of the run
    assert before["rounds"] == 2 and before["D|C"] == 0.5 and before["C|C"] == 0.0 and before["D_after_C"] == 1.0
    assert end["rounds"] == 4 and end["C|C"] == 0.75 and end["illegal"] == 0.25 and end["D|C"] == 0.0
    assert end["legal"] == 0.75 and end["C_after_C"] == 0.75  # the illegal answer came after their C
    assert np.isclose(table[list(ACTION_TYPES)].sum(axis=1), 1.0).all()


def test_phase_shares_windows_never_cross_the_switch():
    log = unlearning_log()
    wide = phase_shares(log, last=0.9).set_index("window")
    assert (wide.loc["before switch", "first_episode"], wide.loc["before switch", "last_episode"]) == (0, 4)
    assert wide.loc["end", "first_episode"] == 5  # 90% of the run would reach back before the switch
    two = phase_shares(hand_log([["D|D"], ["C|C"]], rewards={1: "deontological"})).set_index("window")
    assert list(two["first_episode"]) == [0, 1] and list(two["last_episode"]) == [0, 1]  # the smoke profile's 1 + 1
    at_3 = phase_shares(log, switch_episode=3).set_index("window")  # an explicit switch episode wins
    assert at_3.loc["before switch", "last_episode"] == 2


def test_phase_shares_explains_what_is_wrong():
    with pytest.raises(ValueError, match="no reward switch"):
        phase_shares(hand_log([["C|C"]] * 4))
    with pytest.raises(ValueError, match="inside the run"):
        phase_shares(unlearning_log(), switch_episode=10)
    with pytest.raises(ValueError, match="fraction"):
        phase_shares(unlearning_log(), last=0)
    with pytest.raises(ValueError, match="empty"):
        phase_shares(pd.DataFrame())


def test_state_policy_counts_what_was_answered_per_state():
    log = pd.DataFrame({
        "episode": [0, 0, 0, 1, 1, 1],
        "my_prev": ["C", "C", "D", "C", "C", "D"],
        "opp_prev": ["C", "C", "D", "C", "C", "C"],
        "my_move": ["C", "D", "illegal", "C", "C", "D"],
    })
    table = state_policy(log).set_index(["my_prev", "opp_prev"])
    assert table.loc[("C", "C"), "rounds"] == 4 and table.loc[("C", "C"), "P(C)"] == 0.75
    assert table.loc[("D", "D"), "P(illegal)"] == 1.0 and table.loc[("D", "C"), "P(D)"] == 1.0
    assert table.loc[("C", "D"), "rounds"] == 0 and np.isnan(table.loc[("C", "D"), "P(C)"])
    first = state_policy(log, 0, 0).set_index(["my_prev", "opp_prev"])
    assert first.loc[("C", "C"), "rounds"] == 2 and first.loc[("D", "C"), "rounds"] == 0
    assert list(state_policy(log).columns) == ["my_prev", "opp_prev", "P(C)", "P(D)", "P(illegal)", "rounds"]


def pair_log():
    return pd.DataFrame({
        "episode": [0, 0, 0],
        "my_prev": ["C", "D", "C"],
        "opp_prev": ["D", "C", "C"],
        "my_move": ["D", "illegal", "C"],
        "opp_move": ["C", "D", "illegal"],
        "action_type": ["D|D", "illegal", "C|C"],
        "my_payoff": [4.0, np.nan, np.nan],
        "opp_payoff": [0.0, np.nan, np.nan],
        "reward_game": [4.0, -6.0, -6.0],
        "opp_reward_game": [0.0, 1.0, -6.0],
        "answer": ["action2", "hm", "action1"],
        "opp_answer": ["action1", "action2", "so"],
    })


def test_opponent_log_swaps_the_players():
    log = pair_log()
    o = opponent_log(log)
    assert list(o.columns) == list(log.columns)
    assert list(o["my_move"]) == ["C", "D", "illegal"] and list(o["opp_prev"]) == ["C", "D", "C"]
    assert list(o["action_type"]) == ["C|C", "D|D", "illegal"]  # O's move given M's previous move
    assert list(o["reward_game"]) == [0.0, 1.0, -6.0] and list(o["answer"]) == ["action1", "action2", "so"]
    assert o["my_payoff"].iloc[0] == 0.0
    pd.testing.assert_frame_equal(opponent_log(o), log)  # swapping twice gives the log back


def test_opponent_log_needs_a_two_learner_log():
    with pytest.raises(ValueError, match="learner"):
        opponent_log(hand_log([["C|C"]]))


def rounds_frame():
    """Hand-made evaluation rounds: a cooperator, the base model (all illegal) and a prompted model."""
    def rows(agent, game, labels, moves, prevs, deont, util, best, payoff):
        return pd.DataFrame({"agent": agent, "game": game, "labels": labels,
                             "action_type": [("illegal" if m == "illegal" else f"{m}|{p}") for m, p in zip(moves, prevs)],
                             "reward_deontological": deont, "reward_utilitarian": util, "reward_game": payoff,
                             "best_collective": best})
    return pd.concat([
        rows("deontological", "defective_coordination", "test", ["C", "C", "C", "D"], ["C", "D", "C", "D"],
             [0, 0, 0, 0], [2, 0, 2, 8], 8.0, [1, 0, 1, 4]),
        rows("no_finetuning", "defective_coordination", "test", ["illegal"] * 4, ["C"] * 4, [-6] * 4, [-6] * 4, 8.0, [-6] * 4),
        rows("deontological", "defective_coordination", "swapped", ["illegal", "D", "D", "D"], ["C", "C", "D", "D"],
             [-6, -4, 0, 0], [-6, 4, 0, 8], 8.0, [-6, 0, 0, 4]),
        rows("prompted_utilitarian", "prisoners_dilemma", "test", ["C", "illegal"], ["C", "C"], [0, -6], [6, -6], 6.0, [3, -6]),
    ], ignore_index=True)


def test_generalisation_table():
    table = generalisation_table(Evaluation(rounds_frame(), xi=4.0, r_illegal=-6.0))
    assert list(table.columns[:5]) == ["agent", "kind", "game", "labels", "rounds"]
    t = table.set_index(["agent", "labels"])
    row = t.loc[("deontological", "test")]
    assert row["kind"] == "fine-tuned" and row["rounds"] == 4 and row["C_among_legal"] == 0.75
    assert row["mean_payoff"] == 1.5 and np.isclose(row["utilit_regret"], (8 - 3) / 14)
    assert row["paper_deont_regret"] == pytest.approx(0.18)  # the paper's Figure 4 value
    assert np.isnan(t.loc[("deontological", "swapped"), "paper_deont_regret"])  # the paper used the test labels
    assert t.loc[("deontological", "swapped"), "C_among_legal"] == 0.0
    assert t.loc[("no_finetuning", "test"), "kind"] == "untuned" and np.isnan(t.loc[("no_finetuning", "test"), "C_among_legal"])
    assert t.loc[("prompted_utilitarian", "test"), "kind"] == "prompted"
    assert [agent_kind(a) for a in ("no_finetuning", "prompted_deontological", "game_then_utilitarian")] == [
        "untuned", "prompted", "fine-tuned"]


def test_over_seeds_gives_the_mean_and_a_student_t_interval_over_seeds():
    from scipy import stats

    from moralkit.analysis import over_seeds

    runs = pd.DataFrame({"agent": ["game"] * 3 + ["utilitarian"], "seed": [0, 1, 2, 0],
                         "D": [0.90, 1.00, 0.95, 0.10], "meets": [True, True, False, True]})
    out = over_seeds(runs, ["agent"]).set_index("agent")
    g = out.loc["game"]
    half = stats.t.ppf(0.975, 2) * np.std([0.90, 1.00, 0.95], ddof=1) / np.sqrt(3)
    assert g["seeds"] == 3 and g["seed_list"] == "0 1 2"
    assert g["D"] == pytest.approx(0.95) and g["D_lo"] == pytest.approx(0.95 - half) and g["D_hi"] == pytest.approx(0.95 + half)
    assert g["meets_seeds"] == "2/3"
    one = out.loc["utilitarian"]  # one seed: a mean, no interval
    assert one["seeds"] == 1 and one["D"] == pytest.approx(0.10) and np.isnan(one["D_lo"]) and np.isnan(one["D_sd"])
    wider = over_seeds(runs, ["agent"], ["D"], confidence=0.99).set_index("agent").loc["game"]
    assert wider["D_lo"] < g["D_lo"] and wider["D_hi"] > g["D_hi"]
    with pytest.raises(KeyError, match="seed"):
        over_seeds(runs.drop(columns="seed"), ["agent"])
    with pytest.raises(ValueError, match="confidence"):
        over_seeds(runs, ["agent"], confidence=95)


def test_generalisation_over_seeds_averages_games_then_seeds():
    from moralkit.analysis import generalisation_over_seeds

    first = rounds_frame().query("labels == 'test'")
    first = first.assign(seed=np.where(first["agent"] == "deontological", 0, -1))
    second = first[first["agent"] == "deontological"].assign(seed=1)
    second = second.assign(reward_deontological=-6.0)  # seed 1 broke the norm every round
    ev = Evaluation(pd.concat([first, second], ignore_index=True), xi=4.0, r_illegal=-6.0)
    per_seed = [generalisation_table(Evaluation(part, xi=4.0, r_illegal=-6.0)) for _, part in ev.rounds.groupby("seed")]
    out = generalisation_over_seeds(ev).set_index("agent")
    d = out.loc["deontological"]
    expected = [t.set_index("agent").loc["deontological", "deont_regret"] for t in per_seed[1:]]
    assert d["seeds"] == 2 and d["seed_list"] == "0 1" and d["games"] == 1
    assert d["deont_regret"] == pytest.approx(np.mean(expected)) and d["deont_regret_hi"] > d["deont_regret"]
    assert d["paper_deont_regret"] == pytest.approx(0.18) and "paper_deont_regret_lo" not in out.columns
    base = out.loc["no_finetuning"]
    assert base["seeds"] == 1 and np.isnan(base["deont_regret_lo"])  # not fine-tuned: one "seed", no interval
    with pytest.raises(KeyError, match="seed"):
        generalisation_over_seeds(Evaluation(rounds_frame(), xi=4.0, r_illegal=-6.0))


def test_generalisation_per_seed_tables_of_different_evaluations_combine():
    """Seeds evaluated at different times: concatenating their per-seed tables gives the joint means."""
    from moralkit.analysis import generalisation_over_seeds, generalisation_per_seed

    early = Evaluation(pd.concat([seeded_rounds(0), seeded_rounds(1, deont=-4.0)], ignore_index=True), 4.0, -6.0)
    later = Evaluation(seeded_rounds(2, deont=-2.0), 4.0, -6.0)
    per_seed = pd.concat([generalisation_per_seed(early), generalisation_per_seed(later)], ignore_index=True)
    rows = per_seed[per_seed["agent"] == "deontological"].set_index("seed")
    assert rows["deont_regret"].to_dict() == pytest.approx({0: 0.0, 1: 4.0, 2: 2.0}) and set(rows["games"]) == {1}
    joint = generalisation_over_seeds(per_seed).set_index("agent").loc["deontological"]
    assert joint["seed_list"] == "0 1 2" and joint["deont_regret"] == pytest.approx(2.0)
    assert joint["deont_regret_lo"] < 2.0 < joint["deont_regret_hi"]
    one_go = Evaluation(pd.concat([early.rounds, later.rounds], ignore_index=True), 4.0, -6.0)
    assert generalisation_over_seeds(one_go).set_index("agent").loc["deontological", "deont_regret"] == pytest.approx(2.0)


def seeded_rounds(seed: int, deont: float = 0.0):
    """Evaluation rounds of one training seed: the agent drives, the base model answers the same prompts."""
    frame = rounds_frame().query("labels == 'test' and game == 'defective_coordination'")
    frame = frame.assign(seed=seed, driver="deontological", episode=[0, 0, 1, 1] * 2)
    return frame.assign(reward_deontological=np.where(frame["agent"] == "deontological", deont, frame["reward_deontological"]))


def test_combine_evaluations_adds_a_later_seed_and_replaces_a_re_evaluated_one():
    from moralkit.analysis import generalisation_over_seeds
    from moralkit.evaluate import combine_evaluations

    early = Evaluation(pd.concat([seeded_rounds(0), seeded_rounds(1, deont=-4.0)], ignore_index=True), 4.0, -6.0)
    later = Evaluation(pd.concat([seeded_rounds(1), seeded_rounds(2, deont=-2.0)], ignore_index=True), 4.0, -6.0)
    both = combine_evaluations(early, later)
    assert sorted(both.rounds.groupby("seed").size().to_dict().items()) == [(0, 8), (1, 8), (2, 8)]  # seed 1 once, the later one
    d = generalisation_over_seeds(both).set_index("agent").loc["deontological"]
    assert d["seed_list"] == "0 1 2" and d["deont_regret"] == pytest.approx((0 + 0 + 2) / 3)

    other_protocol = Evaluation(seeded_rounds(3).assign(episode=0), 4.0, -6.0)
    with pytest.raises(ValueError, match="different protocols"):
        combine_evaluations(early, other_protocol)
    with pytest.raises(ValueError, match="different rewards"):
        combine_evaluations(early, Evaluation(later.rounds, 3.0, -6.0))
    with pytest.raises(ValueError, match="lack column"):
        combine_evaluations(early, Evaluation(later.rounds.drop(columns="driver"), 4.0, -6.0))


def test_evaluate_verb_adds_to_an_earlier_evaluation(tmp_path, monkeypatch, capsys):
    import moralkit.experiments as experiments
    from moralkit.cli import main

    monkeypatch.setattr(experiments, "load_runs", lambda folders: list(folders))
    monkeypatch.setattr(experiments, "evaluate_runs", lambda runs, **kw: Evaluation(seeded_rounds(2, deont=-2.0), 4.0, -6.0))
    first = tmp_path / "first"
    first.mkdir()
    pd.concat([seeded_rounds(0), seeded_rounds(1)]).to_csv(first / "evaluation_rounds.csv", index=False)
    out = tmp_path / "all"
    assert main(["evaluate", "run2", "--add-to", str(first), "--out", str(out)]) == 0
    means = pd.read_csv(out / "generalisation_over_seeds.csv").set_index("agent")
    assert means.loc["deontological", "seed_list"] == "0 1 2" and means.loc["deontological", "deont_regret"] == pytest.approx(2 / 3)
    assert "interval over training seeds" in capsys.readouterr().out
    assert (out / "figures" / "regrets_vs_paper.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the paper's Figure 4 beside ours
    assert main(["evaluate", "run2", "--add-to", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (first / "evaluation_rounds.csv").write_text("agent,score\nx,1\n")  # a foreign table: refused before evaluating
    monkeypatch.setattr(experiments, "evaluate_runs", lambda runs, **kw: pytest.fail("evaluated despite a bad --add-to"))
    assert main(["evaluate", "run2", "--add-to", str(first), "--out", str(out)]) == 2
    assert "lack column" in capsys.readouterr().err


# --------------------------------------------------------------------- several agents on one base model
def biased_model(tokenizer):
    """A tiny random Llama that often answers with the test labels (action3 / action4)."""
    from moralkit.llm.models import tiny_random_model

    action, three, four = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("action", "3", "4"))
    return tiny_random_model(tokenizer, seed=0, logit_bias={action: 15.0, three: 14.3, four: 14.0})


def fake_runs(tmp_path, tokenizer, rewards, first_seed=0):
    """Run-like objects (config + adapter folder) with random, non-zero LoRA adapters on a tiny model."""
    import torch
    from peft import LoraConfig, get_peft_model

    runs = []
    for k, reward in enumerate(rewards):
        torch.manual_seed(first_seed + k)
        lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        model = get_peft_model(biased_model(tokenizer), lora)
        folder = tmp_path / f"run{k}" / "adapter"
        model.save_pretrained(str(folder))
        runs.append(SimpleNamespace(config=TrainingConfig(reward=reward, opponent="tit_for_tat", seed=0), adapter_dir=folder))
    return runs


def test_agent_players_share_one_base_model_with_evaluate_runs(tmp_path, tokenizer):
    from moralkit.games import get_game
    from moralkit.llm.adapters import adapter_names

    runs = fake_runs(tmp_path, tokenizer, ["game", "deontological"])
    model, tok, players = agent_players(runs, model=biased_model(tokenizer), tokenizer=tokenizer)
    assert list(players) == ["no_finetuning", "game", "deontological"]
    assert all(p.model is model for p in players.values()) and tok is tokenizer
    names = [adapter_key(run.adapter_dir) for run in runs]
    assert sorted(adapter_names(model)) == sorted(names) and names[0].startswith("run0_adapter_")
    game = get_game("prisoners_dilemma")
    probs = {name: p.label_probabilities(game, [0, 1], [0, 1]) for name, p in players.items()}
    assert probs["no_finetuning"][:, :2].sum() > 0.1  # the biased model answers with the labels
    assert not np.allclose(probs["game"], probs["no_finetuning"])  # the adapter is on
    assert not np.allclose(probs["game"], probs["deontological"])  # and each player has its own
    ev = evaluate_runs(runs, model=model, tokenizer=tok, games=["prisoners_dilemma"], episodes=1, progress=False)
    assert sorted(adapter_names(model)) == sorted(names)  # nothing loaded twice
    assert set(ev.rounds["agent"]) == {"game", "deontological", "no_finetuning"}
    # another run evaluated later on the same model gets an adapter of its own beside the others
    other = fake_runs(tmp_path / "later", tokenizer, ["utilitarian"], first_seed=7)  # its folder is run0 too
    ev2 = evaluate_runs(other, model=model, tokenizer=tok, games=["prisoners_dilemma"], episodes=1, progress=False)
    assert sorted(adapter_names(model)) == sorted(names + [adapter_key(other[0].adapter_dir)])
    assert set(ev2.rounds["agent"]) == {"utilitarian", "no_finetuning"}
    again = {name: p.label_probabilities(game, [0, 1], [0, 1]) for name, p in players.items()}
    for name in probs:  # the earlier players answer exactly as before
        np.testing.assert_allclose(again[name], probs[name], rtol=1e-6)


def test_agent_players_name_repeated_rewards_by_seed(tmp_path, tokenizer):
    runs = fake_runs(tmp_path, tokenizer, ["game", "game"])
    runs[1].config = TrainingConfig(reward="game", opponent="tit_for_tat", seed=1)
    _, _, players = agent_players(runs, model=biased_model(tokenizer), tokenizer=tokenizer)
    assert list(players) == ["no_finetuning", "game_seed0", "game_seed1"]
    with pytest.raises(ValueError, match="tokenizer"):
        agent_players(runs, model=biased_model(tokenizer))


def test_meets_prediction_holds_the_bar_of_spec_section_5():
    from moralkit.analysis import PREDICTIONS, meets_prediction

    assert set(PREDICTIONS) == {"game", "utilitarian", "deontological", "game_deontological"}
    assert meets_prediction("game", {"D": 0.90}) and not meets_prediction("game", {"D": 0.89})
    assert meets_prediction("utilitarian", {"C": 0.95}) and not meets_prediction("utilitarian", {"C": 0.5})
    assert meets_prediction("deontological", {"D|C": 0.05, "legal": 0.95})
    assert not meets_prediction("deontological", {"D|C": 0.0, "legal": 0.90})  # legal answers count too
    assert not meets_prediction("game_deontological", {"C_after_C": 0.99, "D_after_D": 0.79})
    assert not meets_prediction("game_deontological", {"C_after_C": 0.99})  # a missing key never passes
    assert meets_prediction("virtue_equality", {"D": 1.0}) is None


def _run_folder(root, config, types_per_episode, seconds=30.0):
    """A finished run folder written by hand: config.json, rounds.csv, updates.csv, done.json.

    The log's training reward follows the config's schedule (as a real run's does)."""
    folder = root / f"{config.label}__{config.opponent}__seed{config.seed}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    phases = config.schedule or ((config.reward, len(types_per_episode)),)
    rewards = [name for name, n in phases for _ in range(n)]
    hand_log(types_per_episode, rewards=dict(enumerate(rewards))).to_csv(folder / "rounds.csv", index=False)
    pd.DataFrame({"episode": range(len(types_per_episode)), "seconds": seconds}).to_csv(folder / "updates.csv", index=False)
    (folder / "done.json").write_text("{}")
    return folder


def test_training_table_gives_the_verdict_and_the_minutes(tmp_path):
    from moralkit.analysis import training_table
    from moralkit.experiments import load_runs

    exploiting = [["D|C", "D|D"]] * 10
    _run_folder(tmp_path, TrainingConfig(reward="game", opponent="tft", episodes=10), exploiting, seconds=30.0)
    _run_folder(tmp_path, TrainingConfig(reward="x", opponent="tit_for_tat", schedule=(("game", 5), ("deontological", 5))),
                exploiting)
    _run_folder(tmp_path, TrainingConfig(reward="game", opponent="always_cooperate", episodes=10, seed=3), exploiting)
    (tmp_path / "training.csv").write_text("not a run")  # files beside the runs are ignored
    runs = load_runs(tmp_path)  # a grid folder stands for the runs inside
    assert len(runs) == 3
    table = training_table(runs).set_index(["agent", "opponent"])
    game = table.loc[("game", "tft")]
    assert game["D"] == 1.0 and game["meets"] == True and game["minutes"] == 5.0  # 10 x 30 s
    assert game["predicted"].startswith("always D")
    switched = table.loc[("game_then_deontological", "tit_for_tat")]
    assert switched["meets"] == False and "D|C" in switched["predicted"]  # judged by the reward it ends with
    other = table.loc[("game", "always_cooperate")]
    assert other["predicted"] == "" and other["meets"] is None  # docs/science.md §5 predicts against Tit-for-Tat only


def test_unlearning_table_applies_the_bar_to_runs_that_switch(tmp_path):
    from moralkit.analysis import unlearning_table
    from moralkit.experiments import load_runs

    deont = {e: "deontological" for e in range(5, 10)}
    for name, log in {"x": unlearning_log(), "y": hand_log([["D|C", "D|D"]] * 10, rewards=deont),
                      "z": hand_log([["D|C", "D|D"]] * 10)}.items():
        folder = tmp_path / name
        folder.mkdir()
        config = TrainingConfig(reward="x", opponent="tit_for_tat", seed=ord(name),
                                schedule=(("game", 5), ("deontological", 5)))
        (folder / "config.json").write_text(json.dumps(config.to_dict()))
        log.to_csv(folder / "rounds.csv", index=False)
        (folder / "done.json").write_text("{}")
    table = unlearning_table(load_runs(tmp_path)).set_index("seed")
    assert list(table.index) == [ord("x"), ord("y")]  # z never switched rewards
    x, y = table.loc[ord("x")], table.loc[ord("y")]
    assert x["switch_episode"] == 5
    # before = episode 4 (D|C, D|D); end = episodes 8-9 (C|C C|C, C|C illegal)
    assert x["CC_before"] == 0.0 and x["CC_end"] == 0.75 and x["CC_gain"] == 0.75
    assert x["DC_before"] == 0.5 and x["DC_end"] == 0.0 and x["unlearned"] == True
    assert y["CC_gain"] == 0.0 and y["DC_end"] == 0.5 and y["unlearned"] == False


def test_reward_specs_and_where_the_switch_falls():
    from moralkit.training import condition_config, parse_reward_spec
    from moralkit.profiles import get_profile

    assert parse_reward_spec("game", 40) is None
    assert parse_reward_spec("game->deontological", 41) == (("game", 20), ("deontological", 21))
    assert parse_reward_spec(" game -> utilitarian ", 40, switch_at=0.2) == (("game", 8), ("utilitarian", 32))
    assert parse_reward_spec("game->deontological", 2, switch_at=0.01) == (("game", 1), ("deontological", 1))
    assert parse_reward_spec("a->b->c", 7) == (("a", 3), ("b", 2), ("c", 2))
    assert parse_reward_spec("game:3,deontological:9", 100) == (("game", 3), ("deontological", 9))
    with pytest.raises(ValueError, match="needs a length"):
        parse_reward_spec("game:3,deontological", 10)
    with pytest.raises(ValueError, match="switch_at"):
        parse_reward_spec("game->deontological", 10, switch_at=1.0)
    # the profile decides where an "A->B" switch falls; an explicit switch_at wins
    cpu = get_profile("cpu")
    assert condition_config("game->deontological", "tft", 0, cpu).schedule == (("game", 6), ("deontological", 34))
    assert condition_config("game->deontological", "tft", 0, cpu, episodes=60, switch_at=0.5).schedule == (
        ("game", 30), ("deontological", 30))
    assert condition_config("game->utilitarian", "tft", 0, get_profile("paper")).schedule == (
        ("game", 500), ("utilitarian", 500))
    # aliases name the same condition, hence the same run folder
    alias = condition_config("game->de", "tft", 0, cpu)
    assert alias == condition_config("game->deontological", "tit_for_tat", 0, cpu)
    assert alias.opponent == "tit_for_tat" and alias.label == "game_then_deontological"
    assert condition_config("game+deontological", "learner", 0, cpu).reward == "game_deontological"
    assert condition_config("game", "axelrod:Grudger", 0, cpu).opponent == "axelrod:Grudger"
    with pytest.raises(ValueError, match="Valid names"):
        condition_config("game->kindnes", "tft", 0, cpu)


def test_run_grid_writes_the_tables_of_this_grid_only(tmp_path):
    from moralkit.experiments import condition_config, run_grid
    from moralkit.profiles import get_profile

    smoke = get_profile("smoke")
    for spec in ("game", "game->deontological"):
        cfg = condition_config(spec, "tit_for_tat", 0, smoke)
        _run_folder(tmp_path, cfg, [["D|C", "D|D"]] * cfg.episodes)  # finished: nothing is trained
    train, summary = run_grid(["game", "game->deontological"], out=tmp_path, profile="smoke", seeds=[0],
                              evaluate=False, progress=False)
    assert summary is None and list(train["agent"]) == ["game", "game_then_deontological"]
    assert (tmp_path / "unlearning.csv").exists()
    run_grid(["game"], out=tmp_path, profile="smoke", seeds=[0], evaluate=False, progress=False)
    assert list(pd.read_csv(tmp_path / "training.csv")["agent"]) == ["game"]
    assert not (tmp_path / "unlearning.csv").exists()  # no stale table from the earlier grid


def test_run_grid_aggregates_over_seeds(tmp_path):
    from moralkit.experiments import condition_config, run_grid
    from moralkit.profiles import get_profile

    smoke = get_profile("smoke")
    for seed, types in ((0, ["D|C", "D|D"]), (1, ["D|C", "C|D"]), (2, ["D|D", "D|D"])):
        cfg = condition_config("game", "tit_for_tat", seed, smoke)
        _run_folder(tmp_path, cfg, [types] * cfg.episodes)
    train, _ = run_grid(["game"], out=tmp_path, profile="smoke", seeds=[0, 1, 2], evaluate=False, progress=False)
    table = pd.read_csv(tmp_path / "training_over_seeds.csv")
    assert len(table) == 1 and table.loc[0, "seeds"] == 3 and table.loc[0, "seed_list"] == "0 1 2"
    assert table.loc[0, "D"] == pytest.approx(train["D"].mean()) == pytest.approx((1 + 0.5 + 1) / 3)
    assert table.loc[0, "D_lo"] < table.loc[0, "D"] < table.loc[0, "D_hi"]
    assert table.loc[0, "meets_seeds"] == "2/3"  # seed 1 defects only half the time: below the 90% bar


def test_train_or_reuse_trains_then_reuses_and_finishes_the_callback(tmp_path):
    from moralkit.experiments import train_or_reuse

    class Watch:
        def __init__(self):
            self.episodes, self.finished = [], None

        def __call__(self, run, rounds):
            self.episodes.append(run.episode)

        def finish(self, run):
            self.finished = run.episode

    cfg = TrainingConfig(reward="game", opponent="tit_for_tat", episodes=2, games_per_update=2, rounds=2, preset="smoke",
                         checkpoint_every=1, model="random:smollm2-135m-narrow")
    said, watch = [], Watch()
    run = train_or_reuse(cfg, tmp_path / "run", callback=watch, progress=False, say=said.append)
    assert run.finished and watch.episodes == [1, 2] and watch.finished == 2
    assert said == [f"game vs tit_for_tat: training 2 updates in {tmp_path / 'run'}"]
    run.release()
    again = train_or_reuse(cfg, tmp_path / "run", callback=Watch(), progress=False, say=said.append)
    assert again.finished and said[-1] == f"game vs tit_for_tat: reusing the finished run in {tmp_path / 'run'}"
    assert len(again.log) == len(run.log)  # nothing was trained twice


def test_unlearning_table_compares_the_end_with_an_expected_range(tmp_path):
    from moralkit.analysis import unlearning_table
    from moralkit.experiments import load_runs

    config = TrainingConfig(reward="x", opponent="tit_for_tat", schedule=(("game", 5), ("deontological", 5)))
    _run_folder(tmp_path, config, [["D|C", "D|D"]] * 5 + [["C|C", "D|D"]] * 3 + [["C|C", "C|C"], ["C|C", "illegal"]])
    runs = load_runs(tmp_path)
    inside = unlearning_table(runs, expected={"game_then_deontological": (0.5, 1.0)}).iloc[0]
    assert inside["CC_end"] == 0.75 and inside["CC_end_low"] == 0.5 and inside["CC_end_as_expected"] == True
    outside = unlearning_table(runs, expected={"game_then_deontological": (0.95, 1.0)}).iloc[0]
    assert outside["CC_end_as_expected"] == False
    unnamed = unlearning_table(runs, expected={}).iloc[0]
    assert np.isnan(unnamed["CC_end_low"]) and unnamed["CC_end_as_expected"] is None
    assert "CC_end_low" not in unlearning_table(runs).columns
