"""The LLM player: batched sampling, exact label probabilities, policy tables (moralkit.llm.agent)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from moralkit.games import C, D, ILLEGAL, get_game
from moralkit.llm.agent import Decision, LLMPlayer, common_prefix_length, forward_batch, left_pad
from moralkit.llm.models import load_model, tiny_random_model
from moralkit.llm.prompts import AB, TEST_LABELS, TRAIN_LABELS, LabelSet, chat_text, parse_answer, render_prompt

PD = get_game("prisoners_dilemma")


@pytest.fixture(scope="module")
def model(tokenizer):
    """A tiny random Llama whose output layer favours the label tokens, so legal answers occur."""
    action, one, two = (tokenizer.encode(s, add_special_tokens=False)[0] for s in ("action", "1", "2"))
    return tiny_random_model(tokenizer, seed=0, logit_bias={action: 15.0, one: 14.3, two: 14.0})


@pytest.fixture(scope="module")
def player(model, tokenizer):
    return LLMPlayer(model, tokenizer, TRAIN_LABELS, batch_size=32)


def states(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(2, size=n), rng.integers(2, size=n)


def manual_label_probability(model, prompt_ids: list[int], label_ids: list[int], stop_ids=(), need_stop=False) -> float:
    """P(label | prompt) with one plain forward per label, no padding, no cache: the reference."""
    ids = torch.tensor([prompt_ids + label_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    n = len(prompt_ids)
    total = sum(float(logp[n - 1 + i, t]) for i, t in enumerate(label_ids))
    if need_stop:
        total += float(torch.logsumexp(logp[n - 1 + len(label_ids), list(stop_ids)], dim=0))
    return float(np.exp(total))


# --------------------------------------------------------------------------- basics
def test_repr_and_token_budget(player, model, tokenizer):
    text = repr(player)
    assert "LLMPlayer" in text and "action1" in text and "max_new_tokens=2" in text
    assert player.max_new_tokens == 2
    assert LLMPlayer(model, tokenizer, AB).max_new_tokens == 1
    assert LLMPlayer(model, tokenizer, "test").labels == TEST_LABELS
    assert player.with_labels("ab").labels == AB and player.with_labels("ab").model is model
    assert tokenizer.eos_token_id in player.stop_ids


def test_helpers_left_pad_and_common_prefix():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0


def test_forward_batch_matches_unpadded_forwards(model, player):
    """Left padding and the shared-prefix cache do not change the last-token logits."""
    prompts = player.encode(player.chat_texts(player.messages(PD, [0, 1, 1], [0, 0, 1], np.random.default_rng(0))))
    prompts[1] = prompts[1][:-3]  # rows of different lengths
    with torch.no_grad():
        for share in (False, True):
            logits, *_ = forward_batch(model, prompts, pad_id=player.pad_id, logits_to_keep=2, share_prefix=share)
            for row, ids in zip(logits, prompts):
                reference = model(input_ids=torch.tensor([ids])).logits[0, -2:]
                assert torch.allclose(row, reference, atol=1e-4)


def test_forward_batch_scores_sampled_answers_with_gradients(player, tokenizer):
    """What PPO does: teacher-force prompt + answer rows, read the answer tokens' log-probs, backprop."""
    decision = player.decide(PD, *states(6, seed=4), np.random.default_rng(4))
    model = tiny_random_model(tokenizer, seed=0)
    seqs = [p + a for p, a in zip(decision.prompt_ids, decision.answer_ids)]
    k = max(len(a) for a in decision.answer_ids)
    result = forward_batch(model, seqs, pad_id=player.pad_id, logits_to_keep=k + 1)
    logp = torch.log_softmax(result.logits, dim=-1)
    scores = []
    for i, answer in enumerate(decision.answer_ids):
        rows = logp[i, k - len(answer) : k]  # the logits that predict the answer tokens
        scores.append(rows.gather(-1, torch.tensor(answer)[:, None]).sum())
    torch.stack(scores).sum().backward()
    assert model.get_input_embeddings().weight.grad is not None
    for score, seq, answer in zip(scores, seqs, decision.answer_ids):
        with torch.no_grad():
            full = torch.log_softmax(model(input_ids=torch.tensor([seq])).logits[0], dim=-1)
        n = len(seq) - len(answer)
        expected = sum(float(full[n - 1 + j, t]) for j, t in enumerate(answer))
        assert score.item() == pytest.approx(expected, abs=1e-3)


