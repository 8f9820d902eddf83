"""GRPO with TRL's GRPOTrainer: the reward function, the run folder (same files as PPO), resume,
the adapter in plain peft and in the evaluation, a missing TRL, the comparison table.

That GRPO moves the embedded model in its reward's direction is measured by
``benchmarks/grpo_learns.py`` (minutes per update on a CPU: too slow for the suite), with its numbers
in data/results/grpo_learns_cpu.csv."""

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from moralkit.grpo import GRPOSettings, moral_reward_function, require_trl  # noqa: E402
from moralkit.rewards import R_ILLEGAL, get_reward  # noqa: E402
from moralkit.training import RunMismatchError, TrainingConfig, TrainingRun  # noqa: E402
from test_training import tiny_model  # noqa: E402  (the tiny random Llama, biased towards legal answers)

TINY = dict(episodes=4, games_per_update=2, rounds=2, preset="smoke", checkpoint_every=2, seed=0,
            ppo_overrides={"learning_rate": 5e-3})


def train(folder, callback=None, **kw):
    model, tok = tiny_model()
    cfg = TrainingConfig(**{**TINY, "algorithm": "grpo", **kw})
    return TrainingRun(cfg, folder, model=model, tokenizer=tok).train(progress=False, callback=callback)


# ------------------------------------------------------------------ the reward function
@pytest.mark.parametrize("name", ["game", "deontological", "utilitarian", "game_deontological"])
def test_reward_function_is_the_moral_reward_and_r_illegal_for_garbled_answers(name):
    rng = np.random.default_rng(3)
    n = 40
    answers = rng.choice(["action1", "action2", " action2\n", "action 1", "", "Action1", "action12"], size=n)
    my_prev, opp_prev, opp_move = (rng.integers(0, 2, n) for _ in range(3))
    reward = get_reward(name)
    f = moral_reward_function("prisoners_dilemma", {reward.name: reward}, "train")
    # TRL passes conversational completions (lists of messages) for conversational prompts
    completions = [[{"role": "assistant", "content": a}] for a in answers]
    got = np.array(f(["p"] * n, completions, train_reward=[reward.name] * n, my_prev=my_prev, opp_prev=opp_prev,
                     opp_move=opp_move, completion_ids=None))
    moves = np.array([{"action1": 0, "action2": 1}.get(a.strip(), -1) for a in answers])
    assert (moves == -1).any() and (moves == 0).any() and (moves == 1).any()
    np.testing.assert_allclose(got[moves == -1], R_ILLEGAL)
    legal = moves >= 0
    expected = reward("prisoners_dilemma", moves[legal], opp_move[legal], opp_prev[legal], my_prev_move=my_prev[legal])
    np.testing.assert_allclose(got[legal], expected)


def test_reward_function_uses_each_rows_reward():
    rewards = {"game": get_reward("game"), "deontological": get_reward("deontological")}
    f = moral_reward_function("prisoners_dilemma", rewards)
    # D after the opponent's C: Game pays 4 (opponent plays C), Deontological penalises it with -xi
    got = f(["p", "p"], ["action2", "action2"], train_reward=["game", "deontological"], my_prev=[0, 0],
            opp_prev=[0, 0], opp_move=[0, 0])
    assert got == [4.0, -get_reward("deontological").xi]


def test_a_pool_run_scores_each_group_with_its_episodes_labels(tmp_path):
    from moralkit.llm.models import embedded_tokenizer, tiny_random_model

    tok = embedded_tokenizer()
    red, blue = (tok.encode(t, add_special_tokens=False)[0] for t in ("red", "blue"))
    model = tiny_random_model(tok, seed=0, logit_bias={red: 15.0, blue: 14.5})
    cfg = TrainingConfig(**{**TINY, "algorithm": "grpo", "labels": "pool", "episodes": 2})
    assert [cfg.labels_at(e).name for e in range(2)] == ["pool_blue_red", "pool_action7_action8"]
    run = TrainingRun(cfg, tmp_path / "pool", model=model, tokenizer=tok).train(progress=False)
    score = run.updates["score/raw_mean"].to_numpy()
    # the groups' answers are "red"/"blue": legal moves under episode 0's labels, illegal under episode 1's
    assert score[0] > R_ILLEGAL + 1 and score[1] == pytest.approx(R_ILLEGAL)


def test_memory_report_and_parameter_counts_of_a_grpo_run_have_no_value_head(tmp_path):
    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**{**TINY, "algorithm": "grpo"}), tmp_path / "g", model=model, tokenizer=tok)
    report = run.memory_report()
    assert [i for i in report.index if "value head" in i] == [] and any("LoRA adapter" in i for i in report.index)
    trained, frozen = run.parameter_counts()
    adapter = sum(p.numel() for p in run.trainers["learner"].adapter_parameters)
    assert trained == adapter > 0 and frozen > trained


