"""A language model as a player of iterated matrix games.

:class:`LLMPlayer` wraps a causal LM and its tokenizer. For a batch of memory-1 states
(``my_prev``, ``opp_prev``) it

* **samples** answers -- :meth:`LLMPlayer.decide` renders one prompt per state, wraps it in the
  chat template, samples at temperature 1 from the full vocabulary as many tokens as the labels
  need, and parses each answer into C / D / ILLEGAL. The returned :class:`Decision` keeps the
  exact token ids, which is what PPO scores;
* computes **exact label probabilities** -- :meth:`LLMPlayer.label_probabilities` scores both
  labels by teacher forcing in one batched forward pass, and :meth:`LLMPlayer.policy_table` gives
  P(C), P(D), P(illegal) for the four states, ready for a heatmap.

>>> from moralkit.games import get_game
>>> from moralkit.llm.models import load_model
>>> player = LLMPlayer(*load_model())                                    # doctest: +SKIP
>>> rng = np.random.default_rng(0)
>>> decision = player.decide(get_game("prisoners_dilemma"), [0, 1], [0, 0], rng)  # doctest: +SKIP
>>> decision.moves                                                        # doctest: +SKIP
array([-1,  0])

Speed: all prompts of a batch share a long token prefix (system text, rules, payoff table). It is
run through the model once and its key/value cache is reused by every row (``share_prefix=True``,
exact up to float rounding). Identical prompts are read once (a batch of one game has at most 16
distinct prompts: 4 states x 4 label orders). Rows are left-padded and decoded with the KV cache.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from moralkit.games import C, D, ILLEGAL, MOVE_NAMES, MatrixGame
from moralkit.llm.compat import cache_kwargs, output_cache
from moralkit.llm.graphs import graphed_logits, graphs_pay
from moralkit.llm.prompts import (
    TRAIN_LABELS,
    LabelSet,
    chat_text,
    get_label_set,
    parse_answers,
    render_prompt,
    render_prompts,
)

__all__ = [
    "Decision",
    "LLMPlayer",
    "forward_batch",
    "ForwardResult",
    "left_pad",
    "common_prefix_length",
    "PrefixCache",
    "split_pays",
    "prefix_split_is_exact",
    "label_token_ids",
    "stop_token_ids",
    "model_device",
    "eval_mode",
    "decide_side_by_side",
]

_MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate forward pass
_LABEL_ORDERS = ((False, False), (False, True), (True, False), (True, True))
"""The four label-order combinations of a prompt (``render_prompt``'s ``flips``; True: D's label first)."""


# --------------------------------------------------------------------------- results
@dataclass
class Decision:
    """The answers of one :meth:`LLMPlayer.decide` (or :meth:`LLMPlayer.answer`) call, row-aligned.

    Attributes
    ----------
    messages:
        The user messages (before the chat template).
    prompts:
        The full chat texts the model read.
    prompt_ids:
        Token ids of each prompt (no padding).
    answer_ids:
        Exactly the sampled token ids of each answer. A stop token (eos / end of turn) is kept
        when it was sampled -- it was the model's choice, so PPO scores it; nothing after it
        (padding) is kept. Never empty.
    answers:
        The answers as text (the sampled tokens minus a final stop token, decoded verbatim).
    moves:
        ``C`` (0), ``D`` (1) or ``ILLEGAL`` (-1) per row.
    labels:
        The label set the answers were parsed with.
    """

    messages: list[str]
    prompts: list[str]
    prompt_ids: list[list[int]]
    answer_ids: list[list[int]]
    answers: list[str]
    moves: np.ndarray
    labels: LabelSet = field(default=TRAIN_LABELS)

    def __len__(self) -> int:
        return len(self.moves)

    @property
    def illegal_rate(self) -> float:
        """Fraction of answers that are neither label."""
        return float(np.mean(self.moves == ILLEGAL)) if len(self) else 0.0

    def to_frame(self):
        """One row per answer: the answer text, the move name and the number of answer tokens."""
        import pandas as pd

        return pd.DataFrame(
            {
                "answer": self.answers,
                "move": [MOVE_NAMES[int(m)] for m in self.moves],
                "answer_tokens": [len(a) for a in self.answer_ids],
            }
        )

    def __repr__(self) -> str:
        counts = {name: int(np.sum(self.moves == m)) for m, name in MOVE_NAMES.items()}
        return f"Decision({len(self)} answers: {counts}, labels={self.labels.name!r})"


# --------------------------------------------------------------------------- low-level helpers
def model_device(model) -> torch.device:
    """The device of the model's (first) parameters."""
    return next(model.parameters()).device


@contextlib.contextmanager
def eval_mode(model) -> Iterator[None]:
    """Put ``model`` in eval mode (no dropout) for the block, then restore its previous mode.

    A model already in eval mode is left alone (switching walks every module).
    """
    if not model.training:
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train(True)


def _active_adapter(model) -> str | None:
    """The adapter a peft model has active now (None for a plain model): what a new player keeps."""
    if not getattr(model, "peft_config", None):
        return None
    active = getattr(model, "active_adapter", None)
    if isinstance(active, (list, tuple)):
        active = active[0] if len(active) == 1 else None
    return active if isinstance(active, str) else None


def _using_adapter(model, adapter: str | None):
    """:func:`moralkit.llm.adapters.using_adapter`, imported only when an adapter is named."""
    if adapter is None:
        return contextlib.nullcontext()
    from moralkit.llm.adapters import using_adapter

    return using_adapter(model, adapter)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to one tensor: ``(input_ids, attention_mask)``, both ``(B, T)`` long."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, width - len(s) :] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix shared by all sequences."""
    if not seqs:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for s in seqs[1:]:
        k = 0
        while k < n and s[k] == first[k]:
            k += 1
        n = k
    return n