# --------------------------------------------------------------------------- sampling
def test_decide_returns_aligned_fields(player, tokenizer):
    my_prev, opp_prev = states(40)
    decision = player.decide(PD, my_prev, opp_prev, np.random.default_rng(1))
    assert isinstance(decision, Decision) and len(decision) == 40
    assert decision.moves.shape == (40,) and set(decision.moves.tolist()) <= {C, D, ILLEGAL}
    for i in range(40):
        assert decision.messages[i] == render_prompt(PD, my_prev[i], opp_prev[i], TRAIN_LABELS, flips=_flips(decision.messages[i]))
        assert decision.prompts[i] == chat_text(tokenizer, decision.messages[i])
        assert decision.prompt_ids[i] == tokenizer.encode(decision.prompts[i], add_special_tokens=False)
        assert 1 <= len(decision.answer_ids[i]) <= player.max_new_tokens
        assert decision.moves[i] == parse_answer(decision.answers[i], TRAIN_LABELS)
    assert "illegal" in repr(decision) and list(decision.to_frame().columns) == ["answer", "move", "answer_tokens"]
    assert 0 <= decision.illegal_rate <= 1


def _flips(message: str) -> tuple[bool, bool]:
    instruction, answer = [l for l in message.splitlines() if l.startswith("Now pick")][-1].split(". Answer")
    return (instruction.index("action2") < instruction.index("action1"), answer.index("action2") < answer.index("action1"))


def test_answer_ids_decode_to_the_answers(player, tokenizer):
    decision = player.decide(PD, *states(40, seed=2), np.random.default_rng(2))
    assert (decision.moves != ILLEGAL).any() and (decision.moves == ILLEGAL).any()
    for ids, answer in zip(decision.answer_ids, decision.answers):
        body = ids[:-1] if ids[-1] in player.stop_ids else ids
        assert tokenizer.decode(body, skip_special_tokens=False, clean_up_tokenization_spaces=False) == answer
        if answer.strip() == "action1":
            assert ids[:2] == tokenizer.encode("action1", add_special_tokens=False)


def test_decide_is_reproducible_with_the_same_seed(player):
    my_prev, opp_prev = states(24)
    a = player.decide(PD, my_prev, opp_prev, np.random.default_rng(11))
    b = player.decide(PD, my_prev, opp_prev, np.random.default_rng(11))
    c = player.decide(PD, my_prev, opp_prev, np.random.default_rng(12))
    assert a.prompts == b.prompts and a.answer_ids == b.answer_ids and np.array_equal(a.moves, b.moves)
    assert a.answer_ids != c.answer_ids or a.prompts != c.prompts


def test_prefix_sharing_is_exact(model, tokenizer):
    my_prev, opp_prev = states(16)
    shared = LLMPlayer(model, tokenizer, share_prefix=True)
    plain = LLMPlayer(model, tokenizer, share_prefix=False)
    assert shared.decide(PD, my_prev, opp_prev, np.random.default_rng(5)).answer_ids == plain.decide(
        PD, my_prev, opp_prev, np.random.default_rng(5)
    ).answer_ids
    assert np.allclose(shared.label_probabilities(PD, my_prev, opp_prev), plain.label_probabilities(PD, my_prev, opp_prev), rtol=1e-4, atol=1e-9)


def test_stop_token_ends_an_answer(tokenizer):
    eos = tokenizer.eos_token_id
    model = tiny_random_model(tokenizer, logit_bias={eos: 40.0})
    decision = LLMPlayer(model, tokenizer).decide(PD, [0, 1], [1, 0], np.random.default_rng(0))
    assert decision.answer_ids == [[eos], [eos]]  # the stop token is kept (PPO scores it), nothing after
    assert decision.answers == ["", ""] and decision.moves.tolist() == [ILLEGAL, ILLEGAL]


def test_temperature_zero_is_greedy(model, tokenizer):
    greedy = LLMPlayer(model, tokenizer, temperature=0)
    a = greedy.decide(PD, [0, 1], [1, 1], np.random.default_rng(0))
    b = greedy.decide(PD, [0, 1], [1, 1], np.random.default_rng(0))
    assert a.answer_ids == b.answer_ids


