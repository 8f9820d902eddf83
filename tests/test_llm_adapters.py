"""Several adapters side by side in one pass (moralkit.llm.adapters.adapters_side_by_side)."""

from __future__ import annotations

import pytest
import torch

from moralkit.llm.adapters import adapters_side_by_side, using_adapter

NAMES = ["one", "two", "three"]


def three_adapters(dropout: float = 0.0, seed: int = 0):
    """The narrow random model with three LoRA adapters of the paper's layout, each with its own weights."""
    from peft import LoraConfig, get_peft_model

    from moralkit.llm.models import random_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear")
    model = get_peft_model(random_model("smollm2-135m-narrow", device="cpu"), config, adapter_name=NAMES[0])
    for name in NAMES[1:]:
        model.add_adapter(name, config)
    with torch.no_grad():  # peft starts B at zero (every adapter the base model): give each its own update
        for key, p in model.named_parameters():
            if "lora_B" in key:
                p.normal_(0, 0.5)
    return model


def ids(rows: int, length: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 1000, (rows, length), generator=torch.Generator().manual_seed(seed))


def alone(model, batch, names=NAMES):
    """Each group of rows through its own adapter, one pass each (what side by side must equal)."""
    groups = batch.chunk(len(names))
    outs = []
    for name, rows in zip(names, groups):
        model.set_adapter(name)
        outs.append(model(input_ids=rows).logits)
    return torch.cat(outs)


def test_side_by_side_gives_each_group_of_rows_its_own_adapter():
    model = three_adapters().eval()
    batch = ids(6)
    with torch.no_grad():
        expected = alone(model, batch)
        with adapters_side_by_side(model, NAMES):
            together = model(input_ids=batch).logits
        assert not torch.allclose(expected[:2], alone(model, batch, ["two"] * 3)[:2], atol=1e-3)  # the adapters differ
        torch.testing.assert_close(together, expected, atol=2e-5, rtol=1e-4)
        reversed_expected = alone(model, batch, NAMES[::-1])
        with adapters_side_by_side(model, NAMES[::-1]):  # the order of the names is the order of the groups
            torch.testing.assert_close(model(input_ids=batch).logits, reversed_expected, atol=2e-5, rtol=1e-4)
        model.set_adapter("two")
        torch.testing.assert_close(model(input_ids=batch[2:4]).logits, expected[2:4])  # peft's forward is back


def test_side_by_side_gradients_reach_each_adapter_as_in_its_own_pass():
    model = three_adapters(dropout=0.0).train()
    batch = ids(6)
    weights = torch.linspace(-1, 1, model.config.vocab_size)

    def loss_of(logits):
        return (logits.log_softmax(-1) * weights).sum()

    def grads():
        out = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return out

    for name, rows in zip(NAMES, batch.chunk(3)):  # separately; only the active adapter trains
        model.set_adapter(name)
        loss_of(model(input_ids=rows).logits).backward()
    expected = grads()
    with adapters_side_by_side(model, NAMES):
        for p in model.parameters():  # set_adapter above left only the last adapter trainable
            p.requires_grad_(False)
        for key, p in model.named_parameters():
            if "lora_" in key:
                p.requires_grad_(True)
        loss_of(model(input_ids=batch).logits).backward()
    together = grads()
    assert set(together) == set(expected) and len(expected) == 3 * 2 * 7 * model.config.num_hidden_layers
    for key in expected:
        torch.testing.assert_close(together[key], expected[key], atol=1e-4, rtol=1e-3)


def _operations(fn) -> int:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def test_the_number_of_operations_does_not_grow_with_the_number_of_adapters():
    """What makes it pay on a GPU: one set of kernels for all adapters (peft's mixed batches loop)."""
    model = three_adapters().eval()
    with torch.no_grad():
        with adapters_side_by_side(model, NAMES[:1]):
            one = _operations(lambda: model(input_ids=ids(1)))
        with adapters_side_by_side(model, NAMES):
            three = _operations(lambda: model(input_ids=ids(3)))
        mixed = _operations(lambda: model(input_ids=ids(3), adapter_names=NAMES))
    assert three == one and mixed > 1.5 * three, (one, three, mixed)


