"""The key/value cache is passed and read under transformers' current name: exact, and silent."""

import logging
import warnings

import torch

from moralkit.llm.agent import forward_batch
from moralkit.llm.compat import CACHE_ARG, cache_kwargs, output_cache
from moralkit.llm.models import tiny_random_model


def test_cache_argument_name_is_one_the_installed_transformers_accepts():
    import inspect

    from transformers import LlamaForCausalLM

    assert CACHE_ARG in inspect.signature(LlamaForCausalLM.forward).parameters


def test_continuing_from_a_cache_is_exact_and_raises_no_deprecation(tokenizer, caplog):
    model = tiny_random_model(tokenizer, seed=1)
    ids = torch.tensor([tokenizer.encode("The rules of the game are simple. You answer with one word")])
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with torch.no_grad():
            full = model(input_ids=ids).logits[:, -1]
            head = output_cache(model(input_ids=ids[:, :-1], use_cache=True))
            assert head is not None
            step = model(input_ids=ids[:, -1:], use_cache=True, **cache_kwargs(head)).logits[:, -1]
            # the batched player path (shared prefix + cache) says nothing either
            forward_batch(model, [ids[0].tolist(), ids[0, :-2].tolist() + ids[0, -1:].tolist()], pad_id=0, use_cache=True)
    assert torch.allclose(full, step, atol=1e-5)
    noise = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not [m for m in noise if "past_key_values" in m or "cache" in m], noise
    assert "deprecated" not in caplog.text