def _base_of(model):
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def split_pays(share_prefix: bool | str, device: torch.device) -> bool:
    """Whether to run a batch's shared prefix separately: ``share_prefix`` True/False, or ``"auto"``.

    Splitting saves arithmetic (the prefix runs once, not once per row) at the price of one more
    model call. ``"auto"`` splits where arithmetic is the cost: on a CPU, and on a GPU older than
    Ampere (a T4 computes float32 at ~8 TFLOP/s: a 40-row batch of 205-token prompts through
    SmolLM2 is ~0.5 s of arithmetic, ten times the cost of a call). It does not split on a recent
    GPU, where the cost of a call is its kernel launches (measured on an H100: an optimiser step
    took 465 ms with the split and 200 ms without). A :class:`PrefixCache` is used on every device:
    it adds no call.
    """
    if share_prefix == "auto":
        device = torch.device(device)
        if device.type == "cuda":  # older than Ampere: where graphs do not pay either (one threshold)
            return torch.cuda.is_available() and not graphs_pay(device)
        return device.type == "cpu"
    if isinstance(share_prefix, bool):
        return share_prefix
    raise ValueError(f"share_prefix must be True, False or 'auto', got {share_prefix!r}.")


def prefix_split_is_exact(model, longest_sequence: int) -> bool:
    """Whether running a shared prefix through the key/value cache gives exactly the full-pass result.

    Not with gradient checkpointing (transformers then refuses to build a cache in training), and
    not when a sliding-window attention layer (Gemma-2) would drop cached prefix tokens that the
    full pass still sees -- only possible for sequences longer than the window (4096 for Gemma-2).
    """
    base = _base_of(model)
    checkpointing = getattr(base, "is_activation_checkpointing", None)  # transformers >= 5.2x
    if checkpointing is None:
        checkpointing = getattr(base, "is_gradient_checkpointing", False)
    if checkpointing and base.training:
        return False
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    window = getattr(config, "sliding_window", None)
    return window is None or longest_sequence <= window


class PrefixCache:
    """The keys and values of a token prefix, computed once and reused by later forward passes.

    All prompts of a game start with the same tokens (system text, rules, payoff table: 134 of the
    205 tokens of a Prisoner's Dilemma prompt for SmolLM2). While the model's weights do not change
    -- the rounds of one episode, or the frozen base model for a whole run -- that beginning needs
    to run only once: :func:`forward_batch` takes it from here and runs only the rest of each row.
    Exact: these are the keys and values the full pass computes.

    A cache belongs to one state of the weights: :meth:`clear` it when they change. It is filled
    only outside autograd (``torch.no_grad``). When a batch does not start with the cached tokens,
    the cache is refilled with what the batch shares with them, so it settles on the part that
    all prompts share after at most one miss.

    >>> cache = PrefixCache()
    >>> cache
    PrefixCache(empty)
    """

    def __init__(self) -> None:
        self.tokens: tuple[int, ...] = ()
        self._cache: Any = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        if not self.tokens:
            return "PrefixCache(empty)"
        return f"PrefixCache({len(self.tokens)} tokens, hits={self.hits}, misses={self.misses})"

    def clear(self) -> None:
        """Forget the cached prefix (call it when the model's weights change)."""
        self.tokens, self._cache = (), None

    def usable_length(self, seqs: Sequence[Sequence[int]], limit: int) -> int:
        """How many cached tokens every row of ``seqs`` starts with (0 unless all of the cache fits)."""
        n = len(self.tokens)
        if n == 0 or n > limit or any(tuple(s[:n]) != self.tokens for s in seqs):
            return 0
        return n

    def store(self, tokens: Sequence[int], cache) -> None:
        """Remember ``cache`` (the keys/values of ``tokens``, batch of one row)."""
        self.tokens, self._cache = tuple(tokens), _copy_cache(cache)

    def expanded(self, n_rows: int):
        """A copy of the cached keys/values for ``n_rows`` rows; the stored ones are never changed."""
        cache = _copy_cache(self._cache)
        if n_rows > 1:
            cache.batch_repeat_interleave(n_rows)
        return cache


def _copy_cache(cache):
    """A copy of a transformers cache whose layers can be extended without touching the original.

    The layers' tensors are shared: a cache layer never writes into its tensors, it rebinds them
    (``keys = torch.cat([keys, new])``), so the copy's growth leaves the original as it was.
    """
    copied = copy.copy(cache)
    if hasattr(cache, "layers"):
        copied.layers = [copy.copy(layer) for layer in cache.layers]
    return copied


class ForwardResult(NamedTuple):
    """What :func:`forward_batch` returns (a tuple; fields by name)."""

    logits: torch.Tensor
    """``(B, logits_to_keep, V)``: logits at each row's last ``logits_to_keep`` tokens."""
    cache: Any
    """The key/value cache (``None`` unless ``use_cache``), to continue decoding."""
    attention_mask: torch.Tensor
    """``(B, T_total)`` mask covering the cache (shared prefix + left-padded rows)."""
    last_position: torch.Tensor
    """``(B,)`` position id of each row's last token."""
    output: Any
    """The model's raw output for the rows (e.g. ``hidden_states`` with ``output_hidden_states=True``)."""
    prefix_len: int = 0
    """How many leading tokens (shared by all rows) ran once instead of once per row."""