def test_invalid_states_are_rejected(player):
    with pytest.raises(ValueError):
        player.decide(PD, [0, ILLEGAL], [0, 1], np.random.default_rng(0))


def test_sampled_frequencies_match_the_exact_probabilities(player):
    n = 160
    my_prev, opp_prev = np.zeros(n, int), np.ones(n, int)
    decision = player.decide(PD, my_prev, opp_prev, np.random.default_rng(3))
    probs = player.label_probabilities(PD, my_prev, opp_prev, np.random.default_rng(3))  # the same prompts
    for column, move in enumerate((C, D, ILLEGAL)):
        expected = probs[:, column].sum()
        sd = np.sqrt((probs[:, column] * (1 - probs[:, column])).sum())
        assert abs((decision.moves == move).sum() - expected) < 4.5 * sd + 1


def test_model_mode_is_restored(model, tokenizer):
    player = LLMPlayer(model, tokenizer)
    model.train()
    try:
        player.decide(PD, [0], [0], np.random.default_rng(0))
        player.label_probabilities(PD, [0], [0])
        assert model.training
    finally:
        model.eval()


# --------------------------------------------------------------------------- exact probabilities
def test_label_probabilities_match_a_manual_computation(player, model, tokenizer):
    my_prev, opp_prev = np.array([0, 1, 1]), np.array([0, 0, 1])
    probs = player.label_probabilities(PD, my_prev, opp_prev)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs > 0).all() and (probs[:, :2] > 0.02).all()
    prompts = player.encode(player.chat_texts(player.messages(PD, my_prev, opp_prev)))
    for row, ids in zip(probs, prompts):
        for column, label in enumerate(("action1", "action2")):
            expected = manual_label_probability(model, ids, tokenizer.encode(label, add_special_tokens=False))
            assert row[column] == pytest.approx(expected, rel=1e-4)


def test_short_labels_must_be_followed_by_a_stop_token(model, tokenizer):
    """With labels of different token lengths, P(short label) includes P(stop right after it)."""
    labels = LabelSet("A", "action2", "mixed")
    player = LLMPlayer(model, tokenizer, labels)
    assert player.max_new_tokens == 2
    probs = player.label_probabilities(PD, [1], [0])
    ids = player.encode(player.chat_texts(player.messages(PD, [1], [0])))[0]
    a_ids = tokenizer.encode("A", add_special_tokens=False)
    assert probs[0, 0] == pytest.approx(manual_label_probability(model, ids, a_ids, player.stop_ids, need_stop=True), rel=1e-4)
    assert probs[0, 1] == pytest.approx(manual_label_probability(model, ids, tokenizer.encode("action2", add_special_tokens=False)), rel=1e-4)


def test_label_probabilities_use_one_batched_forward(player, model):
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        player.label_probabilities(PD, *states(12))
    finally:
        handle.remove()
    assert len(calls) <= 2  # the shared prefix once, then all rows together


def test_label_probabilities_with_rng_and_averaged_orders(player):
    probs = player.label_probabilities(PD, [0, 1], [1, 1], np.random.default_rng(4))
    again = player.label_probabilities(PD, [0, 1], [1, 1], np.random.default_rng(4))
    assert np.array_equal(probs, again)
    averaged = player.label_probabilities(PD, [0], [1], average_orders=True)
    by_order = [
        player.message_label_probabilities([render_prompt(PD, 0, 1, TRAIN_LABELS, flips=(a, b))])[0]
        for a in (False, True)
        for b in (False, True)
    ]
    assert np.allclose(averaged[0], np.mean(by_order, axis=0))


def test_batching_does_not_change_probabilities(model, tokenizer):
    my_prev, opp_prev = states(10)
    big = LLMPlayer(model, tokenizer, batch_size=64).label_probabilities(PD, my_prev, opp_prev)
    small = LLMPlayer(model, tokenizer, batch_size=3).label_probabilities(PD, my_prev, opp_prev)
    assert np.allclose(big, small, rtol=1e-4, atol=1e-9)