def test_side_by_side_refuses_what_it_cannot_split_and_leaves_the_model_as_it_was():
    from peft import LoraConfig

    model = three_adapters().eval()
    with pytest.raises(ValueError, match="5 rows cannot be split into 3 equal groups"):
        with adapters_side_by_side(model, NAMES):
            model(input_ids=ids(5))
    with pytest.raises(ValueError, match="unknown: nope. Loaded adapters: one, three, two"):
        with adapters_side_by_side(model, ["one", "nope"]):
            pass
    model.add_adapter("leaky", LoraConfig(r=4, lora_alpha=8, lora_dropout=0.3, target_modules="all-linear"))
    with pytest.raises(ValueError, match="different dropout probabilities"):
        with adapters_side_by_side(model, ["one", "leaky"]):
            pass
    model.add_adapter("louder", LoraConfig(r=4, lora_alpha=16, target_modules="all-linear"))
    with pytest.raises(ValueError, match="different scales"):
        with adapters_side_by_side(model, ["one", "louder"]):
            pass
    with pytest.raises(ValueError, match="blocks do not nest"):
        with adapters_side_by_side(model, NAMES), adapters_side_by_side(model, NAMES[:2]):
            pass
    model.add_adapter("narrow", LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="narrow do not adapt this layer"):
        with adapters_side_by_side(model, ["one", "narrow"]):
            pass
    assert not any("forward" in vars(m) for m in model.modules())  # every layer has the class's forward again
    with torch.no_grad(), using_adapter(model, "base"), adapters_side_by_side(model, NAMES):
        base = model(input_ids=ids(3)).logits  # adapters switched off inside: the base model for every row
    with torch.no_grad(), using_adapter(model, "base"):
        torch.testing.assert_close(base, model(input_ids=ids(3)).logits)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_side_by_side_passes_record_and_replay_as_cuda_graphs_on_a_gpu():
    """On a GPU: the stacked products are recorded once and a replay matches the eager pass, backward included."""
    model = three_adapters().cuda().train()
    for key, p in model.named_parameters():
        p.requires_grad_("lora_" in key)
    batch = ids(6).cuda()

    class Logits(torch.nn.Module):  # a module, so that the recorded backward reaches its parameters
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(input_ids=x).logits

    logits = Logits()
    with adapters_side_by_side(model, NAMES):
        eager = logits(batch).detach()
        graphed = torch.cuda.make_graphed_callables(logits, (batch,), num_warmup_iters=3)
        replayed = graphed(batch)
        replayed.float().logsumexp(-1).mean().backward()
    torch.testing.assert_close(replayed.detach(), eager, atol=1e-4, rtol=1e-3)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for k, p in model.named_parameters() if "lora_B" in k)


# --------------------------------------------------------------------------- a merged copy for sampling
def test_a_merged_copy_gives_the_adapters_outputs_with_the_base_models_operations():
    from moralkit.llm.adapters import merged_adapter

    model = three_adapters().eval()
    model.set_adapter("two")
    batch = ids(4)
    with torch.no_grad():
        expected = model(input_ids=batch).logits
        base_weight = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
        merged = merged_adapter(model, "two")
        assert merged_adapter(model, "two") is merged  # one per model and adapter
        with merged.applied():
            got = model(input_ids=batch).logits
            merged_ops = _operations(lambda: model(input_ids=batch))
            assert model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight is not base_weight
        lora_ops = _operations(lambda: model(input_ids=batch))
        with using_adapter(model, "base"):
            base = model(input_ids=batch).logits
            base_ops = _operations(lambda: model(input_ids=batch))
        # the adapter's function (it differs from the base model's), the base model's operations
        assert not torch.allclose(base, expected, atol=1e-2)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        assert merged_ops == base_ops and merged_ops < 0.6 * lora_ops, (merged_ops, base_ops, lora_ops)
        # after the block: the base weights and peft's own forward again
        assert model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight is base_weight
        torch.testing.assert_close(model(input_ids=batch).logits, expected)
    assert "MergedAdapter('two', layers=210" in repr(merged) and merged.nbytes > 0


