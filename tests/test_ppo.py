"""Tests for moralkit.ppo: hand-computed pieces, scoring, dedup exactness, checkpoints, adapters, learning.

All models are tiny randomly initialised Llamas built here (no download); the file runs in well
under a minute on 2 CPU cores.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

from moralkit import ppo
from moralkit.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PPOConfig,
    PPOTrainer,
    RunningMoments,
    ValueHead,
    gae_advantages,
    masked_whiten,
    per_token_rewards,
    ppo_losses,
    score_answers,
)

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

PAD, BOS, EOS = 0, 1, 2


def tiny_model(seed: int = 0, initializer_range: float = 0.02) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        initializer_range=initializer_range,
    )
    return transformers.LlamaForCausalLM(config).eval()


def random_batch(n: int, seed: int, max_answer: int = 3) -> tuple[list[list[int]], list[list[int]], list[float]]:
    g = torch.Generator().manual_seed(seed)
    prompts, answers = [], []
    for _ in range(n):
        p_len = int(torch.randint(2, 9, (1,), generator=g))
        a_len = int(torch.randint(1, max_answer + 1, (1,), generator=g))
        prompts.append(torch.randint(3, 64, (p_len,), generator=g).tolist())
        answers.append(torch.randint(3, 64, (a_len,), generator=g).tolist())
    scores = torch.randn(n, generator=g).tolist()
    return prompts, answers, scores


PREFIX = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]  # like the chat template + rules all prompts share


def shared_prefix_batch(n: int, seed: int) -> tuple[list[list[int]], list[list[int]], list[float]]:
    prompts, answers, scores = random_batch(n, seed)
    return [PREFIX + p for p in prompts], answers, scores


def no_dropout(config: PPOConfig) -> PPOConfig:
    return config.replace(lora_dropout=0.0, value_head_dropout=0.0)


def adapter_snapshot(trainer: PPOTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in trainer.adapter_parameters]


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


def test_paper_preset_matches_spec():
    c = PPOConfig.preset("paper")
    assert c.name == "paper"
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.lora_target_modules) == (64, 32, 0.05, "all-linear")
    assert c.learning_rate == 1.41e-5
    assert (c.mini_batch_size, c.ppo_epochs) == (5, 4)
    assert (c.cliprange, c.cliprange_value, c.vf_coef, c.gamma, c.lam) == (0.2, 0.2, 0.1, 1.0, 0.95)
    assert (c.init_kl_coef, c.adaptive_kl, c.kl_target, c.kl_horizon) == (0.2, True, 6.0, 10000.0)
    assert c.use_score_scaling and c.use_score_norm and c.whiten_advantages
    assert c.ratio_threshold == 10.0 and c.max_grad_norm is None


def test_presets_registry_and_overrides():
    assert set(PPOConfig.presets()) >= {"paper", "cpu", "smoke"}
    cpu = PPOConfig.preset("cpu", learning_rate=1e-4)
    assert cpu.learning_rate == 1e-4 and cpu.name == "cpu" and cpu.lora_r < 64
    with pytest.raises(ValueError, match="unknown PPO preset 'gpu!'.*paper"):
        PPOConfig.preset("gpu!")
    with pytest.raises(ValueError, match="autocast_dtype"):
        PPOConfig(autocast_dtype="fp8")
    assert PPOConfig.from_dict(cpu.to_dict()) == cpu


# --------------------------------------------------------------------------------------------
# KL controllers and running moments
# --------------------------------------------------------------------------------------------


def test_adaptive_kl_controller_by_hand():
    kl = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    kl.update(9.0, n_steps=5)  # error 0.5 clipped to 0.2 -> x (1 + 0.2 * 5 / 10000)
    assert kl.value == pytest.approx(0.2 * 1.0001, rel=1e-12)
    kl.update(6.6, n_steps=5)  # error 0.1 -> x 1.00005
    assert kl.value == pytest.approx(0.2 * 1.0001 * 1.00005, rel=1e-12)
    kl.update(0.0, n_steps=100)  # error -1 clipped to -0.2 -> x 0.998
    assert kl.value == pytest.approx(0.2 * 1.0001 * 1.00005 * 0.998, rel=1e-12)
    copy = AdaptiveKLController(1.0, 1.0, 1.0)
    copy.load_state_dict(kl.state_dict())
    assert copy.state_dict() == kl.state_dict()

    fixed = FixedKLController(0.3)
    fixed.update(100.0, 5)
    assert fixed.value == 0.3
    assert FixedKLController(0.0).load_state_dict(fixed.state_dict()) is None


def test_running_moments_combine_batches_exactly():
    rm = RunningMoments()
    batch_mean, batch_std = rm.update(torch.tensor([1.0, 2.0, 3.0]))
    assert (batch_mean, batch_std) == pytest.approx((2.0, 1.0))
    rm.update(torch.tensor([4.0, 5.0]))
    # the same as the statistics of [1, 2, 3, 4, 5]
    assert rm.mean == pytest.approx(3.0, abs=1e-12)
    assert rm.var == pytest.approx(2.0, abs=1e-12)  # biased
    assert rm.std == pytest.approx(math.sqrt(2.5), abs=1e-12)  # unbiased
    many = torch.randn(100, generator=torch.Generator().manual_seed(0)) * 3 + 1
    rm2 = RunningMoments()
    for chunk in many.split(7):
        rm2.update(chunk)
    assert rm2.mean == pytest.approx(many.double().mean().item(), abs=1e-12)
    assert rm2.std == pytest.approx(many.double().std().item(), abs=1e-12)
    restored = RunningMoments()
    restored.load_state_dict(rm2.state_dict())
    assert restored.state_dict() == rm2.state_dict()


# --------------------------------------------------------------------------------------------
# pure functions
# --------------------------------------------------------------------------------------------


def test_per_token_rewards_by_hand():
    scores = torch.tensor([1.0, -2.0])
    logp = torch.tensor([[-1.0, -2.0, 7.0], [-0.5, 9.0, 9.0]])
    ref = torch.tensor([[-1.5, -1.0, 3.0], [-0.5, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    rewards = per_token_rewards(scores, logp, ref, mask, kl_coef=0.1)
    # kl = [[0.5, -1], [0]] -> -0.1 * kl, score on the last real token, padding 0
    expected = torch.tensor([[-0.05, 0.1 + 1.0, 0.0], [-2.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)


def test_gae_advantages_by_hand():
    values = torch.tensor([[0.5, 1.0, 99.0]])  # the third column is padding: ignored
    rewards = torch.tensor([[0.0, 2.0, 99.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae_advantages(values, rewards, mask, gamma=1.0, lam=0.95, whiten=False)
    # t=1: delta = 2 + 0 - 1 = 1 -> A1 = 1;  t=0: delta = 0 + 1 - 0.5 = 0.5 -> A0 = 0.5 + 0.95 * 1
    torch.testing.assert_close(adv[:, :2], torch.tensor([[1.45, 1.0]]))
    torch.testing.assert_close(ret[:, :2], torch.tensor([[1.95, 2.0]]))
    # whitened: mean 1.225, unbiased var 0.10125 -> +-0.225 / sqrt(0.10125)
    white, _ = gae_advantages(values, rewards, mask, gamma=1.0, lam=0.95)
    z = 0.225 / math.sqrt(0.10125 + 1e-8)
    torch.testing.assert_close(white[:, :2], torch.tensor([[z, -z]]))
    # gamma and lambda enter as in the formula
    adv2, _ = gae_advantages(values, rewards, mask, gamma=0.5, lam=0.5, whiten=False)
    # t=1: delta = 2 - 1 = 1;  t=0: delta = 0 + 0.5 * 1 - 0.5 = 0 -> A0 = 0 + 0.25 * 1
    torch.testing.assert_close(adv2[:, :2], torch.tensor([[0.25, 1.0]]))


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 1000.0]])
    m = torch.tensor([[1.0, 1.0, 0.0]])
    w = masked_whiten(x, m)
    # mean 2, unbiased variance (1 + 1) / (2 - 1) = 2
    torch.testing.assert_close(w[:, :2], torch.tensor([[-1.0, 1.0]]) / math.sqrt(2 + 1e-8), atol=1e-6, rtol=0)


def test_ppo_losses_by_hand():
    old = torch.tensor([[0.0, 0.0]])
    new = torch.log(torch.tensor([[1.5, 0.5]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[1.0, 0.6]])
    old_values = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0]])
    mask = torch.ones(1, 2)
    loss, stats = ppo_losses(new, old, values, old_values, adv, returns, mask, 0.2, 0.2, 0.1)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(-0.5, -0.8) = -0.5 (not clipped)
    assert stats["policy_loss"] == pytest.approx(-0.85)
    assert stats["clipfrac"] == pytest.approx(0.5)
    # value 1.0 clipped to 0.7: max(1.0, 1.69) = 1.69 (clipped); 0.6 inside the band: 0.36
    assert stats["value_loss"] == pytest.approx(0.5 * (1.69 + 0.36) / 2)
    assert stats["value_clipfrac"] == pytest.approx(0.5)
    assert loss.item() == pytest.approx(-0.85 + 0.1 * 0.5125)
    assert stats["ratio_mean"] == pytest.approx(1.0)
    assert stats["approxkl"] == pytest.approx(0.25 * (math.log(1.5) ** 2 + math.log(0.5) ** 2))
    assert stats["policykl"] == pytest.approx(-(math.log(1.5) + math.log(0.5)) / 2)
    # padding does not count
    pad = torch.tensor([[1.0, 0.0]])
    _, stats_pad = ppo_losses(new, old, values, old_values, adv, returns, pad, 0.2, 0.2, 0.1)
    assert stats_pad["policy_loss"] == pytest.approx(-1.2)


def test_value_head_shape_and_dtype():
    head = ValueHead(8, dropout=0.0)
    out = head(torch.randn(2, 3, 8, dtype=torch.bfloat16))
    assert out.shape == (2, 3) and out.dtype == torch.float32


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_score_answers_matches_a_plain_forward_pass(shared):
    model = tiny_model()
    head = ValueHead(32, dropout=0.0)
    prompts, answers, _ = (shared_prefix_batch if shared else random_batch)(6, seed=1)
    scored = score_answers(model, head, prompts, answers, with_entropy=True)
    assert scored.prefix_len == (len(PREFIX) if shared else 0)
    assert scored.logprobs.shape == scored.values.shape == scored.mask.shape == (6, 3)
    with torch.no_grad():
        for i, (p, a) in enumerate(zip(prompts, answers)):
            out = model(torch.tensor([p + a]), output_hidden_states=True)
            logp = torch.log_softmax(out.logits[0].float(), -1)
            for j, token in enumerate(a):
                pos = len(p) - 1 + j  # the position that predicts answer token j
                assert scored.logprobs[i, j].item() == pytest.approx(logp[pos, token].item(), abs=1e-5)
                value = head(out.hidden_states[-1][0, pos])
                assert scored.values[i, j].item() == pytest.approx(value.item(), abs=1e-5)
                entropy = -(logp[pos].exp() * logp[pos]).sum()
                assert scored.entropy[i, j].item() == pytest.approx(entropy.item(), abs=1e-5)
            assert scored.mask[i].tolist() == [1.0] * len(a) + [0.0] * (3 - len(a))
            assert (scored.logprobs[i, len(a) :] == 0).all()
    with pytest.raises(ValueError, match="empty answer"):
        score_answers(model, head, [[5, 6]], [[]])


def test_fast_paths_are_exact_for_scores_and_gradients():
    """Dedup + shared prefix give the same log-probs, values and gradients as scoring every row."""
    prompts, answers, _ = shared_prefix_batch(4, seed=2)
    idx = [0, 1, 0, 2, 3, 3, 0, 1, 3, 2]  # 10 rows, 4 distinct
    prompts, answers = [prompts[i] for i in idx], [answers[i] for i in idx]
    cfg = no_dropout(PPOConfig.preset("smoke"))
    scored, grads = {}, {}
    for fast in (True, False):
        t = PPOTrainer(tiny_model(), PAD, cfg.replace(deduplicate=fast, share_prefix=fast))
        t.model.train()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():  # non-zero adapter weights, so that every gradient path is exercised
            for p in t.adapter_parameters:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        s = t.score(prompts, answers, with_values=True)
        assert (s.n_unique, s.prefix_len) == ((4, len(PREFIX)) if fast else (10, 0))
        adv = torch.linspace(-1, 1, len(idx)).unsqueeze(1).expand_as(s.mask)
        loss, _ = ppo_losses(
            s.logprobs, s.logprobs.detach() - 0.05, s.values, s.values.detach() + 0.1, adv,
            torch.ones_like(adv), s.mask, 0.2, 0.2, 0.1,
        )
        loss.backward()
        grads[fast] = [p.grad.clone() for p in t.trainable_parameters]
        scored[fast] = s
    torch.testing.assert_close(scored[True].logprobs, scored[False].logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(scored[True].values, scored[False].values, atol=1e-5, rtol=0)
    for g_fast, g_plain in zip(grads[True], grads[False]):
        torch.testing.assert_close(g_fast, g_plain, atol=1e-5, rtol=1e-4)


def test_fast_paths_give_the_same_update():
    prompts, answers, _ = shared_prefix_batch(3, seed=3)
    prompts, answers = prompts * 4, answers * 4  # 12 rows, 3 distinct
    scores = torch.randn(12, generator=torch.Generator().manual_seed(1)).tolist()  # copies differ in score
    cfg = no_dropout(PPOConfig.preset("smoke", mini_batch_size=6, ppo_epochs=2, learning_rate=1e-2))
    weights = {}
    for fast in (True, False):
        t = PPOTrainer(tiny_model(), PAD, cfg.replace(deduplicate=fast, share_prefix=fast))
        for _ in range(2):
            stats = t.step(prompts, answers, scores)
        assert stats["batch/unique_rows"] == (3 if fast else 12)
        assert stats["batch/shared_prefix"] == (len(PREFIX) if fast else 0)
        weights[fast] = adapter_snapshot(t) + [p.detach().clone() for p in t.value_head.parameters()]
    for a, b in zip(weights[True], weights[False]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def other_architecture(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    common = dict(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
    )
    if kind == "gemma2":  # sliding window shorter than the sequences: prefix sharing must switch off
        config = transformers.Gemma2Config(
            **common, num_key_value_heads=2, head_dim=8, sliding_window=16, attn_implementation="eager"
        )
        return transformers.Gemma2ForCausalLM(config).eval()
    if kind == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**common, num_key_value_heads=2)).eval()
    if kind == "gpt2":  # absolute position embeddings: position ids must be right
        config = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, pad_token_id=PAD)
        return transformers.GPT2LMHeadModel(config).eval()
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["qwen2", "gemma2", "gpt2"])
def test_other_architectures_score_exactly(kind):
    model = other_architecture(kind)
    head = ValueHead(32, dropout=0.0)
    prompts, answers, scores = shared_prefix_batch(5, seed=11)
    fast = score_answers(model, head, prompts, answers)
    assert fast.prefix_len == (0 if kind == "gemma2" else len(PREFIX))
    for i, (p, a) in enumerate(zip(prompts, answers)):
        alone = score_answers(model, head, [p], [a])
        torch.testing.assert_close(fast.logprobs[i, : len(a)], alone.logprobs[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(fast.values[i, : len(a)], alone.values[0], atol=1e-5, rtol=0)
    stats = PPOTrainer(model, PAD, PPOConfig.preset("smoke", lora_target_modules="all-linear")).step(
        prompts, answers, scores
    )
    assert all(math.isfinite(v) for v in stats.values())


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------


def test_step_runs_and_reports(capsys):
    t = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("paper"))
    assert "preset='paper'" in repr(t) and "trainable=" in repr(t)
    prompts, answers, scores = random_batch(5, seed=4)
    answers[2] = []  # the model emitted EOS straight away
    before = adapter_snapshot(t)
    stats = t.step(prompts, answers, scores)
    assert stats["step"] == 1 and stats["ppo/minibatches"] == 4  # 4 epochs x 1 minibatch
    assert stats["objective/kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B starts at 0
    assert stats["objective/kl_coef"] == 0.2 and stats["objective/kl_coef_next"] < 0.2
    assert stats["score/norm_mean"] == pytest.approx(0.0, abs=1e-6)
    assert stats["batch/answer_tokens"] == sum(max(len(a), 1) for a in answers)
    assert all(math.isfinite(v) for v in stats.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, adapter_snapshot(t)))
    assert not t.model.training  # left in eval mode for sampling
    # the empty answer was scored as [eos]
    s = t.score(prompts[2:3], [[]])
    torch.testing.assert_close(s.logprobs, t.score(prompts[2:3], [[EOS]]).logprobs)


def test_step_with_a_single_one_token_row():
    t = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("smoke"))
    stats = t.step([[5, 6, 7]], [[9]], [1.0])
    assert all(math.isfinite(v) for v in stats.values())


def test_step_leaves_global_rng_alone():
    t = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("smoke"))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    t.step(*random_batch(8, seed=5))
    torch.testing.assert_close(torch.rand(3), expected)


def test_ratio_threshold_skips_minibatches():
    cfg = PPOConfig.preset("smoke", ratio_threshold=0.5)  # every ratio (~1) is "too large"
    t = PPOTrainer(tiny_model(), PAD, cfg)
    before = adapter_snapshot(t)
    with pytest.warns(UserWarning, match="ratio_threshold"):
        stats = t.step(*random_batch(8, seed=6))
    assert stats["ppo/skipped_minibatches"] == stats["ppo/minibatches"] == 2
    assert all(torch.equal(a, b) for a, b in zip(before, adapter_snapshot(t)))


def test_target_kl_ends_the_update_once_the_policy_has_moved_too_far():
    """Early stopping (SB3/CleanRL's ``target_kl``): the first minibatch finds the policy unmoved and
    steps; the next finds it moved by more than 1.5 x target_kl, takes no step, and the update ends."""
    cfg = no_dropout(PPOConfig.preset("smoke", learning_rate=1e-2, ppo_epochs=2))  # 2 epochs x 2 minibatches
    batch = random_batch(8, seed=6)
    free = PPOTrainer(tiny_model(), PAD, cfg).step(*batch)
    assert (free["ppo/minibatches"], free["ppo/skipped_minibatches"]) == (4, 0)
    assert free["ppo/policy/approxkl"] > 1e-6  # what the later minibatches see without the stop
    stopping = PPOTrainer(tiny_model(), PAD, cfg.replace(target_kl=1e-6))
    before = adapter_snapshot(stopping)
    stats = stopping.step(*batch)
    assert (stats["ppo/minibatches"], stats["ppo/skipped_minibatches"]) == (2, 1)  # one step taken
    assert any(not torch.equal(a, b) for a, b in zip(before, adapter_snapshot(stopping)))
    generous = PPOTrainer(tiny_model(), PAD, cfg.replace(target_kl=1e6)).step(*batch)
    assert generous["ppo/skipped_minibatches"] == 0 and generous["ppo/policy/approxkl"] == free["ppo/policy/approxkl"]
    with pytest.raises(ValueError, match="target_kl must be positive"):
        PPOConfig(target_kl=0.0)


def test_bf16_autocast_step_runs():
    t = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("smoke", autocast_dtype="bf16"))
    stats = t.step(*random_batch(8, seed=7))
    assert all(math.isfinite(v) for v in stats.values())


def test_two_adapters_share_one_base_model_and_train_independently():
    cfg = PPOConfig.preset("smoke", learning_rate=1e-2)
    alice = PPOTrainer(tiny_model(), PAD, cfg, adapter_name="alice")
    bob = PPOTrainer(alice.model, PAD, cfg.replace(seed=1), adapter_name="bob")
    assert bob.model is alice.model
    assert {id(p) for p in alice.trainable_parameters}.isdisjoint(id(p) for p in bob.trainable_parameters)
    with pytest.raises(ValueError, match="already has an adapter named 'bob'"):
        PPOTrainer(alice.model, PAD, cfg, adapter_name="bob")
    base_weights = {n: p.detach().clone() for n, p in alice.model.named_parameters() if "lora_" not in n}

    bob_before = adapter_snapshot(bob)
    alice.step(*random_batch(8, seed=8))
    assert all(torch.equal(a, b) for a, b in zip(bob_before, adapter_snapshot(bob)))
    alice_after = adapter_snapshot(alice)
    assert any(not torch.equal(a, b) for a, b in zip(bob_before[: len(alice_after)], alice_after))

    bob.step(*random_batch(8, seed=9))
    assert all(torch.equal(a, b) for a, b in zip(alice_after, adapter_snapshot(alice)))
    assert any(not torch.equal(a, b) for a, b in zip(bob_before, adapter_snapshot(bob)))
    for n, p in alice.model.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base_weights[n]), n  # the shared base stays frozen

    # each policy now differs from the base and from the other
    prompts, answers, _ = random_batch(4, seed=10)
    la = alice.score(prompts, answers).logprobs
    lb = bob.score(prompts, answers).logprobs
    lr = alice.score(prompts, answers, reference=True).logprobs
    assert not torch.allclose(la, lb) and not torch.allclose(la, lr) and not torch.allclose(lb, lr)


def test_save_load_resumes_bit_identically(tmp_path):
    # dropout on, 2 minibatches per epoch: shuffling and dropout RNG must be restored too
    cfg = PPOConfig.preset("smoke", ppo_epochs=2, learning_rate=1e-2)
    batches = [shared_prefix_batch(8, seed=20 + i) for i in range(4)]

    straight = PPOTrainer(tiny_model(), PAD, cfg, adapter_name="learner")
    straight_stats = [straight.step(*b) for b in batches]

    first = PPOTrainer(tiny_model(), PAD, cfg, adapter_name="learner")
    resumed_stats = [first.step(*b) for b in batches[:2]]
    first.save(tmp_path / "ckpt")
    first.save(tmp_path / "ckpt")  # overwriting an existing checkpoint works
    del first
    restored = PPOTrainer.from_checkpoint(tmp_path / "ckpt", tiny_model(), PAD)
    assert restored.step_count == 2 and restored.adapter_name == "learner"
    resumed_stats += [restored.step(*b) for b in batches[2:]]

    for a, b in zip(adapter_snapshot(straight), adapter_snapshot(restored)):
        assert torch.equal(a, b)
    for a, b in zip(straight.value_head.parameters(), restored.value_head.parameters()):
        assert torch.equal(a, b)
    for s, r in zip(straight_stats, resumed_stats):
        assert {k: v for k, v in s.items() if not k.startswith("time/")} == {
            k: v for k, v in r.items() if not k.startswith("time/")
        }
    assert straight.kl_controller.value == restored.kl_controller.value
    assert straight.score_moments.state_dict() == restored.score_moments.state_dict()


def test_checkpoint_adapter_loads_with_plain_peft(tmp_path):
    t = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("smoke", learning_rate=1e-2), adapter_name="alice")
    t.step(*random_batch(8, seed=30))
    t.save(tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary leftovers
    plain = peft.PeftModel.from_pretrained(tiny_model(), str(tmp_path / "ckpt" / "adapter")).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(plain(ids).logits, t.policy_model(ids).logits)


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    t = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("smoke"))
    t.step(*random_batch(8, seed=40))
    t.save(tmp_path / "ckpt")
    t.step(*random_batch(8, seed=41))

    from moralkit import storage

    real_replace = os.replace

    def dying_replace(src, dst):
        if str(dst) == str(tmp_path / "ckpt"):
            raise KeyboardInterrupt("killed between the two renames")
        return real_replace(src, dst)

    monkeypatch.setattr(storage.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        t.save(tmp_path / "ckpt")
    monkeypatch.setattr(storage.os, "replace", real_replace)
    assert not (tmp_path / "ckpt").exists() and (tmp_path / ".ckpt.old" / "trainer_state.pt").exists()

    fresh = PPOTrainer(tiny_model(), PAD, PPOConfig.preset("smoke"))
    with pytest.warns(UserWarning, match="previous checkpoint"):
        fresh.load_state(tmp_path / "ckpt")
    assert fresh.step_count == 1


def test_it_learns_to_prefer_the_rewarded_token():
    """Fixed prompt; +1 for answer token A, -1 for anything else, answers sampled from the policy."""
    model = tiny_model(initializer_range=0.2)  # larger logits, so a small LoRA can move them
    cfg = PPOConfig.preset("paper", lora_r=8, lora_alpha=16, learning_rate=1e-2, mini_batch_size=32)
    t = PPOTrainer(model, PAD, cfg)
    prompt, token_a, n = [5, 6, 7, 8], 10, 32
    g = torch.Generator().manual_seed(0)

    def p_a() -> float:
        with torch.no_grad():
            return t.score([prompt], [[token_a]], with_values=False).logprobs[0, 0].exp().item()

    history = [p_a()]
    for _ in range(15):
        with torch.no_grad():
            probs = torch.softmax(t.policy_model(torch.tensor([prompt])).logits[0, -1].float(), -1)
        answers = torch.multinomial(probs, n, replacement=True, generator=g).tolist()
        scores = [1.0 if a == token_a else -1.0 for a in answers]
        t.step([prompt] * n, [[a] for a in answers], scores)
        history.append(p_a())
    print("P(A) over updates:", " ".join(f"{p:.3f}" for p in history))
    assert history[0] < 0.05
    assert history[-1] > 0.5