def test_settings_share_the_ppo_adapter_and_refuse_no_anchor():
    cfg = TrainingConfig(**TINY, algorithm="grpo")
    s, p = cfg.grpo_config(), cfg.ppo_config()
    assert (s.lora_r, s.lora_alpha, s.lora_target_modules, s.learning_rate) == (
        p.lora_r, p.lora_alpha, p.lora_target_modules, p.learning_rate)
    with pytest.raises(ValueError, match="beta must be > 0"):
        GRPOSettings(beta=0.0)
    with pytest.raises(ValueError, match="unknown GRPO settings"):
        TrainingConfig(**TINY, algorithm="grpo", grpo_overrides={"betta": 0.1})
    with pytest.raises(ValueError, match="fixed opponent"):
        TrainingConfig(**TINY, algorithm="grpo", opponent="learner")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        TrainingConfig(**TINY, algorithm="dpo")


# ------------------------------------------------------------------ the run folder
def test_a_grpo_run_writes_what_a_ppo_run_writes(tmp_path):
    grpo = train(tmp_path / "grpo")
    model, tok = tiny_model()
    ppo = TrainingRun(TrainingConfig(**TINY), tmp_path / "ppo", model=model, tokenizer=tok).train(progress=False)

    def files(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.is_file() and not p.name.endswith(".json") and "figures" not in p.parts)

    ppo_files = [f.replace("ppo_config", "grpo_config") for f in files(ppo.folder)]
    assert files(grpo.folder) == ppo_files
    assert list(grpo.log.columns) == list(ppo.log.columns) and len(grpo.log) == len(ppo.log) == 4 * 2 * 2
    shared = {"episode", "train_reward", "seconds", "objective/kl", "objective/kl_coef", "objective/entropy",
              "score/raw_mean", "C|C", "C|D", "D|C", "D|D", "illegal"}
    assert shared <= set(grpo.updates.columns) and shared <= set(ppo.updates.columns)
    assert (grpo.updates["objective/kl_coef"] == 0.04).all() and (grpo.updates["objective/kl"] > 0).any()
    config = json.loads((grpo.folder / "config.json").read_text())
    assert config["algorithm"] == "grpo" and config["grpo"]["beta"] == 0.04 and config["grpo"]["num_generations"] == 4
    assert json.loads((ppo.folder / "config.json").read_text())["algorithm"] == "ppo"
    assert (grpo.folder / "done.json").exists() and (grpo.adapter_dir / "adapter_model.safetensors").exists()


class Killed(Exception):
    pass


