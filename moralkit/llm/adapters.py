"""LoRA adapters on one shared base model: load several, switch between them, or switch them off.

Fine-tuned agents differ only in their small LoRA adapters, so a class can evaluate six agents
with one copy of the base model in memory::

    model = attach_adapters(base_model, {"game": "runs/game/adapter", "deont": "runs/deont/adapter"})
    with using_adapter(model, "deont"):
        ...                       # the deontological agent
    with using_adapter(model, BASE):
        ...                       # the untuned base model (all adapters disabled)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Mapping

__all__ = ["BASE", "attach_adapters", "using_adapter", "adapter_names"]

BASE = "base"
"""Adapter name meaning "no adapter": the untuned base model."""


def adapter_names(model) -> list[str]:
    """Names of the adapters loaded on a peft model (empty for a plain model)."""
    return sorted(getattr(model, "peft_config", {}) or {})


def attach_adapters(model, adapters: Mapping[str, str | Path]):
    """Load adapters saved in peft's format onto ``model`` (a base model or a PeftModel).

    Returns the PeftModel (a base model is wrapped; its weights are shared, not copied).
    """
    from peft import PeftModel

    for name, path in adapters.items():
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


@contextlib.contextmanager
def using_adapter(model, adapter: str | None) -> Iterator[None]:
    """Run the block with ``adapter`` active (``BASE``: all adapters disabled; ``None``: unchanged)."""
    if adapter is None:
        yield
        return
    names = adapter_names(model)
    if adapter == BASE:
        if not names:
            yield  # a plain model is its own base
            return
        with model.disable_adapter():
            yield
        return
    if adapter not in names:
        raise ValueError(f"The model has no adapter {adapter!r}; loaded adapters: {', '.join(names) or 'none'}.")
    previous = model.active_adapter
    model.set_adapter(adapter)
    try:
        yield
    finally:
        if previous in names:
            model.set_adapter(previous)
