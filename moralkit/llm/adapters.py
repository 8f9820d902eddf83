"""LoRA adapters on one shared base model: load several, switch between them, or switch them off.

Fine-tuned agents differ only in their small LoRA adapters, so a class can evaluate six agents
with one copy of the base model in memory::

    model = attach_adapters(base_model, {"game": "runs/game/adapter", "deont": "runs/deont/adapter"})
    with using_adapter(model, "deont"):
        ...                       # the deontological agent
    with using_adapter(model, BASE):
        ...                       # the untuned base model (all adapters disabled)
    with adapters_side_by_side(model, ["game", "deont"]):
        model(ids)                # first half of the rows through "game", second half through "deont"
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from pathlib import Path
from typing import Iterable, Iterator, Mapping

__all__ = ["BASE", "attach_adapters", "using_adapter", "adapters_disabled", "adapters_side_by_side", "side_by_side_names", "adapter_names",
           "MergedAdapter", "merged_adapter", "mergeable", "invalidate_merged", "drop_merged",
           "adapter_parameters", "base_parameters", "parameter_table", "memory_report"]

BASE = "base"
"""Adapter name meaning "no adapter": the untuned base model."""


def adapter_names(model) -> list[str]:
    """Names of the adapters loaded on a peft model (empty for a plain model)."""
    return sorted(getattr(model, "peft_config", {}) or {})


def adapter_parameters(model, name: str | None = None) -> list:
    """The LoRA parameters of adapter ``name`` on ``model`` (of every adapter when ``name`` is None)."""
    return [p for key, p in model.named_parameters()
            if "lora_" in key and (name is None or f".{name}." in key or key.endswith(f".{name}"))]


def base_parameters(model) -> list:
    """The base model's own parameters: everything on ``model`` that is not a LoRA adapter's."""
    lora = {id(p) for p in adapter_parameters(model)}
    return [p for p in model.parameters() if id(p) not in lora]


def parameter_table(rows: Mapping[str, Iterable]):
    """A table of ``parameters`` and ``MiB``, one row per label, from each label's parameters."""
    import pandas as pd

    from .models import parameter_size

    table = pd.DataFrame({label: parameter_size(params) for label, params in rows.items()}, index=["parameters", "MiB"]).T
    table["parameters"] = table["parameters"].astype(int)
    return table


def memory_report(model, base_label: str = "base model (frozen, shared)"):
    """What one base model with several adapters holds: a table of ``parameters`` and ``MiB``.

    One row for the base model's own weights, one per adapter (``LoRA adapter 'name'``). A second
    adapter costs its own row only: the base weights are stored once.
    """
    rows = {base_label: base_parameters(model)}
    for name in adapter_names(model):
        rows[f"LoRA adapter {name!r}"] = adapter_parameters(model, name)
    return parameter_table(rows)


def attach_adapters(model, adapters: Mapping[str, str | Path]):
    """Load adapters saved in peft's format onto ``model`` (a base model or a PeftModel).

    Returns the PeftModel (a base model is wrapped; its weights are shared, not copied). A name the
    model already has is kept as it is (not loaded again): give different adapters different names.
    """
    from peft import PeftModel

    for name, path in adapters.items():
        if isinstance(model, PeftModel) and name in model.peft_config:
            continue
        path = Path(path)
        if not (path / "adapter_config.json").exists():
            raise FileNotFoundError(
                f"No LoRA adapter in {path} (adapter_config.json missing). Train one with `moralkit train`, "
                "or point to the run's adapter/ folder."
            )
        if name == BASE:
            raise ValueError(f"{BASE!r} is reserved for the base model; give the adapter another name.")
        if isinstance(model, PeftModel):
            model.load_adapter(str(path), adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, str(path), adapter_name=name)
    model.eval()
    return model