def test_a_killed_grpo_run_resumes_to_the_same_result_and_refuses_other_settings(tmp_path):
    whole = train(tmp_path / "whole")

    def die_after_3(run, rounds):
        if run.episode == 3:
            raise Killed

    with pytest.raises(Killed):
        train(tmp_path / "cut", callback=die_after_3)  # checkpoint at episode 2, episode 3 logged then lost
    for other in ({"grpo_overrides": {"beta": 0.1}}, {"algorithm": "ppo"}):
        model, tok = tiny_model()
        with pytest.raises(RunMismatchError, match="other settings"):
            TrainingRun(TrainingConfig(**{**TINY, "algorithm": "grpo", **other}), tmp_path / "cut", model=model, tokenizer=tok)
    resumed = train(tmp_path / "cut")
    cols = ["episode", "game_id", "round", "my_move", "opp_move", "answer"]
    assert resumed.log[cols].equals(whole.log[cols])
    drop = ["seconds", "time/grpo/total"]
    np.testing.assert_allclose(resumed.updates.drop(columns=drop).select_dtypes("number").to_numpy(),
                               whole.updates.drop(columns=drop).select_dtypes("number").to_numpy(), rtol=1e-5, atol=1e-7)
    from safetensors.torch import load_file

    a, b = (load_file(str(r.adapter_dir / "adapter_model.safetensors")) for r in (whole, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_the_grpo_adapter_loads_in_plain_peft_and_the_evaluation_scores_it(tmp_path):
    from peft import PeftModel

    from moralkit.experiments import evaluate_runs
    from moralkit.llm.agent import LLMPlayer

    run = train(tmp_path / "run")
    base, tok = tiny_model()
    plain = PeftModel.from_pretrained(base, str(run.adapter_dir))
    game_states = ([0, 1, 0, 1], [0, 0, 1, 1])
    from moralkit.games import get_game

    game = get_game("prisoners_dilemma")
    ours = run.player().label_probabilities(game, *game_states)
    theirs = LLMPlayer(plain, tok, "train").label_probabilities(game, *game_states)
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    untuned = LLMPlayer(tiny_model()[0], tok, "train").label_probabilities(game, *game_states)
    assert not np.allclose(untuned, ours)  # the adapter changed the policy
    model, tok = tiny_model()
    ev = evaluate_runs([run], model=model, tokenizer=tok, games=["prisoners_dilemma"], episodes=1, progress=False)
    assert set(ev.rounds["agent"]) == {"game", "no_finetuning"}


# ------------------------------------------------------------------ without TRL
def test_without_trl_the_error_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    from moralkit.cli import main

    monkeypatch.setitem(sys.modules, "trl", None)  # import trl now fails
    with pytest.raises(ImportError, match=r'pip install "moralkit\[grpo\]"'):
        require_trl()
    code = main(["train", "--algorithm", "grpo", "--profile", "smoke", "--model", "random:smollm2-135m-narrow",
                 "--out", str(tmp_path / "run")])
    assert code == 2 and 'pip install "moralkit[grpo]"' in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ GRPO learns
# ------------------------------------------------------------------ the comparison table
def test_rounds_to_criterion_counts_rounds_until_a_trailing_window_meets_the_prediction():
    import pandas as pd

    from moralkit.analysis import rounds_to_criterion

    # 10 episodes of 2 rounds: C until episode 5, then always D; the window is 20% = 2 episodes
    moves = ["C"] * 10 + ["D"] * 10
    log = pd.DataFrame({"episode": np.repeat(np.arange(10), 2), "my_move": moves, "opp_prev": ["C"] * 20,
                        "action_type": [f"{m}|C" for m in moves]})
    assert rounds_to_criterion(log, "game") == 14  # episodes 5 and 6 are the first all-D window: 7 episodes played
    assert rounds_to_criterion(log, "deontological") == 4  # never D after C in episodes 0-1
    assert rounds_to_criterion(log.assign(my_move="C", action_type="C|C"), "game") is None


@pytest.mark.slow
def test_compare_algorithms_writes_the_table_and_resumes(tmp_path):
    """Both algorithms on a tiny setting, each run in its own process; the second call trains nothing."""
    from moralkit.experiments import compare_algorithms

    kw = dict(out=tmp_path / "cmp", profile="smoke", episodes=1, games_per_update=1, rounds=2,
              model="random:smollm2-135m-narrow", progress=False)
    table = compare_algorithms(["game"], **kw)
    assert list(table["algorithm"]) == ["ppo", "grpo"] and (table["rounds"] == 2).all()
    assert list(table["seed"]) == [0, 0]
    assert {"rounds_to_criterion", "minutes", "rounds_per_s", "peak_rss_mb", "D", "legal", "meets"} <= set(table.columns)
    assert (table["peak_rss_mb"] > 100).all() and (table["rounds_per_s"] > 0).all()
    assert (tmp_path / "cmp" / "grpo" / "game__tit_for_tat__seed0" / "adapter" / "adapter_model.safetensors").exists()
    stamp = (tmp_path / "cmp" / "grpo" / "game__tit_for_tat__seed0" / "done.json").stat().st_mtime_ns
    again = compare_algorithms(["game"], **kw)
    assert (tmp_path / "cmp" / "grpo" / "game__tit_for_tat__seed0" / "done.json").stat().st_mtime_ns == stamp
    pd_cols = ["reward", "algorithm", "rounds", "peak_rss_mb", "D"]
    assert again[pd_cols].equals(table[pd_cols])


@pytest.mark.slow
def test_compare_algorithms_over_seeds(tmp_path):
    """Several seeds: a run per reward, seed and algorithm, and the table of means over seeds beside it."""
    import pandas as pd

    from moralkit.experiments import compare_algorithms

    kw = dict(out=tmp_path / "cmp", profile="smoke", episodes=1, games_per_update=1, rounds=2,
              model="random:smollm2-135m-narrow", progress=False)
    table = compare_algorithms(["game"], ["ppo"], seeds=[0, 1], **kw)
    assert list(table["seed"]) == [0, 1]
    assert sorted(p.name for p in (tmp_path / "cmp" / "ppo").iterdir()) == [
        "game__tit_for_tat__seed0", "game__tit_for_tat__seed1"]
    spread = pd.read_csv(tmp_path / "cmp" / "ppo_vs_grpo_over_seeds.csv")
    assert len(spread) == 1 and spread.loc[0, "seeds"] == 2 and spread.loc[0, "seed_list"] == "0 1"
    assert spread.loc[0, "rounds_per_s"] == pytest.approx(table["rounds_per_s"].mean())
    assert spread.loc[0, "rounds_per_s_lo"] < spread.loc[0, "rounds_per_s"] < spread.loc[0, "rounds_per_s_hi"]
    with pytest.raises(ValueError, match="distinct"):
        compare_algorithms(["game"], ["ppo"], seeds=[1, 1], **kw)