def test_policy_table(player):
    table = player.policy_table(PD)
    assert list(table.columns) == ["my_prev", "opp_prev", "P(C)", "P(D)", "P(illegal)"]
    assert list(zip(table.my_prev, table.opp_prev)) == [("C", "C"), ("C", "D"), ("D", "C"), ("D", "D")]
    assert np.allclose(table[["P(C)", "P(D)", "P(illegal)"]].sum(axis=1), 1.0)
    assert table.pivot(index="my_prev", columns="opp_prev", values="P(C)").shape == (2, 2)


def test_order_table_fixes_the_label_orders_and_scores_each(player):
    table = player.order_table(PD)
    assert len(table) == 16 and list(table.columns[:4]) == ["my_prev", "opp_prev", "pick_first", "answer_first"]
    assert table.groupby(["my_prev", "opp_prev"]).size().eq(4).all()
    assert np.allclose(table[["P(C)", "P(D)", "P(illegal)"]].sum(axis=1), 1.0)
    row = table[(table.my_prev == "D") & (table.opp_prev == "C") & (table.pick_first == "D") & (table.answer_first == "C")]
    exact = player.message_label_probabilities([render_prompt(PD, D, C, TRAIN_LABELS, flips=(True, False))])[0]
    assert np.allclose(row[["P(C)", "P(D)", "P(illegal)"]].to_numpy()[0], exact)
    # the first-listed share is D's share of the legal answers where D's label comes first
    legal = exact[0] + exact[1]
    assert row["P(pick_first | legal)"].item() == pytest.approx(exact[1] / legal)
    assert row["P(answer_first | legal)"].item() == pytest.approx(exact[0] / legal)
    # averaged over the orders, the table is the policy that policy_table reports
    means = table.groupby(["my_prev", "opp_prev"], sort=True)[["P(C)", "P(D)"]].mean().to_numpy()
    assert np.allclose(means, player.policy_table(PD)[["P(C)", "P(D)"]].to_numpy())


def test_unrelated_messages_can_be_answered_and_scored(player):
    from moralkit.llm.prompts import unrelated_prompt

    messages = [unrelated_prompt(level, TRAIN_LABELS, np.random.default_rng(level)) for level in (1, 2, 3)]
    decision = player.answer(messages, np.random.default_rng(0))
    assert decision.messages == messages and len(decision) == 3
    assert np.allclose(player.message_label_probabilities(messages).sum(axis=1), 1.0)