#: model -> (its adapter names, its LoRA layers): found once, not on every switch
_TUNER_LAYERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _tuner_layers(model) -> list:
    """The peft tuner layers (e.g. LoRA-wrapped linear layers) of ``model``, found once per adapter set."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    key = tuple(adapter_names(model))
    cached = _TUNER_LAYERS.get(model)
    if cached is None or cached[0] != key:
        cached = (key, [m for m in model.modules() if isinstance(m, BaseTunerLayer)])
        _TUNER_LAYERS[model] = cached
    return cached[1]


@contextlib.contextmanager
def adapters_disabled(model) -> Iterator[None]:
    """Run the block with every adapter of ``model`` switched off: the base model, exactly.

    What ``model.disable_adapter()`` does, without its cost: peft's context manager inspects every
    module and resets ``requires_grad`` flags on the way in and out (~30 ms per use on a GPU for
    SmolLM2, ~80 ms on a CPU), which a PPO update pays for every reference pass. Here each LoRA
    layer's own "disabled" flag is flipped and restored -- the flag peft's layers read in their
    forward pass. Meant for inference (``torch.no_grad``); a model without that flag (another
    peft tuner type) falls back to ``model.disable_adapter()``.
    """
    layers = _tuner_layers(model)
    _refuse_inside_merged(layers, "switch the adapters off")
    if not layers or not all(hasattr(layer, "_disable_adapters") for layer in layers):
        with model.disable_adapter():
            yield
        return
    previous = [layer._disable_adapters for layer in layers]
    for layer in layers:
        layer._disable_adapters = True
    try:
        yield
    finally:
        for layer, was in zip(layers, previous):
            layer._disable_adapters = was


@contextlib.contextmanager
def using_adapter(model, adapter: str | None) -> Iterator[None]:
    """Run the block with ``adapter`` active (``BASE``: all adapters disabled; ``None``: unchanged).

    Switching costs a walk over the model's modules, so nothing is switched when ``adapter`` is
    already the active one (a single learner: always).
    """
    if adapter is None:
        yield
        return
    names = adapter_names(model)
    if adapter == BASE:
        if not names:
            yield  # a plain model is its own base
            return
        with adapters_disabled(model):
            yield
        return
    if adapter not in names:
        raise ValueError(f"The model has no adapter {adapter!r}; loaded adapters: {', '.join(names) or 'none'}.")
    previous = model.active_adapter
    if previous == adapter:
        yield
        return
    _refuse_inside_merged(_tuner_layers(model), f"switch to adapter {adapter!r}")
    model.set_adapter(adapter)
    try:
        yield
    finally:
        if previous in names:
            model.set_adapter(previous)


def _refuse_inside_merged(layers, what: str) -> None:
    """Raise if ``layers`` run on a merged copy now (:meth:`MergedAdapter.applied`): switching adapters
    there would still compute with the merged adapter."""
    merged = getattr(layers[0], "merged_copy", None) if layers else None
    if merged is not None:
        raise ValueError(f"Cannot {what} inside a block that runs on adapter {merged.name!r} merged into the weights; "
                         "leave that block first.")


def _side_by_side_forward(layer, names: list[str]):
    """A LoRA layer's forward in which row group ``g`` of the batch goes through adapter ``names[g]``.

    The groups are equal, consecutive blocks of rows. The adapters' matrices are stacked for the
    call (``A``: groups x rank x in, ``B``: groups x out x rank) and applied with two batched products,
    so the number of operations does not grow with the number of adapters. Dropout is one call
    over all rows (each adapter's own dropout has the same probability, checked on entry).
    """
    import torch

    dropout = layer.lora_dropout[names[0]]
    scale = layer.scaling[names[0]]  # the same for every adapter (checked on entry)

    def forward(x, *args, **kwargs):
        result = layer.base_layer(x, *args, **kwargs)
        if layer.disable_adapters:  # adapters_disabled inside the block: the base model, as peft's forward gives it
            return result
        a = torch.stack([layer.lora_A[n].weight for n in names])
        b = torch.stack([layer.lora_B[n].weight for n in names])
        rows = x.shape[0]
        if rows % len(names):
            raise ValueError(f"{rows} rows cannot be split into {len(names)} equal groups, one per adapter "
                             f"({', '.join(names)}): give each adapter the same number of rows.")
        grouped = x.to(a.dtype).reshape(len(names), -1, x.shape[-1])
        update = torch.bmm(torch.bmm(dropout(grouped), a.transpose(1, 2)), b.transpose(1, 2)) * scale
        return (result + update.reshape(result.shape)).to(result.dtype)

    return forward


@contextlib.contextmanager
def adapters_side_by_side(model, names: Iterable[str]) -> Iterator[None]:
    """Run the block with the batch split into ``len(names)`` equal groups of rows, one per adapter.

    Row group ``g`` (rows ``g * n`` to ``(g + 1) * n - 1`` of a batch of ``len(names) * n`` rows)
    goes through adapter ``names[g]``: several fine-tuned agents -- several training runs -- in one
    forward (and backward) pass of the shared base model. Each LoRA layer then multiplies all
    groups at once with stacked matrices, so a pass costs the same number of operations for one
    adapter or thirty; peft's own mixed batches (``adapter_names=``) loop over the adapters. The
    numbers are those of running each group through its adapter alone (up to float rounding), and
    gradients reach each adapter's own parameters. Plain LoRA only (no DoRA, no LoRA bias); every
    named adapter must share its dropout probability and scale (rank and alpha) and target the
    same layers. Blocks do not nest.
    """
    names = list(names)
    loaded = adapter_names(model)
    unknown = [n for n in names if n not in loaded]
    if not names or unknown:
        raise ValueError(f"adapters_side_by_side needs adapters the model has; unknown: {', '.join(unknown) or 'none given'}"
                         f". Loaded adapters: {', '.join(loaded) or 'none'}.")
    every = _tuner_layers(model)
    _refuse_inside_merged(every, "run adapters side by side")
    if any(side_by_side_names(layer) or "forward" in vars(layer) for layer in every):
        raise ValueError("adapters_side_by_side: the model's LoRA layers are already side by side (or their forward "
                         "is replaced by something else); blocks do not nest.")
    layers = [layer for layer in every if any(n in getattr(layer, "lora_A", {}) for n in names)]
    for layer in layers:
        missing = [n for n in names if n not in layer.lora_A]
        plain = all(not getattr(layer, "use_dora", {}).get(n, False) and not getattr(layer, "lora_bias", {}).get(n, False)
                    and n not in getattr(layer, "lora_variant", {}) for n in names if n not in missing)
        drops = {getattr(layer.lora_dropout[n], "p", 0.0) for n in names if n not in missing}
        scales = {layer.scaling[n] for n in names if n not in missing}
        if missing or not plain or len(drops) > 1 or len(scales) > 1 or getattr(layer, "merged", False):
            why = (f"adapter(s) {', '.join(missing)} do not adapt this layer" if missing else
                   "the adapters are merged into the weights" if getattr(layer, "merged", False) else
                   "the adapters use different dropout probabilities" if len(drops) > 1 else
                   "the adapters have different scales (LoRA rank and alpha)" if len(scales) > 1 else
                   "an adapter is not plain LoRA (DoRA, LoRA bias or another variant)")
            raise ValueError(f"Cannot run adapters {', '.join(names)} side by side: {why}. Give adapters made with "
                             "the same LoRA settings.")
    for layer in layers:
        layer.forward = _side_by_side_forward(layer, names)
    for layer in every:  # what a recorded CUDA graph of a pass depends on (moralkit.llm.graphs reads any layer)
        layer.side_by_side = tuple(names)
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # the class's forward again
        for layer in every:
            del layer.side_by_side


def side_by_side_names(layer) -> tuple[str, ...]:
    """The adapters a LoRA layer runs side by side now (:func:`adapters_side_by_side`); empty outside."""
    return getattr(layer, "side_by_side", ())


_MERGED_SERIALS = itertools.count()


class MergedAdapter:
    """Adapter ``name`` of ``model`` folded into a copy of the base weights, for sampling.

    Each LoRA layer ``x -> W x + s * B (A x)`` becomes one product with ``W + s * B A``: the same
    function (up to float rounding), with none of LoRA's products, scales and additions. A pass
    through the merged copy launches only the base model's operations (SmolLM2's layout with the
    paper's LoRA on all 210 linear layers: 1,097 operations per forward pass instead of 1,937) and
    skips LoRA's arithmetic (at rank 64, ~16% of SmolLM2-135M's per token). The price is memory:
    one more copy of every adapted weight (:attr:`nbytes`; ~425 MB for SmolLM2-135M in float32 with
    LoRA on every linear layer) and, each time the adapter has changed, one product per layer.

    The copy follows the adapter: :meth:`applied` first recomputes the layers whose ``A``, ``B``,
    scale or base weight changed since the last time (an optimiser step, a loaded checkpoint), as
    their tensors' version counters tell, or all of them after :meth:`invalidate` (what the PPO
    update calls), and writes into the same tensors, so a CUDA graph recorded on the copy stays
    valid. Plain LoRA on linear layers with float32 base weights only (no DoRA, LoRA bias,
    ``fan_in_fan_out``, LoRA on embeddings; no bfloat16 or quantised weights, where an adapter's
    small changes would round away): :func:`mergeable` says whether an adapter qualifies. Get the
    one of a model with :func:`merged_adapter` (one per model and adapter name, kept on the model)::

        with torch.no_grad(), merged_adapter(model, "default").applied():
            logits = model(ids).logits    # adapter "default"'s outputs, the base model's operations
    """

    def __init__(self, model, name: str) -> None:
        import torch

        why = _unmergeable(model, name)
        if why:
            raise ValueError(f"Cannot merge adapter {name!r} into a copy of the weights: {why}.")
        self.name = name
        self._every = _tuner_layers(model)
        _refuse_inside_merged(self._every, f"merge adapter {name!r}")  # the base weights are swapped out there
        self._layers = []  # (LoRA layer, its base weight, A, B, scale, the merged copy)
        with torch.no_grad():
            for layer in self._every:
                if name in getattr(layer, "lora_A", {}):
                    weight = layer.base_layer.weight
                    merged = torch.nn.Parameter(torch.empty_like(weight), requires_grad=False)
                    self._layers.append((layer, weight, layer.lora_A[name].weight, layer.lora_B[name].weight, merged))
        self._seen: list[tuple | None] = [None] * len(self._layers)
        self.refreshes = 0
        self.serial = next(_MERGED_SERIALS)  # names this copy's tensors in the keys of CUDA graph recordings

    def current(self) -> bool:
        """Whether the model still holds the tensors this copy was made from (an adapter deleted and
        added again under the same name has new ones)."""
        for layer, weight, a, b, merged in self._layers:
            if self.name not in layer.lora_A or self.name not in layer.lora_B:
                return False
            now = layer.base_layer._parameters["weight"]
            if (layer.lora_A[self.name].weight is not a or layer.lora_B[self.name].weight is not b
                    or not (now is weight or now is merged) or merged.device != weight.device
                    or merged.dtype != weight.dtype):
                return False
        return True

    def invalidate(self) -> None:
        """Recompute every layer at the next :meth:`applied` block, whatever the version counters say.

        For changes the counters do not see: writes through ``.data``, a fused or recorded optimiser
        step. The PPO update calls it (:func:`invalidate_merged`) after its optimiser steps."""
        self._seen = [None] * len(self._layers)

    @property
    def nbytes(self) -> int:
        """Memory held by the merged copy, in bytes."""
        return sum(m.numel() * m.element_size() for *_, m in self._layers)

    def __repr__(self) -> str:
        return (f"MergedAdapter({self.name!r}, layers={len(self._layers)}, {self.nbytes / 2**20:.0f} MiB, "
                f"layers recomputed {self.refreshes} times)")

    def refresh(self) -> int:
        """Recompute the merged weights of the layers that changed since; returns how many did."""
        import torch

        changed = 0
        with torch.no_grad():
            for k, (layer, weight, a, b, merged) in enumerate(self._layers):
                scale = float(layer.scaling[self.name])
                seen = (weight._version, weight.data_ptr(), a._version, a.data_ptr(), b._version, b.data_ptr(), scale)
                if seen == self._seen[k]:
                    continue
                torch.addmm(weight, b.to(weight.dtype), a.to(weight.dtype), alpha=scale, out=merged)  # W + s B A
                self._seen[k] = seen
                changed += 1
        self.refreshes += changed
        return changed

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Run the block on the merged copy: the adapter's outputs from the base model's operations.

        Every LoRA layer's adapters are switched off and each adapted layer computes with its
        merged weight instead of the base weight. Meant for inference (``torch.no_grad``): no
        gradient reaches the adapter through the copy. Inside the block the model must not be
        switched to another adapter or to the base model (both refuse); a nested block is a no-op.

        CUDA matrix products run in full float32 inside the block (TF32 off, restored after): a
        TF32 product keeps 10 bits of each weight, which would round away an adapter's small
        change to a weight (early in training ~1e-5 of weights of ~0.05) where the LoRA layers,
        multiplying by ``A`` and ``B`` apart, keep it.
        """
        import torch

        inside = getattr(self._every[0], "merged_copy", None)
        if inside is not None:
            if inside is not self:
                raise ValueError(f"Adapter {inside.name!r} is already merged in this block; "
                                 f"cannot merge {self.name!r} inside it.")
            yield
            return
        if side_by_side_names(self._every[0]):
            raise ValueError(f"Cannot merge adapter {self.name!r} inside a block of adapters side by side.")
        if not self.current():
            raise ValueError(f"This merged copy of adapter {self.name!r} was made from tensors the model no longer "
                             "holds (the adapter was replaced, or the model moved); get a fresh one with merged_adapter().")
        tf32 = torch.backends.cuda.matmul.allow_tf32
        previous = [layer._disable_adapters for layer in self._every]
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            self.refresh()
            for layer in self._every:
                layer._disable_adapters = True
                layer.merged_copy = self  # what a recorded CUDA graph of a pass depends on (moralkit.llm.graphs)
            for layer, *_, merged in self._layers:
                layer.base_layer._parameters["weight"] = merged
            yield
        finally:
            for layer, weight, *_ in self._layers:
                layer.base_layer._parameters["weight"] = weight
            for layer, was in zip(self._every, previous):
                layer._disable_adapters = was
                layer.__dict__.pop("merged_copy", None)
            torch.backends.cuda.matmul.allow_tf32 = tf32


