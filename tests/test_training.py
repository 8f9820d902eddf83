"""The PPO training loop: episodes, schedules, two learners, logs, checkpoints that survive a kill."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from moralkit.analysis import training_summary
from moralkit.storage import read_table
from moralkit.training import RunMismatchError, TrainingConfig, TrainingRun

TINY = dict(episodes=4, games_per_update=3, rounds=2, preset="smoke", checkpoint_every=2, seed=0,
            ppo_overrides={"learning_rate": 5e-3})


def tiny_model():
    """A tiny random Llama with the embedded tokenizer, biased so that many answers are legal."""
    from moralkit.llm.models import embedded_tokenizer, tiny_random_model

    tok = embedded_tokenizer()
    action, one, two = (tok.encode(t, add_special_tokens=False)[0] for t in ("action", "1", "2"))
    return tiny_random_model(tok, seed=0, logit_bias={action: 15.0, one: 14.3, two: 14.0}), tok


def train(folder, **kw):
    model, tok = tiny_model()
    cfg = TrainingConfig(**{**TINY, **kw})
    return TrainingRun(cfg, folder, model=model, tokenizer=tok).train(progress=False)


def test_a_run_writes_logs_checkpoint_and_adapter(tmp_path):
    run = train(tmp_path / "run")
    log = run.log
    assert len(log) == 4 * 3 * 2 and sorted(log["episode"].unique()) == [0, 1, 2, 3]
    assert {"answer", "my_move", "opp_move", "action_type", "reward_game", "reward_deontological", "train_reward"} <= set(log.columns)
    assert (log["my_move"] != "illegal").any()  # the biased tiny model answers legally sometimes
    updates = run.updates
    assert len(updates) == 4 and {"objective/kl", "ppo/loss/policy", "ppo/loss/value", "C|C", "illegal"} <= set(updates.columns)
    assert (run.adapter_dir / "adapter_config.json").exists() and run.finished
    assert json.loads((run.folder / "config.json").read_text())["reward"] == "game"
    # a finished run is not trained again
    again = TrainingRun(run.config, run.folder, model=None, tokenizer=None)
    assert again.finished and again.train(progress=False) is again


def test_scores_are_the_reward_in_force(tmp_path):
    run = train(tmp_path / "sched", schedule=(("game", 2), ("deontological", 2)))
    log = run.log
    assert run.config.episodes == 4 and run.config.label == "game_then_deontological"
    assert (log[log["episode"] < 2]["train_reward"] == "game").all()
    assert (log[log["episode"] >= 2]["train_reward"] == "deontological").all()


def test_a_pool_run_reads_each_episode_with_its_own_labels(tmp_path):
    from moralkit.llm.models import embedded_tokenizer, tiny_random_model
    from moralkit.llm.prompts import LABEL_POOL, LABEL_SETS, parse_answer

    tok = embedded_tokenizer()
    red, blue = (tok.encode(t, add_special_tokens=False)[0] for t in ("red", "blue"))
    model = tiny_random_model(tok, seed=0, logit_bias={red: 15.0, blue: 14.5})
    cfg = TrainingConfig(**{**TINY, "labels": "pool"})
    run = TrainingRun(cfg, tmp_path / "pool", model=model, tokenizer=tok).train(progress=False)
    log = run.log
    assert cfg.label == "game+pool" and json.loads((run.folder / "config.json").read_text())["labels"] == "pool"
    drawn = {e: cfg.labels_at(e) for e in range(cfg.episodes)}
    assert log.groupby("episode")["labels"].unique().map(list).to_dict() == {e: [ls.name for ls in [drawn[e]]] for e in drawn}
    assert len({ls.name for ls in drawn.values()}) > 1  # the labels change from update to update
    named = {label for ls in LABEL_SETS.values() for label in ls.labels}
    assert all({ls.c, ls.d} in [set(p) for p in LABEL_POOL] and not {ls.c, ls.d} & named for ls in drawn.values())
    moves = {0: "C", 1: "D", -1: "illegal"}
    read = [moves[parse_answer(a, drawn[e])] for a, e in zip(log["answer"].fillna(""), log["episode"])]
    assert read == log["my_move"].tolist()  # every answer was read with its own episode's labels
    legal = log[log["my_move"] != "illegal"]
    assert len(legal) and set(legal["answer"]) <= {"red", "blue"}  # the biased model's words, legal only where drawn
    assert {drawn[e].name for e in legal["episode"]} == {"pool_blue_red"}


def test_pool_labels_are_a_pure_function_of_seed_and_episode():
    a, b = TrainingConfig(labels="pool", seed=0), TrainingConfig(labels="pool", seed=1)
    assert [a.labels_at(e) for e in range(20)] == [a.labels_at(e) for e in range(20)]  # a resumed run sees the same
    assert [a.labels_at(e) for e in range(20)] != [b.labels_at(e) for e in range(20)]
    meanings = {(ls.c, ls.d) for ls in (a.labels_at(e) for e in range(200))}
    assert any((d, c) in meanings for c, d in meanings)  # both meanings of a pair occur
    assert TrainingConfig(labels="Train").labels == "train" and TrainingConfig().labels_at(5).name == "train"
    with pytest.raises(ValueError, match="Unknown training labels 'nope'.*pool"):
        TrainingConfig(labels="nope")


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_training import TINY, tiny_model
    from moralkit.training import TrainingConfig, TrainingRun

    def kill_after_third(run, rounds):
        if run.episode == 3:   # checkpoint after episode 2, episode 3 logged too: die without warning
            os.kill(os.getpid(), signal.SIGKILL)

    model, tok = tiny_model()
    TrainingRun(TrainingConfig(**TINY), {folder!r}, model=model, tokenizer=tok).train(progress=False, callback=kill_after_third)
    """
)


def adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    killed = tmp_path / "killed"
    script = KILLED_RUN.format(tests=os.path.dirname(__file__), folder=str(killed))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not (killed / "done.json").exists()
    assert read_table(killed / "rounds.csv")["episode"].max() == 2  # logged past the checkpoint (episodes 0-1)

    resumed = train(killed)  # resumes from the checkpoint at episode 2
    straight = train(tmp_path / "straight")
    cols = ["episode", "round", "my_prev", "opp_prev", "answer", "my_move", "opp_move", "reward_game"]
    pd.testing.assert_frame_equal(resumed.log[cols], straight.log[cols])
    a, b = adapter_weights(resumed.adapter_dir), adapter_weights(straight.adapter_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_allclose(resumed.updates["objective/kl"], straight.updates["objective/kl"], rtol=1e-6, atol=1e-8)


def test_the_saved_adapter_reloads_with_plain_peft(tmp_path):
    from peft import PeftModel

    from moralkit.games import get_game
    from moralkit.llm.agent import LLMPlayer

    run = train(tmp_path / "run")
    trained = run.player().label_probabilities(get_game("prisoners_dilemma"), [0, 0, 1, 1], [0, 1, 0, 1])
    base, tok = tiny_model()
    reloaded = PeftModel.from_pretrained(base, str(run.adapter_dir))
    probs = LLMPlayer(reloaded, tok).label_probabilities(get_game("prisoners_dilemma"), [0, 0, 1, 1], [0, 1, 0, 1])
    np.testing.assert_allclose(probs, trained, rtol=1e-5, atol=1e-7)
    untuned = LLMPlayer(tiny_model()[0], tok).label_probabilities(get_game("prisoners_dilemma"), [0, 0, 1, 1], [0, 1, 0, 1])
    assert not np.allclose(untuned, trained, atol=1e-4)  # training did change the policy


def test_two_learners_share_one_base_model(tmp_path):
    run = train(tmp_path / "pair", opponent="learner", episodes=2)
    learner, opponent = run.trainers["learner"], run.trainers["opponent"]
    assert learner.model is opponent.model  # one base model, two adapters
    assert sorted(learner.model.peft_config) == ["default", "opponent"]
    log = run.log
    assert {"opp_answer", "opp_reward_game"} <= set(log.columns)
    assert (run.folder / "adapter_opponent" / "adapter_config.json").exists()


def test_other_settings_in_the_same_folder_are_refused(tmp_path):
    train(tmp_path / "run", episodes=2)
    model, tok = tiny_model()
    with pytest.raises(RunMismatchError, match="other settings"):
        TrainingRun(TrainingConfig(**{**TINY, "episodes": 2, "reward": "utilitarian"}), tmp_path / "run", model=model, tokenizer=tok)
    with pytest.raises(RunMismatchError, match="resume"):
        TrainingRun(TrainingConfig(**{**TINY, "episodes": 2}), tmp_path / "run", model=model, tokenizer=tok, resume=False)


def test_a_run_resumes_under_another_compile_mode_but_not_other_ppo_settings(tmp_path):
    """``compile`` only changes speed (``ppo.SPEED_FIELDS``): a run started eager may finish with CUDA graphs."""
    class Stop(Exception):
        pass

    def stop_after_two(run, rounds):
        if run.episode == 2:
            raise Stop

    model, tok = tiny_model()
    eager = {**TINY, "ppo_overrides": {"learning_rate": 5e-3, "compile": False}}
    run = TrainingRun(TrainingConfig(**eager), tmp_path / "run", model=model, tokenizer=tok)
    with pytest.raises(Stop):
        run.train(progress=False, callback=stop_after_two)
    assert not run.trainers["learner"].graphs  # compile=False
    run.release()
    graphs = {**TINY, "ppo_overrides": {"learning_rate": 5e-3, "compile": "graphs"}}
    model, tok = tiny_model()
    resumed = TrainingRun(TrainingConfig(**graphs), tmp_path / "run", model=model, tokenizer=tok).setup()
    assert resumed.episode == 2 and resumed.trainers["learner"].graphs and resumed.players["learner"].graphs
    resumed.train(progress=False)
    assert resumed.status == "finished" and resumed.ppo_changes() == []
    other = {**TINY, "ppo_overrides": {"learning_rate": 1e-2}}
    with pytest.raises(RunMismatchError, match="other settings"):
        TrainingRun(TrainingConfig(**other), tmp_path / "run", model=model, tokenizer=tok)


def test_ppo_compile_auto_records_graphs_where_they_pay(monkeypatch, tmp_path):
    """The default ``compile="auto"``: the eager trainer on a CPU; where ``graphs_pay`` (a recent GPU) the
    updates and the run's players go through the graphed passes (here padded and eager: no CUDA)."""
    import moralkit.ppo
    from moralkit.ppo import PPOConfig, PPOTrainer

    assert PPOConfig().compile == "auto" and PPOConfig.preset("paper").compile == "auto"
    model, tok = tiny_model()
    trainer = PPOTrainer(model, tok, PPOConfig.preset("smoke"))
    assert trainer.graphs is False and trainer._compiled_decoder is None
    with pytest.raises(ValueError, match="'auto', 'graphs'"):
        PPOConfig(compile="fast")

    monkeypatch.setattr(moralkit.ppo, "graphs_pay", lambda device: True)
    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**{**TINY, "episodes": 1}), tmp_path / "run", model=model, tokenizer=tok).setup()
    assert run.config.ppo_config().compile == "auto"
    assert run.trainers["learner"].graphs and run.players["learner"].graphs
    run.train(progress=False)
    assert run.trainers["learner"]._compiled_decoder[1].passes > 0