def forward_batch(
    model,
    seqs: Sequence[Sequence[int]],
    *,
    pad_id: int,
    logits_to_keep: int = 1,
    use_cache: bool = False,
    share_prefix: bool | str = True,
    prefix_cache: PrefixCache | None = None,
    max_prefix: int | None = None,
    groups: int = 1,
    **model_kwargs,
) -> ForwardResult:
    """One causal-LM forward over token sequences of different lengths.

    Rows are left-padded so that every row *ends* at the last column: ``logits[:, -k:]`` are the
    logits at each row's last ``k`` real tokens (``k = logits_to_keep``). To score an answer of
    ``n`` tokens appended to its prompt, keep ``n + 1`` and read ``logits[i, -n-1:-1]``.
    Differentiable (call it outside ``torch.no_grad`` to train through it). ``model_kwargs`` go to
    the model call for the rows (e.g. ``output_hidden_states=True``; hidden states then cover only
    the rows' own, non-shared tokens).

    The tokens shared by all rows (a shared prefix) can run once instead of once per row, their
    keys/values repeated for every row -- exact:

    * ``prefix_cache``: a :class:`PrefixCache` of the same weights. Its tokens are used when every
      row starts with them; otherwise the shared prefix is run now and stored there (outside
      autograd). Adds no model call once filled.
    * ``share_prefix``: without a usable cache, run the shared prefix as a separate call -- ``True``,
      ``False`` or ``"auto"`` (where it pays: see :func:`split_pays`).
    * ``max_prefix``: share at most this many tokens (e.g. the part all prompts of a game share).
      Without it, the shared part stops ``logits_to_keep`` tokens before the end of the shortest
      row; with it, the caller vouches that the logits it reads lie after ``max_prefix``.
    * ``groups``: the rows are that many equal blocks, each through its own adapter
      (:func:`moralkit.llm.adapters.adapters_side_by_side`): the shared prefix then runs once per
      block (one row each) and each block's rows take its keys and values. No ``prefix_cache``.
    """
    device = model_device(model)
    n_rows = len(seqs)
    if groups < 1 or n_rows % groups or (groups > 1 and prefix_cache is not None):
        raise ValueError(f"forward_batch: {n_rows} rows in {groups} groups (equal blocks, and no prefix cache).")
    # every row keeps the tokens whose logits are asked for out of the shared part (unless the
    # caller, knowing which of those logits it reads, says how far the shared part may reach)
    shortest = min(len(s) for s in seqs)
    limit = shortest - max(1, logits_to_keep) if max_prefix is None else min(max_prefix, shortest - 1)
    cache, prefix = None, 0
    exact = prefix_split_is_exact(model, max(len(s) for s in seqs))
    if prefix_cache is not None and exact:
        prefix = prefix_cache.usable_length(seqs, limit)
        if prefix:
            prefix_cache.hits += 1
            cache = prefix_cache.expanded(n_rows)
    if cache is None and exact and (prefix_cache is not None or (n_rows > 1 and split_pays(share_prefix, device))):
        prefix = min(common_prefix_length(seqs), limit)
        if prefix_cache is not None and prefix_cache.tokens:
            prefix = min(prefix, common_prefix_length([prefix_cache.tokens, seqs[0]]))
        if prefix >= _MIN_SHARED_PREFIX:
            head = torch.as_tensor([list(seqs[0][:prefix])] * groups, dtype=torch.long, device=device)
            cache = output_cache(model(input_ids=head, use_cache=True, logits_to_keep=1))
            if prefix_cache is not None and not torch.is_grad_enabled():
                prefix_cache.misses += 1
                prefix_cache.store(seqs[0][:prefix], cache)
            if n_rows > groups:  # each block's prefix row repeated for the block's rows, blocks kept in order
                cache.batch_repeat_interleave(n_rows // groups)
        else:
            prefix = 0
    ids, tail_mask = left_pad([s[prefix:] for s in seqs], pad_id, device)
    mask = torch.cat([torch.ones((n_rows, prefix), dtype=torch.long, device=device), tail_mask], dim=1)
    positions = (prefix + tail_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=use_cache or cache is not None,
        logits_to_keep=logits_to_keep,
        **cache_kwargs(cache),
        **model_kwargs,
    )
    return ForwardResult(out.logits, output_cache(out) if use_cache else None, mask, positions[:, -1], out, prefix)


def stop_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos and the generation config's eos ids."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if source is None:
            continue
        ids.update([source] if isinstance(source, int) else list(source))
    return sorted(ids)


def label_token_ids(tokenizer, labels: LabelSet) -> tuple[list[int], list[int]]:
    """Canonical token ids of the C and D labels (``tokenizer.encode(label)``, no special tokens)."""
    return tuple(tokenizer.encode(label, add_special_tokens=False) for label in labels.labels)  # type: ignore[return-value]


def _as_moves(x, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.int64).reshape(-1)
    if arr.size and not np.all((arr == C) | (arr == D)):
        raise ValueError(f"{name} must hold only C (0) and D (1); got {np.unique(arr).tolist()}.")
    return arr


# --------------------------------------------------------------------------- the player
def decide_side_by_side(players: Sequence["LLMPlayer"], requests: Sequence[tuple]) -> list[Decision]:
    """Each player's :meth:`LLMPlayer.decide` for its ``(game, my_prev, opp_prev, rng)``, in shared passes.

    Players that sample through graphed passes (``graphs=True``) with adapters of their own on
    one model -- the learners of runs trained side by side -- answer together: every pass reads
    all players' rows at once, player ``k``'s block through its adapter
    (:func:`moralkit.llm.adapters.adapters_side_by_side`), so a GPU replays one recording per
    round for all of them and never switches adapters. Each player draws its label orders and
    its sampler's seed from its own ``rng`` in the order ``decide`` draws them, and its tokens
    with the same random numbers, so each gets the answers it would get alone (up to the order
    of floating-point sums). Players that cannot share passes (no graphs, other labels' shape,
    unequal batches) simply decide one after the other.
    """
    if len(players) != len(requests):
        raise ValueError(f"{len(players)} players but {len(requests)} requests.")
    lead = players[0] if players else None
    sizes = {len(np.atleast_1d(my_prev)) for _, my_prev, _, _ in requests}
    names = [p.adapter for p in players]
    if (len(players) < 2 or len(sizes) > 1 or len(set(names)) < len(names)
            or next(iter(sizes)) > min(p.batch_size for p in players)  # alone, a player samples batch by batch
            or not all(lead._side_by_side_with(p) for p in players)):
        return [p.decide(game, my_prev, opp_prev, rng) for p, (game, my_prev, opp_prev, rng) in zip(players, requests)]
    from moralkit.llm.adapters import adapters_side_by_side

    blocks = []  # per player: messages, prompts, prompt ids, sampler
    for player, (game, my_prev, opp_prev, rng) in zip(players, requests):
        messages = player.messages(game, my_prev, opp_prev, rng)
        encoded = player._encoded(messages)
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))  # as LLMPlayer.answer draws it
        blocks.append((messages, [encoded[m][0] for m in messages], [list(encoded[m][1]) for m in messages], generator))
    with torch.no_grad(), eval_mode(lead.model), adapters_side_by_side(lead.model, names):
        answer_ids = _sample_side_by_side(players, [b[2] for b in blocks], [b[3] for b in blocks])
    decisions = []
    for player, (messages, prompts, prompt_ids, _), ids in zip(players, blocks, answer_ids):
        answers = [player._decode(a) for a in ids]
        decisions.append(Decision(messages, prompts, prompt_ids, ids, answers, parse_answers(answers, player.labels),
                                  player.labels))
    return decisions