def test_a_merged_copy_follows_the_adapter_as_it_changes():
    """Only the layers whose A or B changed (e.g. an optimiser step) are recomputed, in place."""
    from moralkit.llm.adapters import merged_adapter

    model = three_adapters().eval()
    model.set_adapter("one")
    batch = ids(2)
    merged = merged_adapter(model, "one")
    assert merged.refresh() == 210 and merged.refresh() == 0
    layer = model.base_model.model.model.layers[3].mlp.down_proj
    copy = merged._layers[[entry[0] for entry in merged._layers].index(layer)][-1]
    with torch.no_grad():
        layer.lora_B["one"].weight.add_(0.3)  # in place, as Adam steps
        layer.lora_B["two"].weight.add_(0.3)  # another adapter's change does not concern this copy
        assert merged.refresh() == 1
        expected = model(input_ids=batch).logits
        with merged.applied():
            got = model(input_ids=batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert merged._layers[[entry[0] for entry in merged._layers].index(layer)][-1] is copy  # the same tensor
    with torch.no_grad():  # a write the version counters do not see: invalidate() says so
        layer.lora_A["one"].weight.data.mul_(2.0)
        assert merged.refresh() == 0
        merged.invalidate()
        assert merged.refresh() == 210
        layer.scaling["one"] *= 2  # peft's scale_layer: a new scale is a change too
        assert merged.refresh() == 1
        layer.scaling["one"] /= 2
        expected = model(input_ids=batch).logits
        with merged.applied():
            torch.testing.assert_close(model(input_ids=batch).logits, expected, atol=1e-4, rtol=1e-4)


def test_switching_adapters_inside_a_merged_block_is_refused():
    from moralkit.llm.adapters import adapters_disabled, merged_adapter

    model = three_adapters().eval()
    model.set_adapter("one")
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with merged_adapter(model, "one").applied():  # float32 products inside: TF32 would round the adapter away
            assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    with adapters_side_by_side(model, NAMES), pytest.raises(ValueError, match="side by side"):
        with merged_adapter(model, "one").applied():
            pass
    with pytest.raises(RuntimeError, match="inside"):  # an error in the block restores everything
        with merged_adapter(model, "one").applied():
            raise RuntimeError("inside")
    assert not any(hasattr(m, "merged_copy") for m in model.modules())
    with merged_adapter(model, "one").applied():
        with merged_adapter(model, "one").applied():  # nested: a no-op
            pass
        for switch in (lambda: adapters_disabled(model), lambda: using_adapter(model, "two"),
                       lambda: adapters_side_by_side(model, NAMES), lambda: merged_adapter(model, "two").applied()):
            with pytest.raises(ValueError, match="merged"):
                with switch():
                    pass
        with using_adapter(model, "one"):  # already active: nothing is switched
            pass
    assert not any(hasattr(m, "merged_copy") for m in model.modules())
    assert not any(m._disable_adapters for m in model.modules() if hasattr(m, "_disable_adapters"))


def test_adapters_that_cannot_be_merged_say_why():
    from peft import LoraConfig, get_peft_model

    from moralkit.llm.adapters import MergedAdapter, drop_merged, merged_adapter, mergeable
    from moralkit.llm.models import random_model

    dora = get_peft_model(random_model("smollm2-135m-narrow", device="cpu"),
                          LoraConfig(r=4, use_dora=True, target_modules=["q_proj"]), adapter_name="dora")
    assert not mergeable(dora, "dora")
    with pytest.raises(ValueError, match="not plain LoRA"):
        MergedAdapter(dora, "dora")
    # LoRA on the embeddings too: switching adapters off for the copy would drop that part
    embedded = get_peft_model(random_model("smollm2-135m-narrow", device="cpu"),
                              LoraConfig(r=4, target_modules=["embed_tokens", "q_proj"]), adapter_name="e")
    with pytest.raises(ValueError, match="Embedding layer"):
        MergedAdapter(embedded, "e")
    # bfloat16 weights would round an adapter's small changes away
    half = get_peft_model(random_model("smollm2-135m-narrow", device="cpu", dtype="bfloat16"),
                          LoraConfig(r=4, target_modules=["q_proj"]), adapter_name="h")
    with pytest.raises(ValueError, match="bfloat16.*float32 weights only"):
        MergedAdapter(half, "h")
    model = three_adapters()
    with pytest.raises(ValueError, match="no adapter 'four'.*one, three, two"):
        merged_adapter(model, "four")
    merged_adapter(model, "one")
    merged_adapter(model, "two")
    drop_merged(model, "one")
    assert [key[0] for key in model._moralkit_merged] == ["two"]
    drop_merged(model)
    assert not model._moralkit_merged
    first = merged_adapter(model, "three")
    model.delete_adapter("three")  # the same name again, new tensors: a new copy
    model.add_adapter("three", LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    again = merged_adapter(model, "three")
    assert again is not first and again.current() and not first.current() and again.serial != first.serial
    with pytest.raises(ValueError, match="no longer holds"):  # a kept stale copy is refused, not used
        with first.applied():
            pass