def test_ppo_tf32_auto_computes_a_runs_products_in_tf32_where_the_gpu_has_it(monkeypatch, tmp_path):
    """``PPOConfig.tf32="auto"``: off on a CPU; where ``tf32_pays`` (an Ampere-or-newer GPU) the run's
    episodes, sampling and updates, run with TF32 products, and the setting before is restored.
    ``tf32`` changes only rounding, so a run resumes under another value."""
    import torch

    import moralkit.ppo
    from moralkit.ppo import SPEED_FIELDS, PPOConfig

    assert PPOConfig().tf32 == "auto" and "tf32" in SPEED_FIELDS
    with pytest.raises(ValueError, match="tf32"):
        PPOConfig(tf32="fast")
    seen = []

    def look(run, rounds):
        seen.append(torch.backends.cuda.matmul.allow_tf32)

    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**{**TINY, "episodes": 1}), tmp_path / "cpu", model=model, tokenizer=tok)
    run.train(progress=False, callback=look)
    assert run.trainers["learner"].tf32 is False and seen == [False]

    monkeypatch.setattr(moralkit.ppo, "tf32_pays", lambda device: True)
    before = torch.backends.cuda.matmul.allow_tf32

    class Stop(Exception):
        pass

    def look_and_stop(run, rounds):
        look(run, rounds)
        if run.episode == 1:
            raise Stop

    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**{**TINY, "episodes": 2}), tmp_path / "gpu", model=model, tokenizer=tok)
    with pytest.raises(Stop):
        run.train(progress=False, callback=look_and_stop)
    assert run.trainers["learner"].tf32 is True and seen == [False, True]
    assert torch.backends.cuda.matmul.allow_tf32 == before  # restored, also when the loop is left by an error
    run.release()
    model, tok = tiny_model()
    off = {**TINY, "episodes": 2, "ppo_overrides": {**TINY["ppo_overrides"], "tf32": False}}
    run = TrainingRun(TrainingConfig(**off), tmp_path / "gpu", model=model, tokenizer=tok)  # resumes: speed only
    run.train(progress=False, callback=look)
    assert run.status == "finished" and run.trainers["learner"].tf32 is False
    assert seen[:2] == [False, True] and len(seen) > 2 and not any(seen[2:])


