"""The speed machinery of issue 10, held to exactness: random-shape models, prefix caches, cheap
adapter switches, players that own their adapter, the compiled PPO epochs, the benchmark and
training several conditions at once."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from moralkit.games import get_game
from moralkit.llm.adapters import BASE, adapters_disabled, using_adapter
from moralkit.llm.agent import LLMPlayer, PrefixCache, forward_batch, split_pays
from moralkit.llm.models import RANDOM_SHAPES, load_model, random_model, tiny_random_model
import moralkit.ppo
from moralkit.ppo import PPOConfig, PPOTrainer
from moralkit.training import TrainingConfig, TrainingRun

PD = get_game("prisoners_dilemma")


@pytest.fixture(scope="module")
def model(tokenizer):
    action, one, two = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("action", "1", "2"))
    return tiny_random_model(tokenizer, seed=0, logit_bias={action: 15.0, one: 14.3, two: 14.0})


def game_prompts(tokenizer, model, n: int = 6, seed: int = 0) -> list[list[int]]:
    player = LLMPlayer(model, tokenizer)
    rng = np.random.default_rng(seed)
    messages = player.messages(PD, rng.integers(2, size=n), rng.integers(2, size=n), rng)
    return player.encode(player.chat_texts(messages))


# --------------------------------------------------------------------------- random-shape models
def test_random_models_have_the_shapes_they_are_named_after(tokenizer):
    model, tok = load_model("random:smollm2-135m-narrow", device="cpu")
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 64, 49152)
    assert tok.pad_token_id is not None and model.config.name_or_path == "random:smollm2-135m-narrow"
    full = RANDOM_SHAPES["smollm2-135m"]
    assert (full["hidden_size"], full["num_hidden_layers"], full["num_key_value_heads"]) == (576, 30, 3)
    # the paper's model's shape builds (one layer and a small vocabulary here, to stay light)
    gemma = random_model("gemma-2-2b", device="cpu", num_hidden_layers=1, vocab_size=512)
    assert type(gemma).__name__ == "Gemma2ForCausalLM" and gemma.config.head_dim == 256
    # same seed, same weights; the global random state is untouched
    state = torch.get_rng_state()
    a, b = random_model("smollm2-135m-narrow", device="cpu"), random_model("smollm2-135m-narrow", device="cpu")
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="smollm2-135m-narrow"):
        load_model("random:llama-70b")


# --------------------------------------------------------------------------- prefix caches
def test_a_prefix_cache_gives_the_full_pass_result_and_settles_on_the_shared_part(tokenizer, model):
    seqs = game_prompts(tokenizer, model, 6)
    with torch.no_grad():
        plain = forward_batch(model, seqs, pad_id=2, logits_to_keep=3, share_prefix=False).logits
        cache = PrefixCache()
        first = forward_batch(model, seqs[:1], pad_id=2, logits_to_keep=3, prefix_cache=cache)
        assert (cache.misses, cache.hits) == (1, 0) and len(cache) == len(seqs[0]) - 3  # one row: all but the kept
        second = forward_batch(model, seqs, pad_id=2, logits_to_keep=3, prefix_cache=cache)
        shared = len(cache)
        assert cache.misses == 2 and 8 <= shared < len(seqs[0]) - 3  # refilled with what all rows share
        third = forward_batch(model, seqs[3:], pad_id=2, logits_to_keep=3, prefix_cache=cache)
    assert (cache.hits, third.prefix_len, len(cache)) == (1, shared, shared)
    torch.testing.assert_close(first.logits, plain[:1], atol=1e-5, rtol=0)
    torch.testing.assert_close(second.logits, plain, atol=1e-5, rtol=0)
    torch.testing.assert_close(third.logits, plain[3:], atol=1e-5, rtol=0)
    # under autograd the cache is read but never filled (the weights are about to change)
    empty = PrefixCache()
    forward_batch(model, seqs, pad_id=2, logits_to_keep=3, prefix_cache=empty)
    assert len(empty) == 0 and repr(empty) == "PrefixCache(empty)"


def test_splitting_a_prefix_is_decided_per_device():
    assert split_pays("auto", torch.device("cpu")) and not split_pays("auto", torch.device("cuda"))
    assert split_pays(True, torch.device("cuda")) and not split_pays(False, torch.device("cpu"))
    with pytest.raises(ValueError, match="'auto'"):
        split_pays("sometimes", torch.device("cpu"))
    with pytest.raises(ValueError, match="share_prefix"):
        PPOConfig(share_prefix="yes")


def test_reusing_the_prefix_within_an_episode_samples_the_same_answers(tokenizer, model):
    player = LLMPlayer(model, tokenizer, batch_size=8)
    states = [(np.array([0, 1, 1]), np.array([0, 0, 1])), (np.array([1, 0, 1]), np.array([1, 1, 0]))]
    plain_rng, reuse_rng = np.random.default_rng(7), np.random.default_rng(7)
    plain = [player.decide(PD, m, o, plain_rng) for m, o in states]
    with player.reuse_prefix() as cache:
        reused = [player.decide(PD, m, o, reuse_rng) for m, o in states]
    assert cache.hits >= 1 and len(cache) == player.shared_prefix_length(PD)
    assert player._prefix_cache is None  # dropped at the end of the block
    for a, b in zip(plain, reused):
        assert a.answer_ids == b.answer_ids and a.prompt_ids == b.prompt_ids


# --------------------------------------------------------------------------- adapters
def test_the_cheap_base_switch_is_exactly_peft_disable_adapter(tokenizer):
    base = tiny_random_model(tokenizer, seed=1)
    trainer = PPOTrainer(base, tokenizer, PPOConfig.preset("smoke"))
    model = trainer.model
    with torch.no_grad():  # a trained-looking adapter, so that it changes the output
        for p in trainer.adapter_parameters:
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.3)
    ids = torch.tensor([game_prompts(tokenizer, model, 1)[0]])
    with torch.no_grad():
        tuned = model(input_ids=ids).logits
        with model.disable_adapter():
            reference = model(input_ids=ids).logits
        with adapters_disabled(model):
            cheap = model(input_ids=ids).logits
        with using_adapter(model, BASE):
            named = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert not torch.allclose(tuned, reference, atol=1e-4)
    assert torch.equal(cheap, reference) and torch.equal(named, reference)
    assert torch.equal(after, tuned)  # switched back on afterwards


def test_players_own_their_adapter_in_a_two_learner_run(tmp_path, tokenizer):
    """Getting the opponent's player no longer changes what the learner's player answers (issue 13)."""
    model = tiny_random_model(tokenizer, seed=0, logit_bias={4667: 15.0, 33: 14.3, 34: 14.0})
    cfg = TrainingConfig(opponent="learner", episodes=2, games_per_update=2, rounds=2, preset="smoke",
                         checkpoint_every=2, ppo_overrides={"learning_rate": 5e-2})
    run = TrainingRun(cfg, tmp_path / "pair", model=model, tokenizer=tokenizer).train(progress=False)
    learner = run.player("learner")
    before = learner.policy_table(PD)
    opponent = run.player("opponent")
    after = learner.policy_table(PD)
    pd.testing.assert_frame_equal(before, after)
    assert not np.allclose(opponent.policy_table(PD)["P(C)"], before["P(C)"], atol=1e-6)  # two different adapters


# --------------------------------------------------------------------------- compiled epochs
@pytest.mark.slow
def test_compiled_ppo_epochs_give_the_same_update(tokenizer):
    """``compile=True`` runs the epochs through torch.compile (minutes on a GPU to compile, then fast)."""
    prompts = game_prompts(tokenizer, tiny_random_model(tokenizer), 4, seed=2)
    answers = [[4667, 33], [4667, 34], [4667, 33], [2]]
    scores = [3.0, 0.0, 1.0, -6.0]
    cfg = PPOConfig.preset("smoke", mini_batch_size=4, ppo_epochs=2, learning_rate=1e-2,
                           lora_dropout=0.0, value_head_dropout=0.0)
    weights = {}
    for compiled in (False, True):
        trainer = PPOTrainer(tiny_random_model(tokenizer, layers=1), tokenizer, cfg.replace(compile=compiled))
        for _ in range(2):
            stats = trainer.step(prompts, answers, scores)
        weights[compiled] = [p.detach().clone() for p in trainer.trainable_parameters]
        assert stats["ppo/minibatches"] == 2
    for eager, compiled in zip(weights[False], weights[True]):
        torch.testing.assert_close(eager, compiled, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------- benchmark, workers
def test_the_benchmark_reports_where_the_time_goes(tmp_path):
    from moralkit.bench import benchmark_training, save_benchmark

    result = benchmark_training(preset="smoke", games_per_update=2, rounds=2, updates=1, model="random:smollm2-135m-narrow")
    assert result["device"].startswith(("cpu", "cuda")) and result["timed_updates"] == 1
    parts = result["sampling_s"] + result["scoring_s"] + result["optimiser_s"]
    assert 0 < parts <= result["seconds_per_update"] * 1.01
    assert result["optimiser_steps_per_update"] == 1  # smoke preset: 2 games x 2 rounds in minibatches of 4, 1 epoch
    path = save_benchmark(result, tmp_path / "bench.csv")
    save_benchmark(result, path)
    assert len(pd.read_csv(path)) == 2
    with pytest.raises(ValueError, match="other columns"):
        save_benchmark({"something": 1}, path)
    json.dumps(result)  # JSON-able for --json
    # the default "auto" records what it chose: on this device
    assert result["compile"] == ("graphs" if torch.cuda.is_available() else "auto")
    assert result["tf32"] is moralkit.ppo.tf32_pays("cuda" if torch.cuda.is_available() else "cpu")
    assert result["merged_sampling"] is torch.cuda.is_available()
    forced = benchmark_training(preset="smoke", games_per_update=1, rounds=2, updates=1, model="random:smollm2-135m-narrow",
                                tf32=True, merged=True)
    assert forced["tf32"] is True and forced["merged_sampling"] is True  # forced on (on a CPU tf32 changes nothing)
    grouped = benchmark_training(preset="smoke", games_per_update=2, rounds=2, updates=1,
                                 model="random:smollm2-135m-narrow", side_by_side=2)
    assert grouped["side_by_side"] == 2 and result["side_by_side"] == 1 and grouped["merged_sampling"] is False
    parts = grouped["sampling_s"] + grouped["scoring_s"] + grouped["optimiser_s"]  # each a run's share
    assert 0 < parts <= grouped["seconds_per_update"] * 1.01 and grouped["sampling_s"] > 0


def test_bench_compile_modes_on_the_command_line():
    import argparse

    from moralkit.cli import _compile_mode, _tf32_mode

    assert [_compile_mode(m) for m in ("off", "False", "graphs", "auto", "reduce-overhead")] == [
        False, False, "graphs", "auto", "reduce-overhead"]
    assert [_tf32_mode(m) for m in ("auto", "on", "OFF")] == ["auto", True, False]
    with pytest.raises(argparse.ArgumentTypeError, match="auto, on or off"):
        _tf32_mode("maybe")


def test_a_grid_trains_conditions_in_parallel_processes_with_the_same_results(tmp_path):
    from moralkit.experiments import train_grid

    kw = dict(profile="smoke", progress=False, model="random:smollm2-135m-narrow", episodes=2)
    alone = train_grid(["game", "deontological"], out=tmp_path / "one", workers=1, **kw)
    together = train_grid(["game", "deontological"], out=tmp_path / "two", workers=2, **kw)
    for a, b in zip(alone, together):
        assert b.finished and a.folder.name == b.folder.name
        pd.testing.assert_frame_equal(a.log, b.log)
    with pytest.raises(ValueError, match="workers"):
        train_grid(["game"], out=tmp_path / "x", workers=0, **kw)


def test_a_grid_that_ran_out_of_gpu_memory_says_what_to_change():
    from moralkit.experiments import grid_failure_report

    oom = RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB.")
    text = grid_failure_report([("deontological__tit_for_tat__seed0", oom), ("game__tit_for_tat__seed1", ValueError("x"))], 6)
    assert text.startswith("2 of 6 run(s) failed") and "fewer --workers" in text and "compile=False" in text
    assert "resumes the failed runs" in text
    assert "fewer --workers" not in grid_failure_report([("game__tit_for_tat__seed1", ValueError("x"))], 6)


def test_reading_the_shared_first_label_token_ahead_samples_exactly_as_token_by_token(tokenizer):
    """``action`` is read with the prompt; rows that sampled another first token get a second pass."""

    class TokenByToken(LLMPlayer):
        _guess = None  # the plain decoder: one model call per answer token

    action, one, two = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("action", "1", "2"))
    # "action" likely but not certain, so that both kinds of rows occur
    model = tiny_random_model(tokenizer, seed=0, logit_bias={action: 15.0, one: 14.3, two: 14.0})
    fast, plain = LLMPlayer(model, tokenizer), TokenByToken(model, tokenizer)
    assert fast._guess == action and plain._guess is None
    my_prev, opp_prev = np.array([0, 1, 1, 0] * 6), np.array([0, 0, 1, 1] * 6)
    a = fast.decide(PD, my_prev, opp_prev, np.random.default_rng(5))
    b = plain.decide(PD, my_prev, opp_prev, np.random.default_rng(5))
    firsts = {ids[0] for ids in a.answer_ids}
    assert action in firsts and len(firsts) > 1  # in format and astray, both
    assert a.answer_ids == b.answer_ids and list(a.moves) == list(b.moves)


def test_small_models_stay_float32_on_a_gpu(monkeypatch):
    """Kernel launches, not arithmetic, bound a 135M model on a GPU: bfloat16 casts only add kernels."""
    from transformers import AutoConfig

    from moralkit.llm import models

    monkeypatch.setattr(models, "native_cuda_bf16", lambda device=None: True)  # an Ampere-or-newer GPU
    cuda = torch.device("cuda")
    small = models.estimate_parameters(AutoConfig.for_model(**RANDOM_SHAPES["smollm2-135m"]))
    large = models.estimate_parameters(AutoConfig.for_model(**RANDOM_SHAPES["gemma-2-2b"]))
    assert 130e6 < small < 160e6 and 2.5e9 < large < 3.0e9
    assert models.default_dtype(cuda, small) == torch.float32
    assert models.default_dtype(cuda, large) == torch.bfloat16
    assert models.default_dtype(cuda) == torch.bfloat16  # size unknown: the large-model choice
    monkeypatch.setattr(models, "native_cuda_bf16", lambda device=None: False)  # a T4
    assert models.default_dtype(cuda, large) == torch.float32


# --------------------------------------------------------------------------- CUDA graphs
def test_padded_decoder_passes_give_the_eager_outputs_and_gradients(tokenizer):
    """What ``compile="graphs"`` replays: left-padded to a fixed length, its own 4-D mask -- exact at real tokens."""
    from peft import get_peft_model

    from moralkit.llm.graphs import GraphedDecoder
    from moralkit.ppo import lora_config

    model = get_peft_model(tiny_random_model(tokenizer, layers=2), lora_config(PPOConfig.preset("smoke", lora_dropout=0.0)))
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)  # LoRA's B starts at zero: make the adapter matter
    seqs = game_prompts(tokenizer, model, 3, seed=4)
    seqs = [seqs[0][:150], seqs[1][:137], seqs[2][:161]]  # three lengths, none a multiple of 32
    decoder = model.get_base_model().get_decoder()
    graphed = GraphedDecoder(decoder, pad_id=0, length_step=32, capture=False)
    results = []
    for replace in (False, True):
        model.zero_grad()
        if replace:
            decoder.forward = graphed
        try:
            logits = forward_batch(model, seqs, pad_id=0, logits_to_keep=5, share_prefix=False).logits
        finally:
            decoder.__dict__.pop("forward", None)
        logits.float().logsumexp(-1).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results.append((logits.detach(), grads))
    assert graphed.passes == 1 and graphed.fallbacks == 0
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-5, rtol=1e-5)
    for eager, padded in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(padded, eager, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # a pass without gradients (scoring) is padded too, and keyed by the adapter state
        eager = forward_batch(model, seqs, pad_id=0, logits_to_keep=5, share_prefix=False).logits
        decoder.forward = graphed
        try:
            padded = forward_batch(model, seqs, pad_id=0, logits_to_keep=5, share_prefix=False).logits
            on = graphed.state()
            with model.disable_adapter():
                off = graphed.state()
                reference = forward_batch(model, seqs, pad_id=0, logits_to_keep=5, share_prefix=False).logits
        finally:
            decoder.__dict__.pop("forward", None)
        with model.disable_adapter():
            reference_eager = forward_batch(model, seqs, pad_id=0, logits_to_keep=5, share_prefix=False).logits
    assert graphed.passes == 3 and graphed.fallbacks == 0 and "padded, eager" in repr(graphed)
    torch.testing.assert_close(padded, eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reference, reference_eager, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(reference, eager, atol=1e-3)  # the adapter matters: the check can fail
    assert on == (False, False, ("default",)) and off == (False, True, ("default",))


def train_eager_and_graphed(tokenizer, updates: int, device: str = "cpu"):
    """The same PPO updates with eager epochs and with ``compile="graphs"``: (weights by mode, the graphed decoder)."""
    prompts = game_prompts(tokenizer, tiny_random_model(tokenizer), 4, seed=2)
    answers = [[4667, 33], [4667, 34], [4667, 33], [2]]
    scores = [3.0, 0.0, 1.0, -6.0]
    cfg = PPOConfig.preset("smoke", mini_batch_size=2, ppo_epochs=2, learning_rate=1e-2, lora_dropout=0.0,
                           value_head_dropout=0.0, share_prefix=False)
    weights = {}
    for mode in (False, "graphs"):
        trainer = PPOTrainer(tiny_random_model(tokenizer, layers=1).to(device), tokenizer, cfg.replace(compile=mode))
        for _ in range(updates):
            trainer.step(prompts, answers, scores)
        weights[mode] = [p.detach().float().cpu().clone() for p in trainer.trainable_parameters]
    return weights, trainer._compiled_decoder[1]


def test_graphs_option_trains_like_the_eager_epochs(tokenizer):
    """``PPOConfig(compile="graphs")``: the PPO epochs run the padded (on CUDA: recorded) decoder, same update."""
    weights, graphed = train_eager_and_graphed(tokenizer, updates=2)
    # 2 updates x (2 scoring passes + 2 epochs x 2 minibatches)
    assert graphed.passes == 2 * (2 + 2 * 2) and graphed.fallbacks == 0
    for eager, padded in zip(weights[False], weights["graphs"]):
        torch.testing.assert_close(padded, eager, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="'graphs'"):
        PPOConfig(compile="graph")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_recorded_graphs_replay_the_eager_pass_on_a_gpu(tokenizer):
    """On a GPU: one graph per (rows, padded length), replays match the eager pass, backward included."""
    from moralkit.llm.graphs import GraphedDecoder

    weights, graphed = train_eager_and_graphed(tokenizer, updates=3, device="cuda")
    assert isinstance(graphed, GraphedDecoder) and graphed.capture and graphed.captured
    assert graphed.passes == 3 * (2 + 2 * 2) and graphed.fallbacks == 0
    # scoring: the adapter's pass and the reference pass (adapters disabled) are two recordings
    assert len({key[2] for key in graphed.captured_forward}) == 2
    for eager, replayed in zip(weights[False], weights["graphs"]):
        torch.testing.assert_close(replayed, eager, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("labels", ["train", "mixed"])
def test_players_sampling_through_graphed_passes_give_the_same_answers(tokenizer, model, labels):
    """``LLMPlayer(graphs=True)``: whole padded rows, no cache (replayable as CUDA graphs) -- the same answers.

    ``train`` takes the read-ahead path (``action`` shared by both labels; the biased model answers in
    format, a random one strays), ``mixed`` the token-by-token one (no shared first token)."""
    from moralkit.llm.graphs import graphed_logits
    from moralkit.llm.prompts import LabelSet

    label_set = "train" if labels == "train" else LabelSet("action1", "choice2", "mixed")
    for m in (model, tiny_random_model(tokenizer, seed=3)):
        answers = {}
        for graphs in (False, True):
            player = LLMPlayer(m, tokenizer, label_set, graphs=graphs)
            rng = np.random.default_rng(7)
            messages = player.messages(PD, rng.integers(2, size=6), rng.integers(2, size=6), rng)
            answers[graphs] = player.answer(messages + messages[:2], np.random.default_rng(11)).answer_ids
        assert answers[True] == answers[False]
        assert len({tuple(a) for a in answers[False]}) > 1  # the answers differ between rows: a real check
    forward = graphed_logits(model)
    assert forward.passes > 0 and not forward.capture and "padded, eager" in repr(forward)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_recorded_sampling_graphs_give_the_eager_answers_on_a_gpu(tokenizer):
    from moralkit.llm.graphs import graphed_logits

    m = tiny_random_model(tokenizer, seed=3).cuda()
    answers = {}
    for graphs in (False, True):
        player = LLMPlayer(m, tokenizer, graphs=graphs)
        rng = np.random.default_rng(7)
        messages = player.messages(PD, rng.integers(2, size=8), rng.integers(2, size=8), rng)
        answers[graphs] = [player.answer(messages, np.random.default_rng(s)).answer_ids for s in range(3)]
    assert answers[True] == answers[False]
    assert graphed_logits(m).capture and graphed_logits(m).captured


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_recorded_sampling_graphs_of_a_merged_copy_give_the_eager_answers_on_a_gpu(tokenizer):
    """A recording made on the merged copy replays the adapter as it is now: the copy is refreshed in place."""
    from peft import LoraConfig, get_peft_model

    from moralkit.llm.graphs import graphed_logits

    m = get_peft_model(tiny_random_model(tokenizer, seed=3), LoraConfig(r=4, target_modules="all-linear")).cuda()

    def nudge(scale: float) -> None:  # a new adapter, changed in place as an optimiser step changes it
        with torch.no_grad():
            for name, param in m.named_parameters():
                if "lora_B" in name:
                    param.normal_(std=scale, generator=torch.Generator("cuda").manual_seed(int(scale * 100)))

    answers = {}
    for graphs, merged in ((False, False), (True, True)):
        player = LLMPlayer(m, tokenizer, graphs=graphs, merged=merged)
        rng = np.random.default_rng(7)
        messages = player.messages(PD, rng.integers(2, size=8), rng.integers(2, size=8), rng)
        answers[graphs] = []
        for scale in (0.5, 0.8):
            nudge(scale)
            answers[graphs] += [player.answer(messages, np.random.default_rng(s)).answer_ids for s in range(2)]
    assert answers[True] == answers[False] and answers[False][0] != answers[False][2]
    assert any("merged" in repr(key) for key in graphed_logits(m).captured)


@pytest.mark.skipif(not __import__("pathlib").Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_grid_workers_stop_when_the_grid_process_is_killed(tmp_path):
    """A killed grid leaves no workers training on unseen: each exits within seconds, its run resumable."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = (
        "from moralkit.experiments import train_grid\n"
        f"train_grid(['game', 'deontological'], out={str(tmp_path / 'grid')!r}, workers=2, profile='smoke',"
        " progress=False, model='random:smollm2-135m-narrow', episodes=500)\n"
    )
    grid = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "MORALKIT_PROFILE": "smoke"})

    def children(pid: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
        except OSError:
            return False

    try:
        deadline = time.monotonic() + 120
        logs = list((tmp_path / "grid").glob("*/rounds.csv"))
        while time.monotonic() < deadline and len(logs) < 2:  # both workers are training
            time.sleep(0.5)
            logs = list((tmp_path / "grid").glob("*/rounds.csv"))
        assert len(logs) == 2, "the grid's workers did not start training within 2 minutes"
        # the pool's workers (the spawn start-up helper, if any, is not one of them)
        workers = [c for c in children(grid.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
        assert len(workers) == 2
        os.kill(grid.pid, signal.SIGKILL)
        grid.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(w) for w in workers):
            time.sleep(0.5)
        assert not any(alive(w) for w in workers), "workers outlived the killed grid"
    finally:
        if grid.poll() is None:
            grid.kill()
    from moralkit.training import TrainingConfig, TrainingRun

    for folder in (tmp_path / "grid").iterdir():
        if (folder / "config.json").exists():
            config = TrainingConfig.from_dict(json.loads((folder / "config.json").read_text()))
            assert TrainingRun(config, folder).status in ("new", "resumable")
