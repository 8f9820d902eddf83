"""One name for the key/value cache across transformers versions.

transformers 5.24 renamed a causal LM's ``past_key_values`` (argument and output field) to
``cache``; the old name still works there but warns (``FutureWarning: `past_key_values` is
deprecated and will be removed in version 5.40.0``). Colab ships transformers 5.15, which knows
only ``past_key_values``. Code that continues decoding from a cache therefore says::

    out = model(input_ids=ids, use_cache=True, **cache_kwargs(cache))
    cache = output_cache(out)

and gets the current name on every version, with no warning.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CACHE_ARG", "cache_kwargs", "output_cache"]


def _cache_argument_name() -> str:
    """``"cache"`` where transformers' model outputs have that field (5.24+), else ``"past_key_values"``."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    names = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in names else "past_key_values"


CACHE_ARG: str = _cache_argument_name()
"""The keyword a causal LM's ``forward`` takes its key/value cache by, in the installed transformers."""


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """``{CACHE_ARG: cache}``: pass a key/value cache to a model call under the current name."""
    return {CACHE_ARG: cache}


def output_cache(output: Any) -> Any:
    """The key/value cache a model call returned (``None`` if it returned none), under the current name."""
    return getattr(output, CACHE_ARG, None)