@pytest.mark.parametrize("compile", [False, "graphs"])
def test_sampling_through_a_merged_copy_trains_the_same_run(tmp_path, compile):
    """``PPOConfig.merged_sampling``: the run's player answers through the adapter merged into a copy of
    the weights, recomputed after every update -- the same answers and updates, up to rounding.
    Off by ``"auto"`` on a CPU; a speed setting, so a run may resume under another value."""
    import pandas as pd

    from moralkit.ppo import SPEED_FIELDS, PPOConfig

    assert PPOConfig().merged_sampling == "auto" and "merged_sampling" in SPEED_FIELDS
    with pytest.raises(ValueError, match="merged_sampling"):
        PPOConfig(merged_sampling="always")
    logs, runs, refreshes = {}, {}, []

    def look(run, rounds):  # after each episode's update: how often the player's copy was recomputed
        kept = run.trainers["learner"].model.__dict__.get("_moralkit_merged", {})
        refreshes.append(sum(copy.refreshes for copy in kept.values()))

    for merged in ("auto", True):
        model, tok = tiny_model()
        overrides = {**TINY["ppo_overrides"], "merged_sampling": merged, "compile": compile}
        run = TrainingRun(TrainingConfig(**{**TINY, "episodes": 3, "ppo_overrides": overrides}), tmp_path / str(merged),
                          model=model, tokenizer=tok)
        refreshes.clear()
        run.train(progress=False, callback=look)
        logs[merged] = pd.read_csv(run.folder / "rounds.csv")
        runs[merged] = run
    assert runs["auto"].trainers["learner"].merged_sampling is False  # auto: not on a CPU
    assert runs[True].players["learner"].merged and runs[True].trainers["learner"].merged_sampling
    layers = len(runs[True].trainers["learner"].adapter_parameters) // 2
    assert refreshes == [layers, 2 * layers, 3 * layers]  # every layer recomputed for each episode's sampling
    assert not runs[True].trainers["learner"].model._moralkit_merged  # freed when the run finished
    answers = logs["auto"]["answer"]
    assert answers.nunique() > 1 and answers.tolist() == logs[True]["answer"].tolist()
    for a, b in zip(runs["auto"].trainers["learner"].adapter_parameters, runs[True].trainers["learner"].adapter_parameters):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bad_configs_name_the_choices():
    with pytest.raises(ValueError, match="Valid names"):
        TrainingConfig(reward="kantian")
    with pytest.raises(ValueError, match="Valid names"):
        TrainingConfig(opponent="grim")
    with pytest.raises(ValueError, match="preset"):
        TrainingConfig(preset="turbo")
    with pytest.raises(ValueError, match="episodes"):
        TrainingConfig(episodes=0)


def test_training_summary_on_a_hand_made_log():
    log = pd.DataFrame({
        "episode": [0] * 4 + [1] * 4,
        "opp_prev": ["C", "C", "D", "D"] * 2,
        "my_move": ["D", "D", "D", "C", "C", "illegal", "D", "D"],
        "action_type": ["D|C", "D|C", "D|D", "C|D", "C|C", "illegal", "D|D", "D|D"],
    })
    s = training_summary(log, last=0.5)  # only episode 1
    assert s["rounds"] == 4 and s["legal"] == 0.75 and s["D"] == 0.5
    assert s["C_after_C"] == 0.5 and s["D_after_D"] == 1.0 and s["illegal"] == 0.25


def test_status_says_new_resumable_or_finished_and_memory_reports_count_the_parameters(tmp_path):
    class Stop(Exception):
        pass

    def stop_after_two(run, rounds):
        if run.episode == 2:  # a checkpoint was written after episode 2
            raise Stop

    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**TINY), tmp_path / "run", model=model, tokenizer=tok)
    assert run.status == "new"
    with pytest.raises(Stop):
        run.train(progress=False, callback=stop_after_two)
    assert TrainingRun(run.config, run.folder).status == "resumable"
    run.train(progress=False)
    assert run.status == "finished"

    memory = run.memory_report()
    assert list(memory.index) == ["base model (frozen, shared)", "LoRA adapter 'default' (learner)", "value head (learner)"]
    trainer = run.trainers["learner"]
    adapter = sum(p.numel() for p in trainer.adapter_parameters)
    total = sum(p.numel() for p in run.model.parameters())
    assert memory.loc["LoRA adapter 'default' (learner)", "parameters"] == adapter
    assert memory.loc["base model (frozen, shared)", "parameters"] == total - adapter
    assert memory.loc["base model (frozen, shared)", "MiB"] == pytest.approx((total - adapter) * 4 / 2**20)  # float32
    trained, frozen = run.parameter_counts()
    assert trained == adapter + sum(p.numel() for p in trainer.value_head.parameters())
    assert frozen == total - adapter
    run.release()