def _sample_side_by_side(players: Sequence["LLMPlayer"], prompts: Sequence[list[list[int]]],
                         generators: Sequence[torch.Generator]) -> list[list[list[int]]]:
    """:meth:`LLMPlayer._sample_graphed` of every player's block of rows, in passes shared by all blocks."""
    lead = players[0]
    forward = graphed_logits(lead.model, lead.pad_id)
    state = ("side by side", tuple(p.adapter for p in players))
    groups, n = len(players), len(prompts[0])
    stop = torch.tensor(lead.stop_ids, dtype=torch.long)
    guesses = [p._guess for p in players]
    outs: list[list[list[int]]] = []
    if guesses[0] is not None:  # as _sample_two: one pass reads each prompt and its labels' shared first token
        logits = forward.logits([ids + [g] for block, g in zip(prompts, guesses) for ids in block], keep=2,
                                state=state, groups=groups)
        firsts, dones, seconds, strays = [], [], [], []
        for k, (player, generator) in enumerate(zip(players, generators)):
            first = player._pick(logits[k * n:(k + 1) * n, 0, :], generator)
            done = torch.isin(first, stop)
            firsts.append(first)
            dones.append(done)
            seconds.append(logits[k * n:(k + 1) * n, 1, :].clone())
            strays.append(torch.nonzero(~done & (first != guesses[k])).flatten().tolist())
        most = max(len(s) for s in strays)
        if most:  # their own first token instead of the guess; blocks filled up to one size
            rows = []
            for k, block in enumerate(prompts):
                own = [block[i] + [int(firsts[k][i])] for i in strays[k]]
                rows += own + [block[0] + [guesses[k]]] * (most - len(own))
            extra = forward.logits(rows, keep=1, state=state, groups=groups)
            for k in range(groups):
                if strays[k]:
                    picked = extra[k * most:k * most + len(strays[k]), -1, :]
                    seconds[k][torch.tensor(strays[k], device=seconds[k].device)] = picked.to(seconds[k].dtype)
        for k, (player, generator) in enumerate(zip(players, generators)):
            out = [[int(t)] for t in firsts[k]]
            if not bool(dones[k].all()):  # a player whose every answer stopped draws no more numbers
                second = player._pick(seconds[k], generator)
                for i in torch.nonzero(~dones[k]).flatten().tolist():
                    out[i].append(int(second[i]))
            outs.append(out)
        return outs
    outs = [[[] for _ in block] for block in prompts]
    dones = [torch.zeros(n, dtype=torch.bool) for _ in players]
    finished = [False] * groups
    for _step in range(lead.max_new_tokens):
        rows = [ids + answer for block, out in zip(prompts, outs) for ids, answer in zip(block, out)]
        logits = forward.logits(rows, keep=1, state=state, groups=groups)[:, -1, :]
        for k, (player, generator) in enumerate(zip(players, generators)):
            if finished[k]:  # its rows ride along (one shape); no numbers drawn
                continue
            token = player._pick(logits[k * n:(k + 1) * n], generator)
            for i in torch.nonzero(~dones[k]).flatten().tolist():
                outs[k][i].append(int(token[i]))
            dones[k] |= torch.isin(token, stop)
            finished[k] = bool(dones[k].all())
        if all(finished):
            break
    return outs


