"""Several training runs side by side on one model (moralkit.training.train_side_by_side, moralkit.ppo.ppo_update)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from moralkit.storage import read_table
from moralkit.training import TrainingConfig, TrainingRun, side_by_side_key, train_side_by_side
from test_training import TINY, tiny_model

# no dropout: then a run side by side must give exactly the numbers of the same run alone
NO_DROPOUT = {"learning_rate": 5e-3, "lora_dropout": 0.0, "value_head_dropout": 0.0, "ppo_epochs": 2}
CONDITIONS = [("game", 0, 4), ("deontological", 1, 4), ("utilitarian", 2, 2)]  # (reward, seed, episodes)


def configs(**ppo):
    # the second run discounts otherwise: numbers outside the shared passes stay each run's own
    return [TrainingConfig(**{**TINY, "reward": reward, "seed": seed, "episodes": episodes,
                              "ppo_overrides": {**NO_DROPOUT, **({"gamma": 0.5} if k == 1 else {}), **ppo}})
            for k, (reward, seed, episodes) in enumerate(CONDITIONS)]


def group(folder, cfgs):
    model, tok = tiny_model()
    runs = [TrainingRun(cfg, folder / f"run{k}") for k, cfg in enumerate(cfgs)]
    return train_side_by_side(runs, model=model, tokenizer=tok, progress=False)


def adapter_weights(run):
    from safetensors.torch import load_file

    return load_file(str(run.adapter_dir / "adapter_model.safetensors"))


@pytest.mark.parametrize("compile", ["auto", "graphs"])
def test_runs_side_by_side_give_the_numbers_of_the_same_runs_alone(tmp_path, compile, monkeypatch):
    """``graphs`` (what a recent GPU does; padded eager passes on a CPU): the answers of a round are
    sampled side by side too; ``auto`` on a CPU: each run samples alone, the updates are shared."""
    import moralkit.llm.agent as agent

    import moralkit.training as training

    shared_rounds, forgotten = [], []
    real = agent._sample_side_by_side
    monkeypatch.setattr(agent, "_sample_side_by_side", lambda *a: shared_rounds.append(len(a[0])) or real(*a))
    forget = training._forget_recordings
    monkeypatch.setattr(training, "_forget_recordings", lambda run: forgotten.append(run.folder.name) or forget(run))
    alone = []
    for k, cfg in enumerate(configs(compile=compile)):
        model, tok = tiny_model()
        alone.append(TrainingRun(cfg, tmp_path / "alone" / f"run{k}", model=model, tokenizer=tok).train(progress=False))
    together = group(tmp_path / "together", configs(compile=compile))
    assert [run.finished for run in together] == [True] * 3 and [run.episode for run in together] == [4, 4, 2]
    # 2 rounds per episode: 2 episodes of 3 runs, then 2 of 2 (the shorter run has left the group)
    assert shared_rounds == ([3] * 4 + [2] * 4 if compile == "graphs" else [])
    assert forgotten == ["run0", "run1", "run2"]  # once, when the short run left: the recordings of three runs' passes
    moved = 0
    for one, side in zip(alone, together):
        a, b = one.log, side.log
        assert len(a) == len(b) > 0 and a["answer"].tolist() == b["answer"].tolist()  # every sampled answer
        for column in ("my_payoff", "opp_payoff"):
            assert a[column].fillna(-99).tolist() == b[column].fillna(-99).tolist()
        ua, ub = one.updates, side.updates
        for column in ("objective/kl", "ppo/loss/total", "ppo/val/mean", "score/running_mean", "ppo/minibatches"):
            assert ua[column].astype(float).tolist() == pytest.approx(ub[column].astype(float).tolist(), rel=1e-3, abs=1e-5)
        wa, wb = adapter_weights(one), adapter_weights(side)
        assert wa.keys() == wb.keys()
        for key in wa:
            torch.testing.assert_close(wb[key], wa[key], atol=1e-5, rtol=1e-4)
            moved += int(wa[key].abs().max() > 0)  # B starts at zero: trained weights moved
    assert moved > 0
    # the adapters are the runs' own: side by side, each run learned something different
    first, second = adapter_weights(together[0]), adapter_weights(together[1])
    assert any(not torch.allclose(first[k], second[k]) for k in first)


def test_a_group_stopped_midway_resumes_to_the_same_end(tmp_path, monkeypatch):
    import moralkit.ppo as ppo

    cfgs = configs(lora_dropout=0.1)  # with dropout: the group's shared stream must be restored too
    whole = group(tmp_path / "whole", cfgs)
    calls = {"n": 0}
    real = ppo.ppo_update

    def dies_at_the_third(trainers, batches):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(trainers, batches)

    monkeypatch.setattr(ppo, "ppo_update", dies_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        group(tmp_path / "cut", cfgs)
    monkeypatch.setattr(ppo, "ppo_update", real)
    assert [TrainingRun(cfg, tmp_path / "cut" / f"run{k}").status for k, cfg in enumerate(cfgs)] == ["resumable"] * 2 + ["finished"]
    resumed = group(tmp_path / "cut", cfgs)
    for a, b in zip(whole, resumed):
        assert a.log["answer"].tolist() == b.log["answer"].tolist()
        for key, value in adapter_weights(a).items():
            torch.testing.assert_close(adapter_weights(b)[key], value, atol=1e-5, rtol=1e-4)


def test_a_run_killed_before_it_was_marked_finished_is_finished_by_its_group(tmp_path):
    runs = group(tmp_path / "g", configs())
    logged = [len(run.log) for run in runs]
    for run in runs[:2]:  # killed between the last checkpoint and done.json
        (run.folder / "done.json").unlink()
        shutil.rmtree(run.adapter_dir)
    again = group(tmp_path / "g", configs())
    assert [run.finished for run in again] == [True, True] and [len(run.log) for run in again] == logged[:2]
    assert all((run.adapter_dir / "adapter_model.safetensors").is_file() for run in again)


def test_only_runs_with_one_shape_go_side_by_side(tmp_path):
    base = TrainingConfig(**TINY)
    assert side_by_side_key(base) == side_by_side_key(TrainingConfig(**{**TINY, "reward": "utilitarian", "seed": 3}))
    assert side_by_side_key(TrainingConfig(**{**TINY, "games_per_update": 2})) != side_by_side_key(base)
    assert side_by_side_key(TrainingConfig(**{**TINY, "opponent": "learner"})) is None
    model, tok = tiny_model()
    runs = [TrainingRun(base, tmp_path / "a"), TrainingRun(TrainingConfig(**{**TINY, "rounds": 3}), tmp_path / "b")]
    with pytest.raises(ValueError, match="the same games per update and rounds"):
        train_side_by_side(runs, model=model, tokenizer=tok, progress=False)
    twice = [TrainingRun(base, tmp_path / "a"), TrainingRun(TrainingConfig(**{**TINY, "seed": 1}), tmp_path / "a")]
    with pytest.raises(ValueError, match="folder is given twice"):
        train_side_by_side(twice, model=model, tokenizer=tok, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any folder was made


def test_a_grid_trains_its_conditions_side_by_side_in_one_process_or_in_several(tmp_path):
    from moralkit.experiments import side_by_side_groups, train_grid

    kw = dict(profile="smoke", progress=False, model="random:smollm2-135m-narrow", episodes=2)
    rewards = ["game", "deontological", "utilitarian"]
    here = train_grid(rewards, out=tmp_path / "here", side_by_side=2, **kw)
    apart = train_grid(rewards, out=tmp_path / "apart", side_by_side=2, workers=2, **kw)
    for a, b in zip(here, apart):
        assert a.finished and b.finished and a.folder.name == b.folder.name
        pd.testing.assert_frame_equal(a.log, b.log)  # a group trains the same in its own process
    assert [len(g) for g in side_by_side_groups(here, 2)] == [2, 1]
    assert [len(g) for g in side_by_side_groups(here, 1)] == [1, 1, 1]
    mixed = here + [TrainingRun(TrainingConfig(**{**TINY, "opponent": "learner"}), tmp_path / "two_learners")]
    assert [len(g) for g in side_by_side_groups(mixed, 8)] == [3, 1]  # two learners: a group of its own
    with pytest.raises(ValueError, match="side_by_side must be at least 1"):
        train_grid(["game"], out=tmp_path / "x", side_by_side=0, **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_runs_side_by_side_through_recorded_cuda_graphs_match_the_runs_alone_on_a_gpu(tmp_path):
    cfgs = configs(compile="graphs", tf32=False)
    alone = []
    for k, cfg in enumerate(cfgs):
        model, tok = tiny_model()
        alone.append(TrainingRun(cfg, tmp_path / "alone" / f"run{k}", model=model.cuda(), tokenizer=tok).train(progress=False))
    model, tok = tiny_model()
    runs = [TrainingRun(cfg, tmp_path / "together" / f"run{k}") for k, cfg in enumerate(cfgs)]
    together = train_side_by_side(runs, model=model.cuda(), tokenizer=tok, progress=False)
    for one, side in zip(alone, together):
        assert one.log["answer"].tolist() == side.log["answer"].tolist()
        for key, value in adapter_weights(one).items():
            torch.testing.assert_close(adapter_weights(side)[key], value, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("labels", ["train", "mixed"])
def test_players_side_by_side_answer_as_each_would_alone(tokenizer, labels):
    """decide_side_by_side: one pass per step for all players, strays included, the answers of each alone."""
    import numpy as np
    from peft import LoraConfig, get_peft_model

    from moralkit.games import get_game
    from moralkit.llm.agent import LLMPlayer, decide_side_by_side
    from moralkit.llm.models import tiny_random_model
    from moralkit.llm.prompts import LabelSet

    label_set = "train" if labels == "train" else LabelSet("action1", "choice2", "mixed")
    game = get_game("prisoners_dilemma")
    names = ["a", "b", "c"]
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(tiny_random_model(tokenizer, seed=3), config, adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, config)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "lora_B" in key:
                p.normal_(0, 0.5)
    players = [LLMPlayer(model, tokenizer, label_set, adapter=name, graphs=True) for name in names]

    def requests(seed):
        rng = np.random.default_rng(seed)
        return [(game, rng.integers(2, size=6), rng.integers(2, size=6), np.random.default_rng([seed, k]))
                for k in range(len(players))]

    alone = [p.decide(*r) for p, r in zip(players, requests(5))]
    together = decide_side_by_side(players, requests(5))
    for a, b in zip(alone, together):
        assert a.answer_ids == b.answer_ids and a.prompt_ids == b.prompt_ids and list(a.moves) == list(b.moves)
    everything = [ids for d in alone for ids in d.answer_ids]
    assert len({tuple(ids) for ids in everything}) > 2  # noise answers: strays and several tokens, a real check
    if labels == "train":
        assert any(ids[0] != players[0]._guess for ids in everything)  # some strayed from the shared first token
    # players that sample in smaller batches alone (another order of random numbers) decide one after the other
    small = [LLMPlayer(model, tokenizer, label_set, adapter=name, graphs=True, batch_size=4) for name in names]
    assert [d.answer_ids for d in decide_side_by_side(small, requests(5))] == [
        p.decide(*r).answer_ids for p, r in zip(small, requests(5))]
    # other batch sizes per player cannot share passes: they decide one after the other, the same answers
    uneven = requests(5)
    uneven[0] = (game, uneven[0][1][:3], uneven[0][2][:3], np.random.default_rng([5, 0]))
    assert [d.answer_ids for d in decide_side_by_side(players, uneven)][1:] == [d.answer_ids for d in alone][1:]


def test_runs_side_by_side_launch_fewer_operations_per_run(monkeypatch):
    """benchmarks/kernel_counts.py: the device-free count behind the GPU estimate (docs/performance.md)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "kernel_counts.py"
    spec = importlib.util.spec_from_file_location("kernel_counts", path)
    counts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(counts)
    alone = counts.count("random:smollm2-135m-narrow", 1, 1, "smoke")
    three = counts.count("random:smollm2-135m-narrow", 3, 1, "smoke")
    assert alone["side_by_side"] == 1 and three["side_by_side"] == 3
    assert three["ops_per_run_update"] < 0.6 * alone["ops_per_run_update"], (alone, three)
    assert torch.optim.Adam.__name__ == "Adam"  # the count put torch's own back