def _unmergeable(model, name: str) -> str:
    """Why adapter ``name`` of ``model`` cannot be merged into a copy of the weights ("" if it can)."""
    import torch

    if name not in adapter_names(model):
        return f"the model has no adapter {name!r} (loaded: {', '.join(adapter_names(model)) or 'none'})"
    every = _tuner_layers(model)
    layers = [layer for layer in every if name in getattr(layer, "lora_A", {})]
    if not layers:
        return "it adapts no layer"
    for layer in every:
        if getattr(layer, "merged", False):
            return "peft has already merged adapters into the weights"
        if layer not in layers and any(name in getattr(layer, key, {}) for key in getattr(layer, "adapter_layer_names", ())):
            return f"it adapts a {type(layer).__name__} layer in another way than LoRA on a linear layer"
    for layer in layers:
        base = getattr(layer, "base_layer", None)
        weight = getattr(base, "weight", None)
        if type(base) is not torch.nn.Linear or not isinstance(weight, torch.nn.Parameter):
            return f"it adapts a {type(base).__name__} layer (only plain torch Linear layers are merged)"
        if weight.dtype != torch.float32:
            return (f"a base weight is {weight.dtype}: merged into {weight.dtype} weights, an adapter's small "
                    "changes would round away (float32 weights only)")
        if (getattr(layer, "fan_in_fan_out", False) or getattr(layer, "use_dora", {}).get(name, False)
                or getattr(layer, "lora_bias", {}).get(name, False) or name in getattr(layer, "lora_variant", {})):
            return "it is not plain LoRA (DoRA, LoRA bias, fan_in_fan_out or another variant)"
        if not hasattr(layer, "_disable_adapters"):
            return f"{type(layer).__name__} has no adapter switch"
    return ""


def mergeable(model, name: str) -> bool:
    """Whether adapter ``name`` of ``model`` can be folded into a copy of the weights (:class:`MergedAdapter`)."""
    return not _unmergeable(model, name)


def merged_adapter(model, name: str) -> MergedAdapter:
    """The :class:`MergedAdapter` of adapter ``name`` of ``model``: made on first use and kept on the
    model (its memory is freed with the model, or by :func:`drop_merged`)."""
    kept = model.__dict__.setdefault("_moralkit_merged", {})
    key = (name, tuple(adapter_names(model)))  # another adapter set: its layers are looked up anew
    if key not in kept or not kept[key].current():
        drop_merged(model, name)
        kept[key] = MergedAdapter(model, name)
    return kept[key]


def invalidate_merged(model) -> None:
    """Mark every merged copy of ``model`` for recomputation (:meth:`MergedAdapter.invalidate`)."""
    for merged in model.__dict__.get("_moralkit_merged", {}).values():
        merged.invalidate()


def drop_merged(model, name: str | None = None) -> None:
    """Free the merged copies of ``model`` (of adapter ``name`` only, when given)."""
    kept = model.__dict__.get("_moralkit_merged", {})
    for key in [k for k in kept if name is None or k[0] == name]:
        del kept[key]
