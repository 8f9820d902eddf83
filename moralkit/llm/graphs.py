"""CUDA graphs for the PPO epochs: the decoder stack replayed as one launch per padded shape.

On a GPU, a forward and backward pass of a small model with LoRA on its layers is thousands of
small kernels, each costing more host time than GPU time (docs/performance.md). A CUDA graph
records them once and replays them as one launch; on an H100 one minibatch of the paper preset
(5 rows, forward and backward) took 189 ms eagerly and 30-45 ms replayed
(``benchmarks/gpu_probe.py``, ``data/results/gpu_probe_h100.csv``). A graph needs fixed shapes and
no host-side decisions inside it, so :class:`GraphedDecoder`:

* pads each batch on the left to a multiple of ``length_step`` tokens (left padding keeps every
  row's last token in the last column, which the caller's ``logits_to_keep`` relies on);
* builds the attention mask itself, as a 4-D boolean tensor (causal, padding masked out), outside
  the graph, so that transformers uses it as it is and makes no decision that would read the GPU;
* captures one graph (forward and backward, :func:`torch.cuda.make_graphed_callables`) per
  (rows, padded length), the first time that shape comes, under a forked random state so that
  capturing draws no random numbers from the run's streams.

Passes without gradient (the scoring passes before the epochs: old log-probabilities and values,
and the reference pass with the adapters disabled) are recorded too, forward only, one graph per
(rows, padded length, state), where the state is what a replay cannot see from the inputs: the
layers' train/eval mode and which LoRA adapter is active or whether adapters are disabled.

Real tokens see exactly what they saw before (the same keys, the same positions), so the outputs
at real positions are those of the eager pass up to the order of floating-point sums; the tests
check this on a CPU, where the same padded pass runs eagerly (``capture=False``). Passes it cannot
take (one that uses or fills a key/value cache, embeddings instead of ids) run the decoder's own
forward.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Hashable, Sequence

import torch
from torch import nn

__all__ = ["GraphedDecoder", "GraphedLogits", "graphed_logits", "graphs_pay", "padded_causal_mask", "pad_rows"]


def graphs_pay(device: torch.device | str) -> bool:
    """Whether ``PPOConfig(compile="auto")`` records CUDA graphs on ``device``: a CUDA GPU of the
    Ampere generation or newer (compute capability 8+).

    There an update is bound by launching thousands of small kernels, which graphs remove (3.5x per
    paper-preset update on an H100, docs/performance.md). An older GPU such as Colab's T4 is bound by
    arithmetic instead, where the eager trainer's shared-prefix split saves more than graphs (which
    take whole rows) would: not measured there, so it keeps the eager path.

    >>> graphs_pay("cpu")
    False
    """
    device = torch.device(device)
    return (device.type == "cuda" and torch.cuda.is_available()
            and torch.cuda.get_device_capability(device)[0] >= 8)


def padded_causal_mask(keep: torch.Tensor) -> torch.Tensor:
    """``keep`` [B, T] (1 = real token) -> a boolean attention mask [B, 1, T, T] (True = may attend).

    Causal, with padding keys masked out. A query with nothing left to attend (a pad before the
    row's first real token) attends to itself instead: its output is never read, and an all-masked
    row would make attention produce NaN, which the backward pass would spread.

    >>> padded_causal_mask(torch.tensor([[0, 1, 1]]))[0, 0].int().tolist()
    [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    """
    keep = keep.bool()
    length = keep.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=keep.device).tril()
    mask = causal.unsqueeze(0) & keep.unsqueeze(1)  # [B, T(query), T(key)]
    lonely = ~mask.any(-1, keepdim=True)
    mask = mask | (lonely & torch.eye(length, dtype=torch.bool, device=keep.device))
    return mask.unsqueeze(1)


class _Stack(nn.Module):
    """The decoder as a module of tensors only (what graph capture takes): ids, positions, mask -> hidden."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = type(self.decoder).forward(self.decoder, input_ids=ids, attention_mask=mask, position_ids=positions,
                                         use_cache=False)
        return out.last_hidden_state


class GraphedDecoder:
    """Stands in for a decoder stack's ``forward`` during the PPO epochs (see the module docstring).

    ``decoder`` is the model's stack of layers (``model.get_base_model().get_decoder()``);
    ``capture`` (default: on CUDA) records graphs, else the padded pass runs eagerly.
    ``captured`` lists the shapes recorded so far, ``passes`` counts the padded passes run and
    ``fallbacks`` the calls handed to the decoder's own forward.
    """

    def __init__(self, decoder: nn.Module, *, pad_id: int = 0, length_step: int = 32,
                 capture: bool | None = None, warmup: int = 3) -> None:
        if length_step < 1:
            raise ValueError(f"length_step must be at least 1, got {length_step}.")
        self.decoder = decoder
        self.pad_id = pad_id
        self.length_step = length_step
        self.warmup = warmup
        device = next(decoder.parameters()).device
        self.capture = device.type == "cuda" if capture is None else capture
        self._graphs: dict[tuple[int, int], nn.Module] = {}
        self._forward_graphs: dict[tuple, tuple[Any, tuple[torch.Tensor, ...], torch.Tensor]] = {}
        # one adapter layer tells the adapter state (peft switches every layer together)
        from peft.tuners.tuners_utils import BaseTunerLayer

        self._lora = next((m for m in decoder.modules() if isinstance(m, BaseTunerLayer)), None)
        self._eager = _Stack(decoder)
        self.passes = 0
        self.fallbacks = 0

    @property
    def captured(self) -> list[tuple[int, int]]:
        """The (rows, padded length) shapes with a recorded forward-and-backward graph."""
        return sorted(self._graphs)

    @property
    def captured_forward(self) -> list[tuple]:
        """The (rows, padded length, state) keys with a recorded forward-only (no-gradient) graph."""
        return sorted(self._forward_graphs, key=repr)

    def state(self) -> tuple:
        """What a recorded pass depends on beyond its inputs: (training, adapters disabled, active adapters,
        adapters side by side, the merged copy of an adapter the layers compute with)."""
        if self._lora is None:
            return (self.decoder.training,)
        from .adapters import side_by_side_names

        side = side_by_side_names(self._lora)
        merged = getattr(self._lora, "merged_copy", None)
        return (self.decoder.training, bool(self._lora.disable_adapters), tuple(self._lora.active_adapters)) + (
            (side,) if side else ()) + (("merged", merged.name, merged.serial) if merged is not None else ())

    def forget(self) -> None:
        """Drop every recording (and with them their memory pools): the next passes record anew."""
        self._graphs.clear()
        self._forward_graphs.clear()

    def __repr__(self) -> str:
        mode = "CUDA graphs" if self.capture else "padded, eager"
        return (f"GraphedDecoder({mode}, length_step={self.length_step}, captured={self.captured}, "
                f"passes={self.passes}, fallbacks={self.fallbacks})")

    def __call__(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 position_ids: torch.Tensor | None = None, **kwargs: Any):
        from transformers.modeling_outputs import BaseModelOutputWithPast

        # anything beyond ids, mask and positions (a key/value cache -- `past_key_values`, or `cache`
        # in newer transformers --, embeddings, output options) goes to the decoder's own forward
        others = {k: v for k, v in kwargs.items() if v is not None and k not in ("use_cache", "cache_position", "return_dict")}
        if input_ids is None or others or kwargs.get("use_cache"):
            self.fallbacks += 1
            return type(self.decoder).forward(self.decoder, input_ids=input_ids, attention_mask=attention_mask,
                                              position_ids=position_ids, **kwargs)
        rows, length = input_ids.shape
        padded = math.ceil(length / self.length_step) * self.length_step
        extra = padded - length
        keep = torch.ones_like(input_ids) if attention_mask is None else attention_mask.to(input_ids.dtype)
        if position_ids is None:
            position_ids = (keep.cumsum(-1) - 1).clamp(min=0)
        ids = nn.functional.pad(input_ids, (extra, 0), value=self.pad_id)
        positions = nn.functional.pad(position_ids, (extra, 0), value=0)
        mask = padded_causal_mask(nn.functional.pad(keep, (extra, 0), value=0))
        if not self.capture:
            hidden = self._eager(ids, positions, mask)
        elif torch.is_grad_enabled():
            hidden = self._graph(rows, padded, (ids, positions, mask))(ids, positions, mask)
        else:
            hidden = self._forward(rows, padded, (ids, positions, mask))
        hidden = hidden[:, extra:]
        self.passes += 1
        return BaseModelOutputWithPast(last_hidden_state=hidden)

    def _graph(self, rows: int, length: int, sample: tuple[torch.Tensor, ...]) -> nn.Module:
        from .adapters import side_by_side_names

        # one learner's recordings hold its own adapter; several side by side, theirs
        key = (rows, length) + ((side_by_side_names(self._lora),) if self._lora is not None and
                                side_by_side_names(self._lora) else ())
        if key not in self._graphs:
            stack = _Stack(self.decoder)
            device = sample[0].device
            with torch.random.fork_rng(devices=[device]):  # warm-up and capture draw no numbers from the run
                self._graphs[key] = torch.cuda.make_graphed_callables(
                    stack, tuple(t.clone() for t in sample), num_warmup_iters=self.warmup,
                    allow_unused_input=True)  # another learner's adapter in the same model takes no part
        return self._graphs[key]

    def _forward(self, rows: int, length: int, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """A no-gradient pass, replayed from its recorded graph (recorded the first time its key comes)."""
        key = (rows, length, self.state())
        if key not in self._forward_graphs:
            device = inputs[0].device
            static = tuple(t.clone() for t in inputs)
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.random.fork_rng(devices=[device]), torch.cuda.stream(stream):
                for _ in range(self.warmup):  # outside the graph: allocations, library handles
                    self._eager(*static)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.random.fork_rng(devices=[device]), torch.cuda.graph(graph):
                out = self._eager(*static)
            self._forward_graphs[key] = (graph, static, out)
        graph, static, out = self._forward_graphs[key]
        for buffer, value in zip(static, inputs):
            buffer.copy_(value)
        graph.replay()
        return out.clone()  # the next replay overwrites `out`


def pad_rows(seqs: Sequence[Sequence[int]], pad_id: int, length: int, rows: int, device=None):
    """Left-pad token rows to ``length`` and repeat the first row up to ``rows`` rows.

    Returns ``(ids, positions, keep)``, each [rows, length]: positions count from each row's first
    real token, ``keep`` is 1 on real tokens.

    >>> ids, positions, keep = pad_rows([[5, 6], [7]], pad_id=0, length=3, rows=3)
    >>> ids.tolist(), positions.tolist(), keep.tolist()
    ([[0, 5, 6], [0, 0, 7], [0, 5, 6]], [[0, 0, 1], [0, 0, 0], [0, 0, 1]], [[0, 1, 1], [0, 0, 1], [0, 1, 1]])
    """
    seqs = [list(s) for s in seqs]
    seqs += [seqs[0]] * (rows - len(seqs))
    ids = torch.full((rows, length), pad_id, dtype=torch.long)
    keep = torch.zeros((rows, length), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, length - len(seq):] = torch.as_tensor(seq, dtype=torch.long)
        keep[i, length - len(seq):] = 1
    positions = (keep.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), positions.to(device), keep.to(device)


class GraphedLogits:
    """No-gradient forward passes of a causal LM (sampling), replayed as CUDA graphs.

    :meth:`logits` reads whole token rows -- no key/value cache: a graph needs fixed shapes, and a
    replayed pass over a few hundred tokens costs less than the eager calls a cache saves -- left-
    padded to a multiple of ``length_step`` tokens and to a power of two of rows, and returns the
    logits of each row's last ``keep`` tokens. One graph per (``state``, rows, length, keep):
    ``state`` names what the weights are doing (e.g. which adapter is active), which the caller
    must keep true whenever it passes that name. Without ``capture`` (default: on CUDA) the same
    padded pass runs eagerly. Get the one of a model with :func:`graphed_logits`.
    """

    def __init__(self, model: nn.Module, *, pad_id: int = 0, length_step: int = 32, capture: bool | None = None) -> None:
        self.model = model
        self.pad_id = pad_id
        self.length_step = length_step
        device = next(model.parameters()).device
        self.capture = device.type == "cuda" if capture is None else capture
        self._graphs: dict[tuple, tuple[Any, tuple[torch.Tensor, ...], torch.Tensor]] = {}
        self.passes = 0

    @property
    def captured(self) -> list[tuple]:
        """The (state, rows, padded length, keep) keys with a recorded graph."""
        return sorted(self._graphs, key=repr)

    def forget(self) -> None:
        """Drop every recording (and with them their memory pools): the next passes record anew."""
        self._graphs.clear()

    def __repr__(self) -> str:
        mode = "CUDA graphs" if self.capture else "padded, eager"
        return f"GraphedLogits({mode}, length_step={self.length_step}, graphs={len(self._graphs)}, passes={self.passes})"

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                          logits_to_keep=keep).logits

    @torch.no_grad()
    def logits(self, seqs: Sequence[Sequence[int]], keep: int = 1, state: Hashable = None, groups: int = 1
               ) -> torch.Tensor:
        """Logits [len(seqs), keep, vocab] at each row's last ``keep`` tokens (rows of any lengths).

        ``groups``: the rows are that many equal blocks that must stay blocks of one size (adapters
        side by side, :func:`moralkit.llm.adapters.adapters_side_by_side`): each block is padded
        to a power of two of rows on its own.
        """
        device = next(self.model.parameters()).device
        n = len(seqs)
        if groups < 1 or n % groups:
            raise ValueError(f"{n} rows cannot be split into {groups} equal groups.")
        per = n // groups
        per_padded = 1 << max(0, per - 1).bit_length()
        rows = groups * per_padded
        if groups > 1:  # each block filled up with copies of its own first row
            seqs = [row for g in range(groups) for row in
                    list(seqs[g * per:(g + 1) * per]) + [seqs[g * per]] * (per_padded - per)]
        length = math.ceil(max(len(s) for s in seqs) / self.length_step) * self.length_step
        ids, positions, keep_mask = pad_rows(seqs, self.pad_id, length, rows, device)
        mask = padded_causal_mask(keep_mask)
        self.passes += 1

        def real(out: torch.Tensor) -> torch.Tensor:  # the rows asked for, without the fillers
            return out.reshape(groups, per_padded, *out.shape[1:])[:, :per].reshape(n, *out.shape[1:])

        if not self.capture:
            return real(self._run(ids, positions, mask, keep))
        key = (state, rows, length, keep)
        if key not in self._graphs:
            static = (ids.clone(), positions.clone(), mask.clone())
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up outside the graph (allocations, library handles)
                    self._run(*static, keep)
            torch.cuda.current_stream(device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._run(*static, keep)
            self._graphs[key] = (graph, static, out)
        graph, static, out = self._graphs[key]
        for buffer, value in zip(static, (ids, positions, mask)):
            buffer.copy_(value)
        graph.replay()
        return real(out).clone()


_GRAPHED: "weakref.WeakKeyDictionary[nn.Module, GraphedLogits]" = weakref.WeakKeyDictionary()


def graphed_logits(model: nn.Module, pad_id: int = 0) -> GraphedLogits:
    """The :class:`GraphedLogits` of ``model`` (one per model, shared by all its players)."""
    if model not in _GRAPHED:
        _GRAPHED[model] = GraphedLogits(model, pad_id=pad_id)
    return _GRAPHED[model]