class LLMPlayer:
    """A causal language model playing the row player of a matrix game through text.

    Parameters
    ----------
    model, tokenizer:
        A causal LM (plain, or wrapped by peft) and its tokenizer, e.g. from
        :func:`moralkit.llm.models.load_model`.
    labels:
        The label set (or its name): which label means C / D.
    temperature:
        Sampling temperature (1.0: the model's own distribution; 0: greedy).
    value_prompt:
        ``None``, ``"utilitarian"``, ``"deontological"`` or free text put in front of every prompt
        (the prompting baseline).
    batch_size:
        Rows per forward pass (results depend on it only through the order random numbers are used).
    system:
        Optional system message (folded into the user turn for templates without a system role).
    share_prefix:
        Run the tokens shared by all prompts of a batch once (exact): ``True``, ``False``, or
        ``"auto"`` (where it pays, see :func:`split_pays`).
    adapter:
        For a peft model holding LoRA adapters: the adapter this player uses (``"base"``: all
        adapters off, the untuned model; ``None``: the adapter active when the player is made).
        The player keeps it: switching the shared model's adapter later never changes what this
        player answers with. See :mod:`moralkit.llm.adapters`.
    graphs:
        Sample without a key/value cache, re-reading whole padded rows, so that each pass can be
        replayed as a CUDA graph (:class:`~moralkit.llm.graphs.GraphedLogits`): on a GPU a replay
        costs a fraction of the eager calls. The same answers; on a CPU only slower.
    merged:
        Answer through a copy of the base weights with this player's adapter folded in
        (:class:`~moralkit.llm.adapters.MergedAdapter`): the same distributions up to float
        rounding, with ~40% fewer operations per forward pass and no LoRA arithmetic, for one more
        copy of the adapted weights in memory. The copy follows the adapter as it trains. Ignored
        for the base model and a model without adapters.
    """

    def __init__(
        self,
        model,
        tokenizer,
        labels: LabelSet | str = TRAIN_LABELS,
        *,
        temperature: float = 1.0,
        value_prompt: str | None = None,
        batch_size: int = 64,
        system: str | None = None,
        share_prefix: bool | str = "auto",
        adapter: str | None = None,
        graphs: bool = False,
        merged: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}.")
        self.model = model
        self.tokenizer = tokenizer
        self.labels = get_label_set(labels)
        self.temperature = float(temperature)
        self.value_prompt = value_prompt
        self.batch_size = int(batch_size)
        self.system = system
        self.share_prefix = share_prefix
        self.adapter = adapter if adapter is not None else _active_adapter(model)
        self.graphs = bool(graphs)
        self.merged = bool(merged)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id: int = int(pad if pad is not None else 0)
        self.stop_ids: list[int] = stop_token_ids(model, tokenizer)
        self._prefix_cache: PrefixCache | None = None
        self._applied_copy = None  # the merged copy in place while _inference runs
        self._static_prefix: dict[tuple, int] = {}
        self._encodings: dict[tuple[str | None, str], tuple[str, tuple[int, ...]]] = {}

    # ----------------------------------------------------------------- configuration
    def with_labels(self, labels: LabelSet | str) -> "LLMPlayer":
        """The same model with another label set (no copy of the model)."""
        return LLMPlayer(
            self.model,
            self.tokenizer,
            labels,
            temperature=self.temperature,
            value_prompt=self.value_prompt,
            batch_size=self.batch_size,
            system=self.system,
            share_prefix=self.share_prefix,
            adapter=self.adapter,
            graphs=self.graphs,
            merged=self.merged,
        )

    @property
    def label_ids(self) -> tuple[list[int], list[int]]:
        """Canonical token ids of the C and D labels with this tokenizer."""
        return label_token_ids(self.tokenizer, self.labels)

    @property
    def max_new_tokens(self) -> int:
        """How many tokens are sampled per answer: as many as the longer label needs."""
        return max(len(ids) for ids in self.label_ids)

    def __repr__(self) -> str:
        name = getattr(getattr(self.model, "config", None), "name_or_path", "") or type(self.model).__name__
        extra = f", value_prompt={self.value_prompt!r}" if self.value_prompt else ""
        extra += f", adapter={self.adapter!r}" if self.adapter is not None else ""
        extra += ", merged=True" if self._merges else ""
        return (
            f"LLMPlayer(model={name!r}, labels={self.labels.name!r} (C={self.labels.c!r}, D={self.labels.d!r}), "
            f"temperature={self.temperature:g}, max_new_tokens={self.max_new_tokens}, "
            f"batch_size={self.batch_size}{extra})"
        )

    @contextlib.contextmanager
    def reuse_prefix(self) -> Iterator[PrefixCache]:
        """Within the block, the prompts' shared beginning runs once and is reused by every call.

        For a stretch of play in which the weights do not change (the rounds of one training
        episode): the rules and payoff table are read once, each round's prompt only from where it
        differs (on SmolLM2, 71 of 205 tokens). Exact. The cache is dropped at the end of the block.
        """
        previous = self._prefix_cache
        self._prefix_cache = PrefixCache()
        try:
            yield self._prefix_cache
        finally:
            self._prefix_cache = previous

    def shared_prefix_length(self, game: MatrixGame) -> int:
        """How many prompt tokens every prompt of ``game`` starts with (any state, any label order)."""
        key = (game.name, game.payoffs.tobytes(), self.labels, self.value_prompt, self.system)
        if key not in self._static_prefix:
            states = [(m, o) for m in (C, D) for o in (C, D)]
            flips = [(a, b) for a in (False, True) for b in (False, True)]
            messages = [
                render_prompt(game, m, o, self.labels, None, value_prompt=self.value_prompt, flips=f)
                for m, o in states
                for f in flips
            ]
            encoded = self._encoded(messages)
            self._static_prefix[key] = common_prefix_length([encoded[m][1] for m in messages])
        return self._static_prefix[key]

    @property
    def _merges(self) -> bool:
        """Whether this player answers through a merged copy: ``merged`` and an adapter to merge."""
        return self.merged and self.adapter not in (None, "base")

    def _merged_copy(self):
        """The :class:`~moralkit.llm.adapters.MergedAdapter` this player answers through (None: it does not)."""
        if not self._merges:
            return None
        from moralkit.llm.adapters import merged_adapter

        return merged_adapter(self.model, self.adapter)

    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        """No gradients, eval mode, and this player's adapter active (or merged in), for the block."""
        merged = self._merged_copy()
        with torch.no_grad(), eval_mode(self.model), _using_adapter(self.model, self.adapter), (
                merged.applied() if merged is not None else contextlib.nullcontext()):
            previous, self._applied_copy = self._applied_copy, merged
            try:
                yield
            finally:
                self._applied_copy = previous

    # ----------------------------------------------------------------- prompts
    def messages(
        self, game: MatrixGame, my_prev, opp_prev, rng: np.random.Generator | None = None
    ) -> list[str]:
        """The user messages for a batch of states (label orders drawn from ``rng``)."""
        my_prev, opp_prev = _as_moves(my_prev, "my_prev"), _as_moves(opp_prev, "opp_prev")
        return render_prompts(game, my_prev, opp_prev, self.labels, rng, value_prompt=self.value_prompt)

    def chat_texts(self, messages: Sequence[str]) -> list[str]:
        """User messages wrapped in the model's chat template."""
        return [chat_text(self.tokenizer, m, self.system) for m in messages]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of chat texts (the template already holds the special tokens)."""
        return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def _encoded(self, messages: Sequence[str]) -> dict[str, tuple[str, tuple[int, ...]]]:
        """``message -> (chat text, token ids)``; the template and tokenizer run once per distinct message.

        A game has few distinct messages (4 states x 4 label orders), and rendering the chat
        template and tokenising cost ~4 ms per message: remembered across calls (the most recent
        4096 messages).
        """
        new = [m for m in dict.fromkeys(messages) if (self.system, m) not in self._encodings]
        if new:
            texts = self.chat_texts(new)
            for message, text, ids in zip(new, texts, self.encode(texts)):
                self._encodings[self.system, message] = (text, tuple(ids))
            while len(self._encodings) > 4096:
                self._encodings.pop(next(iter(self._encodings)))
        return {m: self._encodings[self.system, m] for m in messages}

    # ----------------------------------------------------------------- sampling
    def decide(self, game: MatrixGame, my_prev, opp_prev, rng: np.random.Generator) -> Decision:
        """Sample one answer per state.

        Parameters
        ----------
        game:
            The game from this player's point of view (row player).
        my_prev, opp_prev:
            Arrays of last-round moves (0 = C, 1 = D), one entry per game in the batch.
        rng:
            Draws the label orders of every prompt, then the seed of the token sampler: the same
            seed gives the same prompts and the same answers.
        """
        max_prefix = self.shared_prefix_length(game) if self._prefix_cache is not None else None
        return self.answer(self.messages(game, my_prev, opp_prev, rng), rng, max_prefix=max_prefix)

    def answer(self, messages: Sequence[str], rng: np.random.Generator, *, max_prefix: int | None = None) -> Decision:
        """Sample one answer to each user message (any prompt, e.g. the unrelated prompts).

        ``max_prefix``: share (and, inside :meth:`reuse_prefix`, cache) at most this many leading
        prompt tokens.
        """
        messages = list(messages)
        encoded = self._encoded(messages)
        prompts = [encoded[m][0] for m in messages]
        prompt_ids = [list(encoded[m][1]) for m in messages]
        generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        answer_ids: list[list[int]] = []
        with self._inference():
            for start in range(0, len(prompt_ids), self.batch_size):
                answer_ids += self._sample(prompt_ids[start : start + self.batch_size], generator, max_prefix)
        answers = [self._decode(ids) for ids in answer_ids]
        return Decision(messages, prompts, prompt_ids, answer_ids, answers, parse_answers(answers, self.labels), self.labels)

    def _decode(self, ids: list[int]) -> str:
        text_ids = ids[:-1] if ids and ids[-1] in self.stop_ids else ids
        return self.tokenizer.decode(text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _pick(self, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Sample the next token of every row from the full vocabulary (argmax at temperature 0).

        Inverse-CDF sampling in float64 on the CPU: one uniform number per row, exact, and
        independent of the device the model runs on.
        """
        logits = logits.detach().to("cpu", torch.float64)
        if self.temperature == 0:
            return logits.argmax(-1)
        cdf = torch.softmax(logits / self.temperature, dim=-1).cumsum(-1)
        u = torch.rand((len(cdf), 1), generator=generator, dtype=torch.float64) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp(max=cdf.shape[1] - 1)

    @property
    def _guess(self) -> int | None:
        """The first token of every label, when the labels are two tokens that share it (``action|1``)."""
        first = {tuple(ids[:-1]) for ids in self.label_ids}
        if self.max_new_tokens == 2 and len(first) == 1 and all(len(ids) == 2 for ids in self.label_ids):
            return next(iter(first))[0]
        return None

    def _sample(self, prompt_ids: list[list[int]], generator: torch.Generator, max_prefix: int | None = None) -> list[list[int]]:
        """Sample up to ``max_new_tokens`` tokens per row, stopping a row at a stop token."""
        if self.graphs:
            return self._sample_graphed(prompt_ids, generator)
        if self._guess is not None:
            return self._sample_two(prompt_ids, generator, max_prefix, self._guess)
        # identical prompts (a batch has at most 16 distinct ones per game) are read once
        unique = list(dict.fromkeys(map(tuple, prompt_ids)))
        logits, cache, mask, position, *_ = forward_batch(
            self.model, unique, pad_id=self.pad_id, use_cache=self.max_new_tokens > 1, share_prefix=self.share_prefix,
            prefix_cache=self._prefix_cache, max_prefix=max_prefix,
        )
        if len(unique) < len(prompt_ids):
            where = {ids: i for i, ids in enumerate(unique)}
            index = torch.tensor([where[tuple(ids)] for ids in prompt_ids], device=mask.device)
            logits, mask, position = logits[index], mask[index], position[index]
            if self.max_new_tokens > 1:
                cache.batch_select_indices(index)
        n_rows, device = len(prompt_ids), mask.device
        stop = torch.tensor(self.stop_ids, dtype=torch.long)
        out: list[list[int]] = [[] for _ in range(n_rows)]
        done = torch.zeros(n_rows, dtype=torch.bool)
        for step in range(self.max_new_tokens):
            token = self._pick(logits[:, -1, :], generator)
            for i in torch.nonzero(~done).flatten().tolist():
                out[i].append(int(token[i]))
            done |= torch.isin(token, stop)
            if step + 1 == self.max_new_tokens or bool(done.all()):
                break
            token = torch.where(done, torch.tensor(self.pad_id), token)  # finished rows: filler
            mask = torch.cat([mask, torch.ones((n_rows, 1), dtype=mask.dtype, device=device)], dim=1)
            position = position + 1
            logits = self.model(
                input_ids=token[:, None].to(device),
                attention_mask=mask,
                position_ids=position[:, None],
                use_cache=True,
                **cache_kwargs(cache),
            ).logits
        return out

    def _sample_two(self, prompt_ids: list[list[int]], generator: torch.Generator, max_prefix: int | None,
                    guess: int) -> list[list[int]]:
        """Two-token answers whose labels share their first token (``action`` of ``action1``/``action2``).

        One forward pass reads each prompt followed by that shared token and keeps two positions:
        the first gives the distribution of the first answer token, the second the distribution
        of the second one *if* the first was the shared token -- which it is as soon as the player
        answers in format. Rows that sampled something else take one decoding step with their own
        token, from the same key/value cache with the guessed token masked out (so it is as if it
        had never been read). Exact: the same distributions, the same random numbers (one uniform
        per row and step, as a token-by-token decoder draws them); once the format is learned it
        saves the decoding call of every round.
        """
        unique = list(dict.fromkeys(map(tuple, prompt_ids)))
        where = {ids: i for i, ids in enumerate(unique)}
        rows = torch.tensor([where[tuple(ids)] for ids in prompt_ids])
        logits, cache, mask, position, *_ = forward_batch(
            self.model, [list(ids) + [guess] for ids in unique], pad_id=self.pad_id, logits_to_keep=2, use_cache=True,
            share_prefix=self.share_prefix, prefix_cache=self._prefix_cache, max_prefix=max_prefix,
        )
        device = logits.device
        stop = torch.tensor(self.stop_ids, dtype=torch.long)
        first = self._pick(logits[rows.to(device), 0, :], generator)
        out = [[int(t)] for t in first]
        done = torch.isin(first, stop)
        if bool(done.all()):
            return out
        second_logits = logits[rows.to(device), 1, :]
        strays = torch.nonzero(~done & (first != guess)).flatten()
        if len(strays):  # one decoding step for them: their own first token, the guess masked out
            index = rows[strays].to(device)
            cache.batch_select_indices(index)
            stray_mask = mask[index].clone()
            stray_mask[:, -1] = 0  # the guessed token
            stray_mask = torch.cat([stray_mask, torch.ones_like(stray_mask[:, :1])], dim=1)
            extra = self.model(
                input_ids=first[strays][:, None].to(device),
                attention_mask=stray_mask,
                position_ids=position[index][:, None],  # where the guessed token stood
                use_cache=True,
                **cache_kwargs(cache),
            ).logits[:, -1, :]
            second_logits = second_logits.clone()
            second_logits[strays.to(device)] = extra.to(second_logits.dtype)
        second = self._pick(second_logits, generator)
        for i in torch.nonzero(~done).flatten().tolist():
            out[i].append(int(second[i]))
        return out

    def _sample_graphed(self, prompt_ids: list[list[int]], generator: torch.Generator) -> list[list[int]]:
        """What :meth:`_sample` and :meth:`_sample_two` do, without a key/value cache: every call
        re-reads whole rows through :class:`~moralkit.llm.graphs.GraphedLogits` (CUDA graphs on a
        GPU). The same distributions and the same random numbers, so the same answers up to the
        order of floating-point sums."""
        forward = graphed_logits(self.model, self.pad_id)
        merged = self._applied_copy
        # _inference keeps this adapter active (or this merged copy in place) around every call
        state = ("player", self.adapter) + (("merged", merged.serial) if merged is not None else ())
        unique = list(dict.fromkeys(map(tuple, prompt_ids)))
        where = {ids: i for i, ids in enumerate(unique)}
        rows = torch.tensor([where[tuple(ids)] for ids in prompt_ids])
        stop = torch.tensor(self.stop_ids, dtype=torch.long)
        guess = self._guess
        if guess is not None:  # as _sample_two: one pass reads the prompt and the labels' shared first token
            logits = forward.logits([list(ids) + [guess] for ids in unique], keep=2, state=state)
            logits = logits[rows.to(logits.device)]
            first = self._pick(logits[:, 0, :], generator)
            out = [[int(t)] for t in first]
            done = torch.isin(first, stop)
            if bool(done.all()):
                return out
            second_logits = logits[:, 1, :].clone()
            strays = torch.nonzero(~done & (first != guess)).flatten()
            if len(strays):  # their own first token instead of the guess
                extra = forward.logits([prompt_ids[i] + [int(first[i])] for i in strays.tolist()], keep=1, state=state)
                second_logits[strays.to(second_logits.device)] = extra[:, -1, :].to(second_logits.dtype)
            second = self._pick(second_logits, generator)
            for i in torch.nonzero(~done).flatten().tolist():
                out[i].append(int(second[i]))
            return out
        out: list[list[int]] = [[] for _ in prompt_ids]
        done = torch.zeros(len(prompt_ids), dtype=torch.bool)
        for step in range(self.max_new_tokens):
            if step == 0:
                logits = forward.logits(unique, keep=1, state=state)
                logits = logits[rows.to(logits.device), -1, :]
            else:
                logits = forward.logits([ids + answer for ids, answer in zip(prompt_ids, out)], keep=1, state=state)[:, -1, :]
            token = self._pick(logits, generator)
            for i in torch.nonzero(~done).flatten().tolist():
                out[i].append(int(token[i]))
            done |= torch.isin(token, stop)
            if bool(done.all()):
                break
        return out

    def _side_by_side_with(self, other: "LLMPlayer") -> bool:
        """Whether this player and ``other`` can sample in shared passes (:func:`decide_side_by_side`)."""
        return (self.graphs and other.graphs and other.model is self.model
                and all(p.adapter is not None and p.adapter != "base" for p in (self, other))
                and (self._guess is None) == (other._guess is None)
                and self.max_new_tokens == other.max_new_tokens and self.temperature == other.temperature
                and self.stop_ids == other.stop_ids and self.pad_id == other.pad_id)

    # ----------------------------------------------------------------- exact probabilities
    def label_probabilities(
        self,
        game: MatrixGame,
        my_prev,
        opp_prev,
        rng: np.random.Generator | None = None,
        *,
        average_orders: bool = False,
    ) -> np.ndarray:
        """Exact probabilities ``(N, 3)``: P(C's label), P(D's label), P(anything else).

        The probability of a label is the product of its canonical tokens' probabilities given
        the prompt (teacher forcing), at the player's temperature; a label shorter than
        :attr:`max_new_tokens` must also be followed by a stop token. Other tokenisations of a
        label, or surrounding whitespace, count as "other" -- a negligible slice in practice.

        Prompts: with ``rng`` the label orders are drawn exactly as :meth:`decide` draws them (the
        same seed gives the probabilities of the prompts ``decide`` sampled from). Without ``rng``
        C's label is listed first in both sentences -- or, with ``average_orders=True``, the
        probabilities are averaged over all four order combinations, which is the policy a
        randomly ordered prompt follows on average.
        """
        my_prev, opp_prev = _as_moves(my_prev, "my_prev"), _as_moves(opp_prev, "opp_prev")
        if not average_orders:
            return self.message_label_probabilities(self.messages(game, my_prev, opp_prev, rng))
        combos = _LABEL_ORDERS
        messages = [
            render_prompt(game, m, o, self.labels, rng, value_prompt=self.value_prompt, flips=f)
            for m, o in zip(my_prev, opp_prev)
            for f in combos
        ]
        probs = self.message_label_probabilities(messages)
        return probs.reshape(len(my_prev), len(combos), 3).mean(axis=1)

    def message_label_probabilities(self, messages: Sequence[str]) -> np.ndarray:
        """:meth:`label_probabilities` for arbitrary user messages; identical messages scored once."""
        if len(messages) == 0:
            return np.zeros((0, 3))
        unique = list(dict.fromkeys(messages))
        encoded = self._encoded(unique)
        prompt_ids = [list(encoded[m][1]) for m in unique]
        ids_c, ids_d = self.label_ids
        n = self.max_new_tokens
        # What must follow the prompt in a row so that every needed logit is computed: the label
        # minus its last token, or the whole label when a stop token has to follow it.
        contexts = [ids if len(ids) < n else ids[:-1] for ids in (ids_c, ids_d)]
        a, b = contexts
        if b[: len(a)] == a:
            rows, row_of = [b], (0, 0)
        elif a[: len(b)] == b:
            rows, row_of = [a], (0, 0)
        else:
            rows, row_of = [a, b], (0, 1)
        keep = max(len(r) for r in rows) + 1
        seqs = [p + r for p in prompt_ids for r in rows]
        # only these columns of the log-softmax are needed: the label tokens and the stop tokens
        columns = sorted(set(ids_c) | set(ids_d) | set(self.stop_ids))
        col = {token: k for k, token in enumerate(columns)}
        temperature = self.temperature if self.temperature > 0 else 1.0
        chunks = []
        with self._inference():
            for start in range(0, len(seqs), self.batch_size):
                logits = forward_batch(
                    self.model, seqs[start : start + self.batch_size], pad_id=self.pad_id,
                    logits_to_keep=keep, share_prefix=self.share_prefix,
                ).logits
                # float64: torch 2.13's float32 log-softmax on a CPU is off by ~1e-4 over a 49k vocabulary
                logp = torch.log_softmax(logits.double() / temperature, dim=-1)
                chunks.append(logp[..., columns].cpu())
        logp = torch.cat(chunks).reshape(len(prompt_ids), len(rows), keep, len(columns))
        stop = [col[t] for t in self.stop_ids]
        out = np.zeros((len(unique), 3))
        for j, (ids, row) in enumerate(zip((ids_c, ids_d), row_of)):
            first = keep - len(rows[row]) - 1  # kept index of the logits that predict the label's 1st token
            total = torch.zeros(len(prompt_ids), dtype=torch.float64)
            for i, token in enumerate(ids):
                total += logp[:, row, first + i, col[token]]
            if len(ids) < n:  # the answer must stop right after a short label
                total += torch.logsumexp(logp[:, row, first + len(ids)][:, stop], dim=-1)
            out[:, j] = total.exp().numpy()
        out[:, 2] = np.clip(1.0 - out[:, 0] - out[:, 1], 0.0, 1.0)
        out /= out.sum(axis=1, keepdims=True)
        index = {m: i for i, m in enumerate(unique)}
        return out[[index[m] for m in messages]]

    def order_table(self, game: MatrixGame):
        """Does the player answer by a label's meaning or by its place in the prompt?

        The prompt names the two labels twice, in the sentence "Now pick one of the two actions,
        x or y." and in the answer instruction, each time in an order drawn at random. This table
        fixes the orders: one row per memory-1 state and order combination (16 rows), with columns
        ``my_prev``, ``opp_prev``, ``pick_first`` and ``answer_first`` (whose label, "C" or "D",
        each sentence lists first), the exact ``P(C)``, ``P(D)``, ``P(illegal)``, and
        ``P(pick_first | legal)`` / ``P(answer_first | legal)``: the share of legal answers that
        are the label listed first in that sentence.

        A player that reads the labels' meanings keeps ``P(C)`` whatever the order, so its
        first-listed shares sit near 0.5 on average over the rows; a player that answers by
        position keeps one of them near 1 while its ``P(C)`` follows the order (chapter 5 meets
        one). The payoff table itself keeps its usual layout.
        """
        import pandas as pd

        rows = [(m, o, f) for m in (C, D) for o in (C, D) for f in _LABEL_ORDERS]
        messages = [render_prompt(game, m, o, self.labels, None, value_prompt=self.value_prompt, flips=f)
                    for m, o, f in rows]
        probs = self.message_label_probabilities(messages)
        table = pd.DataFrame({
            "my_prev": [MOVE_NAMES[m] for m, _, _ in rows],
            "opp_prev": [MOVE_NAMES[o] for _, o, _ in rows],
            "pick_first": ["D" if f[0] else "C" for _, _, f in rows],
            "answer_first": ["D" if f[1] else "C" for _, _, f in rows],
            "P(C)": probs[:, 0],
            "P(D)": probs[:, 1],
            "P(illegal)": probs[:, 2],
        })
        legal = table["P(C)"] + table["P(D)"]
        for sentence in ("pick_first", "answer_first"):
            first = np.where(table[sentence] == "C", table["P(C)"], table["P(D)"])
            table[f"P({sentence} | legal)"] = (first / legal).where(legal > 0)
        return table

    def policy_table(self, game: MatrixGame, *, average_orders: bool = True):
        """P(C), P(D), P(illegal) in each of the four memory-1 states, as a tidy DataFrame.

        Columns ``my_prev``, ``opp_prev`` ("C"/"D"), ``P(C)``, ``P(D)``, ``P(illegal)``. For a
        heatmap: ``table.pivot(index="my_prev", columns="opp_prev", values="P(C)")``.
        """
        import pandas as pd

        my_prev, opp_prev = np.array([C, C, D, D]), np.array([C, D, C, D])
        probs = self.label_probabilities(game, my_prev, opp_prev, average_orders=average_orders)
        return pd.DataFrame(
            {
                "my_prev": [MOVE_NAMES[m] for m in my_prev],
                "opp_prev": [MOVE_NAMES[o] for o in opp_prev],
                "P(C)": probs[:, 0],
                "P(D)": probs[:, 1],
                "P(illegal)": probs[:, 2],
            }
        )
