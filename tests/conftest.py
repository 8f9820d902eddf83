"""Shared test set-up: one torch thread, and the embedded model's tokenizer."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny forward passes run far faster on one thread, above all on a small shared CI machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded SmolLM2 tokenizer (converted once per machine, then cached)."""
    from moralkit.llm.models import embedded_tokenizer

    return embedded_tokenizer()