# --------------------------------------------------------------------------- peft and devices
def test_works_with_a_peft_model(model, tokenizer):
    from peft import LoraConfig, get_peft_model

    base = tiny_random_model(tokenizer, seed=0)
    reference = LLMPlayer(base, tokenizer).label_probabilities(PD, [0, 1], [1, 0])
    peft_model = get_peft_model(tiny_random_model(tokenizer, seed=0), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    player = LLMPlayer(peft_model, tokenizer)
    assert np.allclose(player.label_probabilities(PD, [0, 1], [1, 0]), reference, rtol=1e-5)  # LoRA starts at 0
    decision = player.decide(PD, [0, 1], [1, 0], np.random.default_rng(0))
    assert len(decision.answer_ids) == 2 and peft_model.training  # mode restored


def two_adapter_model(tokenizer):
    """The tiny random model with two LoRA adapters: "zero" (B = 0, the base model) and "trained" (random B)."""
    from peft import LoraConfig, get_peft_model

    lora = dict(r=4, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(tiny_random_model(tokenizer, seed=0), LoraConfig(**lora), adapter_name="zero")
    model.add_adapter("trained", LoraConfig(**lora))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B.trained" in name:
                param.normal_(std=0.5, generator=torch.Generator().manual_seed(0))
    return model


def test_player_uses_its_named_adapter(tokenizer):
    def log_probs(player):  # compare in log space: the unbiased tiny model gives tiny label probabilities
        return np.log(player.label_probabilities(PD, [0], [1])[:, :2])

    reference = log_probs(LLMPlayer(tiny_random_model(tokenizer, seed=0), tokenizer))
    model = two_adapter_model(tokenizer)
    model.set_adapter("zero")
    base, zero, trained = (LLMPlayer(model, tokenizer, adapter=x) for x in ("base", "zero", "trained"))
    assert "adapter='trained'" in repr(trained) and trained.with_labels("test").adapter == "trained"
    assert np.allclose(log_probs(base), reference, atol=1e-4)
    assert np.allclose(log_probs(zero), reference, atol=1e-4)  # LoRA B starts at 0
    assert not np.allclose(log_probs(trained), reference, atol=0.1)
    assert model.active_adapter == "zero"  # restored after each call


def test_a_player_keeps_the_adapter_active_when_it_was_made(tokenizer):
    """No hidden state: switching the shared model's adapter afterwards leaves the player as it was."""
    model = two_adapter_model(tokenizer)
    model.set_adapter("trained")
    player = LLMPlayer(model, tokenizer)  # no adapter named: it keeps "trained"
    assert player.adapter == "trained" and player.with_labels("ab").adapter == "trained"
    before = player.label_probabilities(PD, [0, 1], [1, 0])
    model.set_adapter("zero")  # someone else switches the shared model
    np.testing.assert_allclose(player.label_probabilities(PD, [0, 1], [1, 0]), before, rtol=1e-6)
    assert model.active_adapter == "zero"  # and the player leaves their choice alone
    assert LLMPlayer(tiny_random_model(tokenizer, seed=0), tokenizer).adapter is None  # a plain model has none


@pytest.mark.parametrize("graphs", [False, True])
def test_a_player_answering_through_a_merged_copy_gives_the_same_answers(tokenizer, graphs):
    """``LLMPlayer(merged=True)``: the adapter folded into a copy of the weights -- the same answers and
    probabilities, also after the adapter changes (as after an optimiser step)."""
    model = two_adapter_model(tokenizer)
    model.set_adapter("zero")
    results = {}
    for merged in (False, True):
        player = LLMPlayer(model, tokenizer, adapter="trained", graphs=graphs, merged=merged)
        rng = np.random.default_rng(7)
        messages = player.messages(PD, rng.integers(2, size=6), rng.integers(2, size=6), rng)
        first = player.answer(messages, np.random.default_rng(11)).answer_ids
        probs = player.label_probabilities(PD, [0, 1], [1, 0])
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_A.trained" in name:
                    param.mul_(1.5)
        second = player.answer(messages, np.random.default_rng(11)).answer_ids
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_A.trained" in name:
                    param.div_(1.5)
        results[merged] = (first, second, probs)
    assert results[True][:2] == results[False][:2] and results[False][0] != results[False][1]
    np.testing.assert_allclose(results[True][2], results[False][2], rtol=1e-4)
    player = LLMPlayer(model, tokenizer, adapter="trained", graphs=graphs, merged=True)
    assert "merged=True" in repr(player) and player.with_labels("ab").merged
    assert model.active_adapter == "zero" and not any(hasattr(m, "merged_copy") for m in model.modules())
    assert "merged" not in repr(LLMPlayer(model, tokenizer, adapter="base", merged=True))  # nothing to merge


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda(tokenizer):
    model = tiny_random_model(tokenizer).to("cuda")
    player = LLMPlayer(model, tokenizer)
    decision = player.decide(PD, *states(8), np.random.default_rng(0))
    assert len(decision) == 8
    assert np.allclose(player.label_probabilities(PD, *states(8)).sum(axis=1), 1.0)


# --------------------------------------------------------------------------- the real model
@pytest.mark.slow
def test_real_embedded_model_answers_a_batch_of_64():
    model, tokenizer = load_model("embedded")
    player = LLMPlayer(model, tokenizer, batch_size=64)
    my_prev, opp_prev = states(64)
    start = time.perf_counter()
    decision = player.decide(PD, my_prev, opp_prev, np.random.default_rng(0))
    sample_s = time.perf_counter() - start
    assert len(decision) == 64 and all(1 <= len(ids) <= 2 for ids in decision.answer_ids)
    start = time.perf_counter()
    probs = player.label_probabilities(PD, my_prev, opp_prev, np.random.default_rng(0))
    probs_s = time.perf_counter() - start
    assert probs.shape == (64, 3) and np.allclose(probs.sum(axis=1), 1.0)
    print(
        f"\n64 answers in {sample_s:.1f} s, label probabilities in {probs_s:.1f} s; illegal rate "
        f"{decision.illegal_rate:.2f} (expected illegal {probs[:, 2].mean():.2f}); e.g. {decision.answers[:8]}"
    )
    # the untuned model rarely answers in format (docs/science.md §3), but it does sometimes
    assert decision.illegal_rate > 0.5
    assert 0 < probs[:, :2].sum(axis=1).mean() < 0.5
