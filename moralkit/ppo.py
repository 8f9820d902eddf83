"""LoRA-PPO for an LLM that plays matrix games — our own PPO, with TRL 0.9.6 semantics.

The paper fine-tuned its LLM player with TRL's old ``PPOTrainer.step(queries, responses, scores)``.
That trainer no longer exists, so this file re-implements what it computed, readable top to bottom
(like a CleanRL script). One call of :meth:`PPOTrainer.step` is one PPO update on one batch of game
rounds. On our problem a *row* of the batch is one round of one game:

* ``prompt_ids`` — the tokens of the prompt the player saw (rules, payoff table, last moves), already
  wrapped in the chat template;
* ``answer_ids`` — the tokens it sampled (e.g. ``action1``: one or two tokens);
* ``score`` — the moral reward of that round (a float), computed by the episode loop.

Every round is a one-step bandit problem: no return is carried from one round to the next, so each
(prompt, answer) row is its own trajectory whose "time steps" are the answer tokens.

What one update does (the order of the code below):

1. **Score normalisation.** Scores are standardised with a running mean/std over the whole run
   (:class:`RunningMoments`; TRL's ``use_score_scaling`` + ``use_score_norm``).
2. **Rollout pass, no gradient.** One teacher-forced forward pass over the batch gives, for every
   answer token, the log-probability under the current policy (LoRA adapter on), the value-head
   estimate, and — with the adapter switched off, i.e. the frozen base model — the reference
   log-probability (:func:`score_answers`).
3. **Per-token rewards.** Each answer token is penalised by ``kl_coef * (logp - ref_logp)``, the
   (normalised) score is added on the last answer token (:func:`per_token_rewards`).
4. **Advantages.** Generalised advantage estimation over the answer tokens, then whitening
   (:func:`gae_advantages`).
5. **PPO epochs.** ``ppo_epochs`` passes over the batch in shuffled minibatches; each minibatch is
   re-scored *with* gradient and gets one Adam step on the clipped policy loss plus the clipped value
   loss (:func:`ppo_losses`).
6. **KL controller.** The KL coefficient adapts towards a target KL (:class:`AdaptiveKLController`).

Performance (docs/design.md): identical (prompt, answer) rows are scored once and their results are
copied back to every occurrence (exact: the backward pass of that copy sums the gradients, i.e. each
unique row is weighted by its count); the reference policy is the same model with its adapter
disabled, never a second copy; only the few positions that predict answer tokens go through the
language-model head.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .llm.adapters import adapters_disabled, invalidate_merged
from .llm.agent import PrefixCache, forward_batch
from .llm.graphs import GraphedDecoder, graphs_pay
from .llm.models import native_cuda_bf16
from .storage import DamagedFileError, folder_versions, write_folder

__all__ = [
    "PPOConfig",
    "parse_ppo_overrides",
    "ValueHead",
    "AdaptiveKLController",
    "FixedKLController",
    "RunningMoments",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "per_token_rewards",
    "gae_advantages",
    "ppo_losses",
    "ScoredAnswers",
    "score_answers",
    "lora_config",
    "PPOTrainer",
    "ppo_update",
]


# ---------------------------------------------------------------------------------------------
# 1. Configuration
# ---------------------------------------------------------------------------------------------


@dataclass
class PPOConfig:
    """Every knob of the LoRA-PPO update, in one place.

    The defaults are the paper's settings (docs/science.md §5, which are TRL 0.9.6's PPO defaults plus the
    authors' choices). Use :meth:`PPOConfig.preset` to get a named profile and override single
    fields with keyword arguments::

        cfg = PPOConfig.preset("cpu", learning_rate=1e-4)

    Fields, grouped:

    * LoRA adapter: ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_target_modules``
      (``"all-linear"`` or a tuple of module names such as ``("q_proj", "v_proj")``; names are
      architecture specific, ``"all-linear"`` works everywhere).
    * Optimiser (Adam over the adapter and the value head): ``learning_rate``, ``adam_betas``,
      ``adam_eps``, ``max_grad_norm`` (``None`` = no gradient clipping).
    * Batching: ``mini_batch_size`` (rows per optimiser step), ``ppo_epochs`` (passes over the
      batch). :meth:`step` takes every row of an update (the episode loop decides how many: games
      per update x rounds); optimiser steps per update = ``ppo_epochs * ceil(rows / mini_batch_size)``.
    * PPO: ``cliprange``, ``cliprange_value``, ``vf_coef``, ``gamma``, ``lam``,
      ``whiten_advantages``, ``ratio_threshold`` (a minibatch whose mean probability ratio exceeds
      it is skipped; ``None`` disables the check), ``target_kl`` (early stopping as in Stable-Baselines3
      and CleanRL: once a minibatch finds the policy moved more than ``1.5 * target_kl`` (approximate
      KL to the sampling policy) that minibatch takes no step (counted as skipped) and the update
      ends there; ``None``, the paper's, never stops early).
    * KL penalty to the reference (base) model: ``init_kl_coef``, ``adaptive_kl``, ``kl_target``,
      ``kl_horizon``.
    * Scores: ``use_score_scaling`` (divide by the running std), ``use_score_norm`` (also subtract
      the running mean), ``score_clip`` (clip the normalised score to ±value; ``None`` = off).
    * Value head: ``value_head_dropout`` (TRL's default 0.1).
    * Compute: ``autocast_dtype`` (``None``, ``"bf16"`` or ``"auto"`` = bf16 where the hardware
      computes it natively -- a CUDA GPU with bf16, or a CPU with AVX512-BF16/AMX -- else off;
      ``"bf16"``: bf16 autocast for the model's forward
      passes; log-probabilities, values and losses stay float32), ``deduplicate`` (score identical
      rows once; exact, leave it on) and ``share_prefix`` (run the prompts' common first tokens
      once: exact; ``"auto"`` does it on a CPU, where it halves the arithmetic, and not on a GPU,
      where the extra model call costs more than the tokens it saves); ``compile`` (run the PPO
      epochs through ``torch.compile`` of the model's decoder stack: on a GPU it fuses the
      thousands of small kernels of a forward and backward pass; the first updates pay for the
      compilation, minutes; ``True`` or a ``torch.compile`` mode such as ``"reduce-overhead"``
      (CUDA graphs too); ``"graphs"``: no compilation, the decoder stack's forward and backward
      recorded as CUDA graphs, one per padded minibatch shape, in a second or two, and the scoring
      passes before the epochs recorded forward only (whole rows: no deduplication, no prefix split;
      :class:`~moralkit.llm.graphs.GraphedDecoder`; on a CPU the same padded pass runs eagerly);
      ``"auto"`` (default): ``"graphs"`` on a CUDA GPU of the Ampere generation or newer (3.5x
      faster per paper-preset update on an H100; :func:`~moralkit.llm.graphs.graphs_pay`), eager
      (``False``) elsewhere, a T4 included; measured in ``moralkit bench --compile``); ``tf32``
      (float32 matrix products in TensorFloat-32 during a run's episodes, sampling and updates:
      their inputs rounded to 10 mantissa bits instead of float32's 23 (bf16 autocast keeps 7),
      the sums in float32; ``"auto"`` (default): on a CUDA GPU of the Ampere generation or newer, which
      has it (H100: 0.40 -> 0.29 s per paper-preset update with CUDA graphs), off elsewhere, where
      it does not exist; :func:`tf32_products`); ``merged_sampling`` (the run's players answer
      through a copy of the base weights with the adapter folded in,
      :class:`~moralkit.llm.adapters.MergedAdapter`: the same answers up to float rounding, ~40% fewer
      operations per sampling pass with the paper's LoRA on every linear layer, one more copy of the
      adapted weights in memory; ``"auto"`` (default): on a CUDA GPU, where a pass costs what its
      operations cost, for models under a billion parameters, off elsewhere; :func:`merged_sampling_pays`);
      ``seed`` (LoRA and value-head initialisation, minibatch
      shuffling and dropout all derive from it).
    """

    name: str = "custom"
    # LoRA adapter
    lora_r: int = 64
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | tuple[str, ...] = "all-linear"
    # optimiser
    learning_rate: float = 1.41e-5
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    max_grad_norm: float | None = None
    # batching (the rows of an update are set by the episode loop: games per update x rounds)
    mini_batch_size: int = 5
    ppo_epochs: int = 4
    # PPO losses and advantages
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    ratio_threshold: float | None = 10.0
    target_kl: float | None = None
    # KL penalty
    init_kl_coef: float = 0.2
    adaptive_kl: bool = True
    kl_target: float = 6.0
    kl_horizon: float = 10000.0
    # scores
    use_score_scaling: bool = True
    use_score_norm: bool = True
    score_clip: float | None = None
    # value head
    value_head_dropout: float = 0.1
    # compute
    autocast_dtype: str | None = None
    deduplicate: bool = True
    share_prefix: bool | str = "auto"
    compile: bool | str = "auto"
    tf32: bool | str = "auto"
    merged_sampling: bool | str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, list):
            self.lora_target_modules = tuple(self.lora_target_modules)
        betas = self.adam_betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= float(b) < 1 for b in betas)):
            raise ValueError(f"adam_betas takes two numbers in [0, 1), e.g. adam_betas=(0.9, 0.999), got {betas!r}")
        self.adam_betas = tuple(betas)  # type: ignore[assignment]
        positive = ("learning_rate", "adam_eps", "cliprange", "cliprange_value", "kl_target", "kl_horizon")
        for name in positive + ("max_grad_norm", "ratio_threshold", "score_clip"):  # the last three may be None: off
            value = getattr(self, name)
            if (value is not None or name in positive) and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number > 0{'' if name in positive else ' (or None: off)'}, got {value!r}")
        for name in ("vf_coef", "init_kl_coef"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}")
        for name, closed in (("gamma", True), ("lam", True), ("lora_dropout", False), ("value_head_dropout", False)):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value and (value <= 1 if closed else value < 1)):
                raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")
        if self.compile not in (True, False, "auto", "graphs", "default", "reduce-overhead", "max-autotune",
                                "max-autotune-no-cudagraphs"):
            raise ValueError(f"compile must be 'auto', 'graphs', True, False or a torch.compile mode, got {self.compile!r}")
        if self.tf32 not in (True, False, "auto"):
            raise ValueError(f"tf32 must be True, False or 'auto', got {self.tf32!r}")
        if self.merged_sampling not in (True, False, "auto"):
            raise ValueError(f"merged_sampling must be True, False or 'auto', got {self.merged_sampling!r}")
        if self.share_prefix not in (True, False, "auto"):
            raise ValueError(f"share_prefix must be True, False or 'auto', got {self.share_prefix!r}")
        if self.autocast_dtype not in (None, "bf16", "auto"):
            raise ValueError(f"autocast_dtype must be None, 'bf16' or 'auto', got {self.autocast_dtype!r}")
        if self.target_kl is not None and not self.target_kl > 0:
            raise ValueError(f"target_kl must be positive (or None: no early stop), got {self.target_kl!r}")
        for field_name in ("lora_r", "mini_batch_size", "ppo_epochs"):
            if getattr(self, field_name) < 1:
                raise ValueError(f"{field_name} must be >= 1, got {getattr(self, field_name)}")

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "PPOConfig":
        """The named profile ``name`` (see :func:`PPOConfig.presets`), with ``overrides`` applied.

        * ``"paper"`` — docs/science.md §5 exactly: LoRA r=64, alpha=32, dropout 0.05 on all linear layers;
          Adam lr 1.41e-5; batch = minibatch = 5 (one episode of 5 rounds); 4 PPO epochs; clip 0.2,
          value clip 0.2, vf_coef 0.1; gamma 1, lambda 0.95; adaptive KL (0.2, target 6, horizon
          10000); running score normalisation; whitened advantages; ratio threshold 10; no gradient
          clipping. With one minibatch per epoch this does **4 optimiser steps per episode**
          (4 epochs × 1 minibatch). docs/science.md §5 notes that a quirk of the authors' setup made it
          effectively one step per episode; to mimic that, use ``ppo_epochs=1``.
        * ``"cpu"`` — learns visibly with a 135M model on a 2-core CPU in tens of updates
          (measured on SmolLM2-135M vs Tit-for-Tat, 8 games x 5 rounds per update): a smaller
          adapter (r=16 on the attention projections, alpha=32); a ~20x larger learning rate (3e-4,
          what a small LoRA needs to move in few steps: the illegal share fell from 37/40 to 1/40
          in 4 updates); a batch of 40 rounds in minibatches of 16 and 2 epochs; bf16 autocast
          where the hardware has it (halves the cost here); and a KL coefficient of 0.05 instead of
          0.2. Why the last: the KL-regularised optimum is pi ~ pi_ref * exp(r / beta); with the
          normalised Game-reward gap between D and C (~0.4) beta = 0.2 caps P(D) near 0.88 (what
          we measured), beta = 0.05 lets it reach 1.0 (measured: 100% D from update ~10).
          Everything else as in the paper.
        * ``"smoke"`` — tiny and fast for CI: r=4 on q/v projections, batch 8 in 2 minibatches of
          4, 1 epoch. Every code path still runs.
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown PPO preset {name!r}; choose one of {sorted(_PRESETS)}")
        return cls(name=name, **{**_PRESETS[name], **overrides})

    @staticmethod
    def presets() -> list[str]:
        """Names accepted by :meth:`PPOConfig.preset`."""
        return sorted(_PRESETS)

    def replace(self, **changes: Any) -> "PPOConfig":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PPOConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error (fields that were removed are dropped)."""
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in REMOVED_FIELDS}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown PPOConfig fields: {sorted(unknown)}")
        return cls(**data)


REMOVED_FIELDS: frozenset[str] = frozenset({"batch_size"})
"""Fields older checkpoints may hold that no longer exist (``batch_size`` was read by nothing)."""

SPEED_FIELDS: frozenset[str] = frozenset({"compile", "tf32", "merged_sampling"})
"""Fields that change how fast an update runs, not what it computes (up to floating-point
rounding: the order of sums, TF32 products, merged weights): a run may resume under other values of these (e.g.
started on a CPU, eager, finished on a GPU with CUDA graphs)."""

#: Field values of each named preset (everything not listed keeps the paper default).
_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_target_modules": ("q_proj", "k_proj", "v_proj", "o_proj"),
        "learning_rate": 3e-4,
        "mini_batch_size": 16,
        "ppo_epochs": 2,
        "init_kl_coef": 0.05,
        "autocast_dtype": "auto",
    },
    "smoke": {
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": ("q_proj", "v_proj"),
        "learning_rate": 3e-4,
        "mini_batch_size": 4,
        "ppo_epochs": 1,
    },
}


#: Fields a run sets itself (the preset's name, the training seed): not overridable by hand.
_NOT_OVERRIDABLE = frozenset({"name", "seed"})


def parse_ppo_overrides(items: Sequence[str], preset: str = "paper") -> dict[str, Any]:
    """``["field=value", ...]`` (the command line's ``--ppo``) -> a dict of :class:`PPOConfig` overrides.

    Values are read as Python literals (``1.0``, ``None``, ``True``, ``('q_proj','v_proj')``),
    anything else as a string; the result is checked by building ``PPOConfig.preset(preset,
    **overrides)``, so a wrong name or value fails here with the valid fields named.

    >>> parse_ppo_overrides(["max_grad_norm=1.0", "ppo_epochs=1", "autocast_dtype=None"])
    {'max_grad_norm': 1.0, 'ppo_epochs': 1, 'autocast_dtype': None}
    >>> parse_ppo_overrides(["lora_target_modules=q_proj,v_proj"])
    {'lora_target_modules': ('q_proj', 'v_proj')}
    >>> parse_ppo_overrides(["ppo_epochs=1", "ppo_epochs=2"])
    Traceback (most recent call last):
        ...
    ValueError: --ppo sets ppo_epochs twice (ppo_epochs=1 ppo_epochs=2): keep one value.
    >>> parse_ppo_overrides(["clip=0.1"])
    Traceback (most recent call last):
        ...
    ValueError: --ppo clip=0.1: unknown PPOConfig field 'clip'. Fields: adam_betas, adam_eps, adaptive_kl, autocast_dtype, cliprange, cliprange_value, compile, deduplicate, gamma, init_kl_coef, kl_horizon, kl_target, lam, learning_rate, lora_alpha, lora_dropout, lora_r, lora_target_modules, max_grad_norm, merged_sampling, mini_batch_size, ppo_epochs, ratio_threshold, score_clip, share_prefix, target_kl, tf32, use_score_norm, use_score_scaling, value_head_dropout, vf_coef, whiten_advantages.
    """
    import ast

    types = {f.name: f.type for f in dataclasses.fields(PPOConfig) if f.name not in _NOT_OVERRIDABLE}
    fields = sorted(types)
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--ppo {item!r}: write FIELD=VALUE, e.g. max_grad_norm=1.0.")
        if key not in fields:
            raise ValueError(f"--ppo {item}: unknown PPOConfig field {key!r}. Fields: {', '.join(fields)}.")
        if key in out:
            raise ValueError(f"--ppo sets {key} twice ({' '.join(i for i in items if i.partition('=')[0].strip() == key)}): "
                             "keep one value.")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
            if key == "lora_target_modules" and "," in value:
                value = tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list):
            value = tuple(value)
        kind = str(types[key])
        if isinstance(value, str) and "str" not in kind:
            raise ValueError(f"--ppo {item}: {key} takes {kind}, not the text {value!r}.")
        if isinstance(value, float) and kind.startswith("int"):
            raise ValueError(f"--ppo {item}: {key} takes a whole number.")
        if isinstance(value, int) and not isinstance(value, bool) and kind.startswith("float"):
            value = float(value)
        out[key] = value
    try:
        PPOConfig.preset(preset, **out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--ppo {' '.join(items)}: {exc}") from exc
    return out


# ---------------------------------------------------------------------------------------------
# 2. Small stateful pieces: value head, KL controllers, running score moments
# ---------------------------------------------------------------------------------------------


class ValueHead(nn.Module):
    """Critic: a scalar value for every token position, read off the model's last hidden state.

    On our problem the value at the position that predicts the first answer token is the critic's
    guess of the (normalised) moral reward the player will get in this round, before it answers.
    Dropout then one ``Linear(hidden_size, 1)``, always computed in float32 (outside any autocast),
    as TRL's ``ValueHead``.
    """

    def __init__(self, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.summary = nn.Linear(hidden_size, 1, dtype=torch.float32)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """``hidden_states`` [..., hidden] -> values [...] (float32)."""
        with torch.autocast(device_type=hidden_states.device.type, enabled=False):
            return self.summary(self.dropout(hidden_states.float())).squeeze(-1)


class AdaptiveKLController:
    """TRL's adaptive KL coefficient (Ziegler et al. 2019).

    After each update, with ``current`` = the batch's mean summed KL(policy || reference) per row
    and ``n_steps`` = the number of rows in the batch::

        error = clip(current / target - 1, -0.2, 0.2)
        value *= 1 + error * n_steps / horizon

    so the penalty grows slowly while the policy drifts further than ``target`` nats from the base
    model and shrinks while it stays closer. With the paper's horizon (10000) and 5 rows per update
    the coefficient moves by at most 0.01% per episode — it is nearly constant over a 1000-episode run.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current: float, n_steps: int) -> None:
        proportional_error = min(max(float(current) / self.target - 1.0, -0.2), 0.2)
        mult = 1.0 + proportional_error * n_steps / self.horizon
        self.value *= mult

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value, self.target, self.horizon = state["value"], state["target"], state["horizon"]

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self.value:.6g}, target={self.target}, horizon={self.horizon})"


class FixedKLController:
    """A constant KL coefficient (``adaptive_kl=False``)."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current: float, n_steps: int) -> None:
        pass

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = state["value"]

    def __repr__(self) -> str:
        return f"FixedKLController(value={self.value:.6g})"


class RunningMoments:
    """Running mean and standard deviation of all scores seen during the run.

    Moral rewards live on different scales (the Game reward is 0..4, the deontological one 0 or -3,
    an illegal answer -6); PPO is sensitive to that scale, so TRL standardised each score with the
    mean and std of *every score seen so far* (this batch included). Batches are merged exactly
    with Chan et al.'s parallel algorithm, as TRL did; we keep the sums in float64 (TRL: float32).
    The starting state (mean 0, var 1, count 1e-24) is TRL's: it is forgotten by the first batch.
    ``std`` is the unbiased (n-1) standard deviation.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.var = 1.0  # biased variance of everything seen
        self.std = 1.0  # unbiased standard deviation of everything seen
        self.count = 1e-24

    @torch.no_grad()
    def update(self, xs: torch.Tensor) -> tuple[float, float]:
        """Merge a batch of scores; returns the batch's own (mean, unbiased std)."""
        xs = xs.detach().to(torch.float64).flatten()
        xs_count = xs.numel()
        if xs_count == 0:
            raise ValueError("RunningMoments.update needs at least one value")
        xs_mean = xs.mean().item()
        xs_var = ((xs - xs_mean) ** 2).mean().item()  # biased batch variance

        delta = xs_mean - self.mean
        tot_count = self.count + xs_count
        new_sum = xs_var * xs_count
        # the old sum of squares, re-centred on the combined mean
        old_sum = self.var * self.count + delta**2 * self.count * xs_count / tot_count
        new_var = (old_sum + new_sum) / tot_count

        self.mean += delta * xs_count / tot_count
        self.var = new_var
        self.std = math.sqrt(new_var * tot_count / (tot_count - 1)) if tot_count > 1 else math.sqrt(new_var)
        self.count = tot_count
        batch_std = math.sqrt(xs_var * xs_count / (xs_count - 1)) if xs_count > 1 else 0.0
        return xs_mean, batch_std

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "std": self.std, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.std, self.count = state["mean"], state["var"], state["std"], state["count"]

    def __repr__(self) -> str:
        return f"RunningMoments(mean={self.mean:.4g}, std={self.std:.4g}, count={self.count:.0f})"


# ---------------------------------------------------------------------------------------------
# 3. Pure functions on tensors
#
# Shapes: N rows (game rounds) × L answer positions. ``mask`` is 1 on real answer tokens and 0 on
# padding; answer token j of a row sits in column j (answers are left-aligned, padded on the right).
# ---------------------------------------------------------------------------------------------


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (all rows pooled)."""
    return (values * mask).sum() / mask.sum()


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked positions (Bessel-corrected by default, as TRL).

    With a single masked position the (undefined) unbiased variance is replaced by the biased one,
    0, so a one-token batch whitens to advantage 0 instead of failing (TRL raised an error).
    """
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        variance = variance * n / (n - 1)
    return variance


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Standardise ``values`` with the mean/variance of the masked positions (TRL's formula)."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened


def _last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of the last real token of every row (every row must have one)."""
    if (mask.sum(-1) < 1).any():
        raise ValueError("every row needs at least one answer token")
    width = mask.shape[-1]
    return width - 1 - mask.flip(-1).float().argmax(-1)


def per_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """The reward PPO sees on each answer token.

    Each answer token pays ``-kl_coef * (logp - ref_logp)``: the sampled estimate of the KL
    divergence from the frozen base model, which keeps the tuned player close to the base model's
    language (TRL's ``kl_penalty="kl"``). The round's moral score is added on the *last* real answer
    token only — the whole answer is one action. Padding positions get 0.

    Returns rewards [N, L].
    """
    kl = logprobs - ref_logprobs
    rewards = -kl_coef * kl * mask
    last = _last_token_index(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


def gae_advantages(
    values: torch.Tensor,
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
    whiten: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the answer tokens of each row (TRL's code path).

    Walking backwards over positions t::

        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}

    with ``V`` zeroed on padding, so the position after the last answer token has value 0 (the round
    ends there: a bandit problem, nothing is carried to the next round). ``returns = A + V`` are the
    value head's regression targets. With ``whiten`` the advantages are then standardised over all
    real tokens of the batch (returns are not).

    Returns (advantages, returns), both [N, L].
    """
    values = values * mask
    rewards = rewards * mask
    length = rewards.shape[-1]
    last_gae = torch.zeros_like(rewards[:, 0])
    reversed_advantages = []
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        reversed_advantages.append(last_gae)
    advantages = torch.stack(reversed_advantages[::-1], dim=1)
    returns = advantages + values
    if whiten:
        advantages = masked_whiten(advantages, mask)
    return advantages.detach(), returns.detach()


_LOSS_STATS = ("policy_loss", "value_loss", "loss", "clipfrac", "value_clipfrac", "approxkl", "policykl", "ratio_mean")


def ppo_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    cliprange_value: float,
    vf_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped policy loss plus the clipped value loss (TRL 0.9.6 ``PPOTrainer.loss``).

    * ``ratio = exp(logp - old_logp)``: how much more likely the answer token is now than when the
      round was played. The policy loss ``max(-A * ratio, -A * clip(ratio, 1 ± cliprange))`` stops
      pushing once an answer has become ``1 ± cliprange`` times as likely as before.
    * The value prediction is clipped to ``old_value ± cliprange_value`` and the larger of the two
      squared errors to ``returns`` is used; ``value_loss = 0.5 * mean(...)``.
    * ``loss = policy_loss + vf_coef * value_loss``; all means are over real answer tokens.

    Returns ``(loss, stats)``; ``stats`` holds floats: ``policy_loss``, ``value_loss``, ``loss``,
    ``clipfrac`` (tokens whose policy term was clipped), ``value_clipfrac``, ``approxkl``
    (``0.5 * mean((logp - old_logp)^2)``), ``policykl`` (``mean(old_logp - logp)``) and
    ``ratio_mean`` (compared with ``ratio_threshold`` by the trainer).
    """
    values_clipped = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    vf_losses1 = (values - returns) ** 2
    vf_losses2 = (values_clipped - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
    value_clipfrac = masked_mean(torch.gt(vf_losses2, vf_losses1).float(), mask)

    ratio = torch.exp(logprobs - old_logprobs)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    policy_loss = masked_mean(torch.max(pg_losses1, pg_losses2), mask)
    clipfrac = masked_mean(torch.gt(pg_losses2, pg_losses1).float(), mask)

    loss = policy_loss + vf_coef * value_loss

    with torch.no_grad():  # one device-to-host copy for all of them
        approxkl = 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)
        policykl = masked_mean(old_logprobs - logprobs, mask)
        ratio_mean = masked_mean(ratio, mask)
        figures = torch.stack(
            [policy_loss, value_loss, loss, clipfrac, value_clipfrac, approxkl, policykl, ratio_mean]
        ).tolist()
    stats = dict(zip(_LOSS_STATS, figures))
    return loss, stats


# ---------------------------------------------------------------------------------------------
# 4. Scoring answers with one teacher-forced forward pass
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoredAnswers:
    """What :func:`score_answers` returns; tensors are [N, L] with answer token j in column j.

    ``logprobs`` — log-probability of each answer token given the prompt and the previous answer
    tokens; ``values`` — the value head at the position that predicts that token (``None`` when not
    asked for); ``mask`` — 1.0 on real answer tokens; ``entropy`` — entropy of the model's
    next-token distribution at that position (``None`` when not asked for); ``n_unique`` — how many
    distinct (prompt, answer) rows were actually run through the model; ``prefix_len`` — how many
    leading tokens all of them shared and were run only once. Padding entries are 0.
    """

    logprobs: torch.Tensor
    values: torch.Tensor | None
    mask: torch.Tensor
    entropy: torch.Tensor | None
    n_unique: int
    prefix_len: int = 0


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (so bf16 autocast speeds things up)."""
    device = torch.device(device)
    if device.type == "cuda":
        return native_cuda_bf16(device)
    if device.type == "cpu":
        try:
            flags = open("/proc/cpuinfo").read()
        except OSError:  # not Linux: be conservative
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def merged_sampling_pays(device: torch.device | str, parameters: int) -> bool:
    """Whether ``PPOConfig(merged_sampling="auto")`` samples through a merged copy of the weights:
    on a CUDA GPU, where a sampling pass costs what its operations cost (the paper's LoRA on every
    linear layer of SmolLM2: 1,097 instead of 1,937 per forward pass), for a model under a billion
    ``parameters`` (a bigger one would need gigabytes for the copy). On a CPU, where arithmetic sets
    the cost, it changes little (``moralkit bench --merged on|off``; docs/performance.md).

    >>> merged_sampling_pays("cpu", 135_000_000)
    False
    """
    return torch.device(device).type == "cuda" and parameters < 1_000_000_000


def tf32_pays(device: torch.device | str) -> bool:
    """Whether ``PPOConfig(tf32="auto")`` computes float32 matrix products in TF32 on ``device``:
    a CUDA GPU of the Ampere generation or newer (compute capability 8+), which brought TF32 and
    bf16 arithmetic together (hence :func:`~moralkit.llm.models.native_cuda_bf16`'s test).

    >>> tf32_pays("cpu")
    False
    """
    device = torch.device(device)
    return device.type == "cuda" and native_cuda_bf16(device)


@contextlib.contextmanager
def tf32_products(enabled: bool) -> Iterator[None]:
    """Within the block, CUDA float32 matrix products use TensorFloat-32 (``enabled``) or not;
    the setting before it is restored afterwards. CUDA graphs recorded inside keep the kernels
    chosen there.

    >>> with tf32_products(True):
    ...     torch.backends.cuda.matmul.allow_tf32
    True
    """
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _autocast(device: torch.device, autocast_dtype: str | None) -> contextlib.AbstractContextManager:
    if autocast_dtype == "auto":
        autocast_dtype = "bf16" if native_bf16(device) else None
    if autocast_dtype is None:
        return contextlib.nullcontext()
    # no cache of cast weights: one forward per autocast region here, and CUDA graphs need it off
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)


def _output_head(model: nn.Module) -> nn.Module:
    """The language-model head (``lm_head``) of a causal LM, also through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(base).__name__} has no output embeddings (lm_head)")
    return head


def score_answers(
    model: nn.Module,
    value_head: ValueHead | None,
    prompt_ids: Sequence[Sequence[int]],
    answer_ids: Sequence[Sequence[int]],
    *,
    with_values: bool = True,
    with_entropy: bool = False,
    pad_token_id: int = 0,
    autocast_dtype: str | None = None,
    deduplicate: bool = True,
    share_prefix: bool | str = True,
    prefix_cache: PrefixCache | None = None,
    groups: int = 1,
) -> ScoredAnswers:
    """Teacher-forced scoring of a batch of (prompt, answer) rows in one batched forward pass.

    How: the distinct rows are concatenated (prompt + answer) and **left-padded** by
    :func:`~moralkit.llm.agent.forward_batch`, with position ids counted from each row's first real
    token, so every answer ends at the last column; the model then only has to run its LM head on
    the last ``max_answer_len + 1`` positions (``logits_to_keep``), and the value head reads the
    same positions' final hidden states (captured as they enter the LM head). The position that
    predicts answer token j gives its log-probability, entropy and value -- exactly TRL's alignment
    (value at position t is paired with token t+1).

    Exact savings:

    * ``deduplicate``: identical rows (same prompt and same answer -- common when the game state
      repeats) are computed once and their results copied to every occurrence. The copy's backward
      pass sums the gradients, i.e. a unique row counts as many times as it occurs.
    * ``share_prefix`` (``True``, ``False`` or ``"auto"``: on a CPU only, see
      :func:`~moralkit.llm.agent.split_pays`): all game prompts start with the same tokens (chat
      template, rules, payoff table). That shared prefix is run once (batch of 1), its attention
      keys/values are copied to every row, and only the rows' remaining tokens are run in the batch.
      Gradients flow back through the copied keys/values into the prefix computation, so this is
      exact too; it cuts most of the tokens of a batch, at the price of one more model call.
    * ``prefix_cache``: a :class:`~moralkit.llm.agent.PrefixCache` holding that prefix for these
      weights (e.g. the frozen base model's, for the reference pass): no extra call at all.

    ``groups``: the rows are that many equal blocks, each through its own adapter (learners side by
    side, see :func:`ppo_update`): rows are then never deduplicated across blocks (pass
    ``deduplicate=False``) and a shared prefix runs once per block.

    Only dropout differs from scoring each row separately: copies share one dropout mask.
    Gradients flow if the caller has them enabled; use ``torch.no_grad()`` for rollout/reference
    passes. Every prompt and every answer must have at least one token. The caller chooses which
    adapter is active, or disables them for reference log-probabilities.
    """
    if len(prompt_ids) != len(answer_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(answer_ids)} answers")
    if len(prompt_ids) == 0:
        raise ValueError("score_answers needs at least one row")
    rows = [(tuple(int(t) for t in p), tuple(int(t) for t in a)) for p, a in zip(prompt_ids, answer_ids)]
    for i, (prompt, answer) in enumerate(rows):
        if len(prompt) == 0:
            raise ValueError(f"row {i}: empty prompt (the first answer token needs a position predicting it)")
        if len(answer) == 0:
            raise ValueError(f"row {i}: empty answer (PPOTrainer.step replaces empty answers by [eos])")
    if with_values and value_head is None:
        raise ValueError("with_values=True needs a value_head")

    # distinct rows and, for every original row, the index of its distinct row
    if deduplicate:
        position_of: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        unique_rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        inverse = []
        for row in rows:
            if row not in position_of:
                position_of[row] = len(unique_rows)
                unique_rows.append(row)
            inverse.append(position_of[row])
    else:
        unique_rows, inverse = rows, list(range(len(rows)))

    head = _output_head(model)
    device = head.weight.device
    sequences = [prompt + answer for prompt, answer in unique_rows]
    answer_lengths = torch.tensor([len(a) for _, a in unique_rows], device=device)
    width = max(len(a) for _, a in unique_rows)  # L: widest answer
    # the prefix must stop before every row's last prompt token, so that all positions predicting
    # answer tokens are in the batched part
    max_prefix = min(len(p) for p, _ in unique_rows) - 1

    # capture the final hidden states where they enter the LM head (already cut to the kept positions)
    captured: dict[str, torch.Tensor] = {}

    def keep_hidden(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured["hidden"] = inputs[0]

    with _autocast(device, autocast_dtype):
        hook = head.register_forward_pre_hook(keep_hidden) if with_values else None
        try:
            out = forward_batch(
                model, sequences, pad_id=pad_token_id, logits_to_keep=width + 1, share_prefix=share_prefix,
                prefix_cache=prefix_cache, max_prefix=max_prefix, groups=groups,
            )
        finally:
            if hook is not None:
                hook.remove()

    # column c of the window predicts the token at column T - width + c of the rows' input
    logits = out.logits[:, :-1, :].float()  # [U, L, V]
    targets = torch.tensor(
        [list(seq[len(seq) - width :]) if len(seq) >= width else [pad_token_id] * (width - len(seq)) + list(seq)
         for seq in sequences],
        dtype=torch.long,
        device=device,
    )  # [U, L], right-aligned
    log_softmax = torch.log_softmax(logits, dim=-1)
    token_logprobs = log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # right-aligned

    # right-aligned (answers end in the last column) -> left-aligned (answer token j in column j)
    columns = torch.arange(width, device=device).unsqueeze(0)
    mask = (columns < answer_lengths.unsqueeze(1)).float()
    source = (columns + (width - answer_lengths).unsqueeze(1)).clamp(max=width - 1)
    zero = torch.zeros((), device=device)

    def left_align(x: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.bool(), x.gather(1, source), zero)

    logprobs = left_align(token_logprobs)
    values = None
    if with_values:
        values = left_align(value_head(captured["hidden"][:, :-1, :]))
    entropy = None
    if with_entropy:
        with torch.no_grad():
            probs = log_softmax.exp()
            entropy = left_align(-(probs * log_softmax).sum(-1))

    if inverse != list(range(len(inverse))):
        index = torch.tensor(inverse, device=device)
        logprobs, mask = logprobs[index], mask[index]
        values = None if values is None else values[index]
        entropy = None if entropy is None else entropy[index]
    return ScoredAnswers(
        logprobs=logprobs,
        values=values,
        mask=mask,
        entropy=entropy,
        n_unique=len(unique_rows),
        prefix_len=out.prefix_len,
    )


# ---------------------------------------------------------------------------------------------
# 5. The trainer
# ---------------------------------------------------------------------------------------------

_CHECKPOINT_FORMAT = 1


def lora_config(config: PPOConfig):
    """peft's ``LoraConfig`` of a learner's adapter (the one place the LoRA settings become an adapter)."""
    from peft import LoraConfig

    modules = config.lora_target_modules
    return LoraConfig(task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, bias="none",
                      target_modules=modules if isinstance(modules, str) else list(modules))


class PPOTrainer:
    """One learning LLM player: a LoRA adapter + value head + Adam + KL controller + score stats.

    ``model`` is either a plain causal LM (it is wrapped with peft's ``get_peft_model``; the wrapper
    is ``trainer.model``) or an existing ``PeftModel``, to which this trainer **adds** its own
    adapter under ``adapter_name``. Two learners therefore share one frozen base model::

        alice = PPOTrainer(base_model, tokenizer, cfg, adapter_name="alice")
        bob = PPOTrainer(alice.model, tokenizer, cfg, adapter_name="bob")

    Each trainer owns its adapter's parameters, value head and optimiser, and activates its adapter
    (``model.set_adapter``) before each of its forward passes; the reference policy of both is the
    base model (all adapters disabled). Sample with ``trainer.policy_model`` (activates this
    trainer's adapter and returns the model) in eval mode — :meth:`step` leaves the model in eval
    mode.

    ``tokenizer_or_pad_id``: a tokenizer (its pad and eos tokens are used) or the pad token id
    (eos is then read from the model's generation/model config).

    Randomness: the LoRA and value-head initialisation, the minibatch shuffling and the dropout
    masks all come from ``config.seed`` through the trainer's own generators; the trainer never
    reseeds or consumes the global torch RNG, so sampling code around it is unaffected and a
    restored checkpoint continues bit-identically on CPU.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer_or_pad_id: Any,
        config: PPOConfig | None = None,
        *,
        adapter_name: str = "default",
    ) -> None:
        from peft import PeftModel, get_peft_model

        self.config = config if config is not None else PPOConfig.preset("paper")
        self.adapter_name = adapter_name
        self.pad_token_id, self.eos_token_id = _pad_and_eos(tokenizer_or_pad_id, model)

        lora = lora_config(self.config)
        hidden_size = _hidden_size(model)
        # initialise LoRA and the value head from config.seed without touching the global RNG
        # (peft creates the LoRA matrices on the CPU, then moves them next to their base layer)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.config.seed)
            if isinstance(model, PeftModel):
                if adapter_name in model.peft_config:
                    raise ValueError(
                        f"the model already has an adapter named {adapter_name!r}; give this learner "
                        f"another adapter_name (existing: {sorted(model.peft_config)})"
                    )
                model.add_adapter(adapter_name, lora)
            else:
                model = get_peft_model(model, lora, adapter_name=adapter_name)
            self.value_head = ValueHead(hidden_size, self.config.value_head_dropout)
        self.model = model
        self.device = _output_head(model).weight.device
        self.value_head.to(self.device)

        self.model.set_adapter(adapter_name)
        self.adapter_parameters = _adapter_parameters(self.model, adapter_name)
        if not self.adapter_parameters:
            raise ValueError(f"no LoRA parameters found for adapter {adapter_name!r}; check lora_target_modules")
        self.optimizer = torch.optim.Adam(
            self.trainable_parameters,
            lr=self.config.learning_rate,
            betas=self.config.adam_betas,
            eps=self.config.adam_eps,
        )
        self.kl_controller: AdaptiveKLController | FixedKLController
        if self.config.adaptive_kl:
            self.kl_controller = AdaptiveKLController(
                self.config.init_kl_coef, self.config.kl_target, self.config.kl_horizon
            )
        else:
            self.kl_controller = FixedKLController(self.config.init_kl_coef)
        self.score_moments = RunningMoments()
        self.step_count = 0
        # the trainer's own random streams: minibatch order, and dropout (CPU and, if used, CUDA)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self._dropout_cpu_state = torch.Generator().manual_seed(self.config.seed + 1).get_state()
        self._dropout_cuda_state: torch.Tensor | None = None
        # the frozen base model's keys/values of the prompts' shared beginning: valid for the whole run
        self._reference_prefix = PrefixCache()
        self._compiled_decoder = None
        self.graphs = self.config.compile == "graphs" or (self.config.compile == "auto" and graphs_pay(self.device))
        """Whether the updates replay CUDA graphs (``compile="graphs"``, or ``"auto"`` where :func:`graphs_pay`)."""
        self.tf32 = self.config.tf32 is True or (self.config.tf32 == "auto" and tf32_pays(self.device))
        """Whether a run's episodes compute float32 products in TF32 (``tf32=True``, or ``"auto"`` where
        :func:`tf32_pays`); the training loop applies it (:func:`tf32_products`)."""
        self.merged_sampling = self._merged_sampling()
        """Whether the run's player samples through a merged copy of the weights (``merged_sampling``)."""
        if self.graphs:
            decoder = self.model.get_base_model().get_decoder()
            self._compiled_decoder = (decoder, GraphedDecoder(decoder, pad_id=self.pad_token_id))
        elif self.config.compile and self.config.compile != "auto":
            decoder = self.model.get_base_model().get_decoder()
            mode = None if self.config.compile is True else self.config.compile
            self._compiled_decoder = (decoder, torch.compile(decoder.forward, dynamic=None, mode=mode))
        self.model.eval()

    def _merged_sampling(self) -> bool:
        """``merged_sampling`` resolved: ``"auto"`` where :func:`merged_sampling_pays` and the adapter can be
        merged; ``True`` refuses an adapter that cannot (saying why)."""
        from .llm.adapters import _unmergeable

        setting = self.config.merged_sampling
        if setting is False:
            return False
        why = _unmergeable(self.model, self.adapter_name)
        if setting is True and why:
            raise ValueError(f"merged_sampling=True: cannot merge adapter {self.adapter_name!r} into a copy of the "
                             f"weights: {why}. Use merged_sampling='auto' or False.")
        parameters = sum(p.numel() for p in self.model.get_base_model().parameters())
        return not why and (setting is True or merged_sampling_pays(self.device, parameters))

    # -- accessors -------------------------------------------------------------------------

    @property
    def trainable_parameters(self) -> list[nn.Parameter]:
        """This learner's adapter parameters followed by its value head's."""
        return list(self.adapter_parameters) + list(self.value_head.parameters())

    def activate(self) -> None:
        """Make this trainer's adapter the active one (and trainable) on the shared model.

        A no-op when it already is (peft's ``set_adapter`` walks every module).
        """
        if self.model.active_adapter != self.adapter_name:
            self.model.set_adapter(self.adapter_name)

    @property
    def policy_model(self) -> nn.Module:
        """The model with THIS learner's adapter active — use it to sample answers (in eval mode)."""
        self.activate()
        return self.model

    def reference(self) -> contextlib.AbstractContextManager:
        """Context in which ``trainer.model`` is the frozen base model (all adapters disabled)::

        with trainer.reference():
            base_answers = sample(trainer.model, prompts)

        Meant for inference (``torch.no_grad``): see :func:`moralkit.llm.adapters.adapters_disabled`.
        """
        return adapters_disabled(self.model)

    def __repr__(self) -> str:
        n_lora = sum(p.numel() for p in self.adapter_parameters)
        n_value = sum(p.numel() for p in self.value_head.parameters())
        return (
            f"PPOTrainer(preset={self.config.name!r}, adapter={self.adapter_name!r}, "
            f"trainable={n_lora + n_value:,} params (LoRA r={self.config.lora_r}: {n_lora:,}, "
            f"value head: {n_value:,}), steps={self.step_count}, kl_coef={self.kl_controller.value:.4g})"
        )

    # -- scoring -----------------------------------------------------------------------------

    def prepare_answers(self, answer_ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """The rule for empty answers: a model that emits EOS straight away produced one token, EOS.

        If the sampler stripped it (answer of length 0), we score the answer as ``[eos_token_id]``
        so the round still counts (with whatever score the episode loop gave it, typically the
        illegal-answer reward) and the model learns to stop doing it.
        """
        prepared = []
        for answer in answer_ids:
            answer = [int(t) for t in answer]
            if len(answer) == 0:
                if self.eos_token_id is None:
                    raise ValueError("empty answer and no eos token id known to stand in for it")
                answer = [self.eos_token_id]
            prepared.append(answer)
        return prepared

    def score(
        self,
        prompt_ids: Sequence[Sequence[int]],
        answer_ids: Sequence[Sequence[int]],
        *,
        with_values: bool = True,
        with_entropy: bool = False,
        reference: bool = False,
        deduplicate: bool | None = None,
    ) -> ScoredAnswers:
        """:func:`score_answers` with this trainer's adapter (or the base model if ``reference``).

        Reference passes reuse the base model's keys/values of the prompts' shared beginning,
        computed once per run (the base model never changes).
        """
        self.activate()
        graphs = self.graphs
        context = self.reference() if reference else contextlib.nullcontext()
        with context:
            return score_answers(
                self.model,
                None if reference else self.value_head,
                prompt_ids,
                self.prepare_answers(answer_ids),
                with_values=with_values and not reference,
                with_entropy=with_entropy,
                pad_token_id=self.pad_token_id,
                autocast_dtype=self.config.autocast_dtype,
                deduplicate=self.config.deduplicate if deduplicate is None else deduplicate,
                # recorded graphs take whole rows: no prefix split, no prefix cache
                share_prefix=False if graphs else self.config.share_prefix,
                prefix_cache=self._reference_prefix if reference and not torch.is_grad_enabled() and not graphs else None,
            )

    # -- the PPO update ----------------------------------------------------------------------

    def normalise_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Update the running score moments with this batch, then standardise (TRL order)."""
        cfg = self.config
        if cfg.use_score_scaling:
            self.score_moments.update(scores)
            scale = self.score_moments.std + torch.finfo(torch.float32).eps
            if cfg.use_score_norm:
                scores = (scores - self.score_moments.mean) / scale
            else:
                scores = scores / scale
        if cfg.score_clip is not None:
            scores = torch.clamp(scores, -cfg.score_clip, cfg.score_clip)
        return scores

    def step(
        self,
        prompt_ids: Sequence[Sequence[int]],
        answer_ids: Sequence[Sequence[int]],
        scores: Sequence[float] | torch.Tensor,
    ) -> dict[str, float]:
        """One PPO update on a batch of game rounds; returns a dict of statistics (floats).

        ``prompt_ids[i]``/``answer_ids[i]`` are the token ids of round i's prompt and sampled answer
        (no padding; empty answers are scored as ``[eos]``, see :meth:`prepare_answers`),
        ``scores[i]`` its moral reward.

        Stats: ``score/raw_mean``, ``score/raw_std``, ``score/norm_mean``, ``score/running_mean``,
        ``score/running_std``; ``objective/kl`` (mean over rows of the summed per-token KL to the
        base model, before the update), ``objective/kl_coef`` (used for this update),
        ``objective/kl_coef_next``, ``objective/entropy`` (mean next-token entropy on answer
        tokens, before the update); ``ppo/loss/policy``, ``ppo/loss/value``, ``ppo/loss/total``,
        ``ppo/policy/clipfrac``, ``ppo/policy/approxkl``, ``ppo/policy/policykl``,
        ``ppo/policy/ratio_mean``, ``ppo/val/clipfrac`` (means over minibatches),
        ``ppo/val/mean``, ``ppo/returns/mean``, ``ppo/minibatches``, ``ppo/skipped_minibatches``;
        ``batch/rows``, ``batch/unique_rows``, ``batch/shared_prefix`` (tokens run once),
        ``batch/answer_tokens``; ``time/ppo/forward``,
        ``time/ppo/optimize``, ``time/ppo/total`` (seconds); ``step`` (updates done, this one included).
        """
        return ppo_update([self], [(prompt_ids, answer_ids, scores)])[0]

    @contextlib.contextmanager
    def _compiled(self) -> Iterator[None]:
        """With ``config.compile``: the block runs the model's decoder stack through ``torch.compile``
        (or, with ``"graphs"``, through a :class:`~moralkit.llm.graphs.GraphedDecoder`).

        Only the stack of transformer layers (with their LoRA layers) is compiled, and only for the
        PPO epochs, whose shapes repeat from update to update (with ``"graphs"``, the scoring passes
        before them too); the language-model head and the value head stay eager.
        """
        if self._compiled_decoder is None:
            yield
            return
        decoder, compiled = self._compiled_decoder
        decoder.forward = compiled
        try:
            yield
        finally:
            del decoder.forward  # back to the class's own forward

    def _train_mode(self, training: bool) -> None:
        """Dropout on (PPO epochs) or off (scoring, sampling), switched only when it changes.

        ``model.train()`` walks every module (~15 ms for SmolLM2's ~1,000), so it runs twice per
        update, not once per pass.
        """
        if self.model.training != training:
            self.model.train(training)
        if self.value_head.training != training:
            self.value_head.train(training)

    @contextlib.contextmanager
    def _own_dropout_rng(self) -> Iterator[None]:
        """Run the block (dropout in the PPO epochs) on the trainer's own random stream.

        The global torch RNG is saved, replaced by the trainer's dropout state, and restored
        afterwards, so the update neither depends on nor disturbs the caller's random numbers.
        """
        cuda_devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda_devices):
            torch.set_rng_state(self._dropout_cpu_state)
            if cuda_devices:
                if self._dropout_cuda_state is None:
                    with torch.cuda.device(self.device):
                        torch.cuda.manual_seed(self.config.seed + 1)
                else:
                    torch.cuda.set_rng_state(self._dropout_cuda_state, self.device)
            try:
                yield
            finally:
                self._dropout_cpu_state = torch.get_rng_state()
                if cuda_devices:
                    self._dropout_cuda_state = torch.cuda.get_rng_state(self.device)

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything but the adapter weights: value head, optimiser, KL, score stats, RNG, step."""
        return {
            "format": _CHECKPOINT_FORMAT,
            "adapter_name": self.adapter_name,
            "config": self.config.to_dict(),
            "step_count": self.step_count,
            "value_head": self.value_head.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "kl_controller": self.kl_controller.state_dict(),
            "score_moments": self.score_moments.state_dict(),
            "generator": self.generator.get_state(),
            "dropout_cpu_state": self._dropout_cpu_state,
            "dropout_cuda_state": self._dropout_cuda_state,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write a checkpoint folder, atomically (:func:`moralkit.storage.write_folder`).

        Layout: ``adapter/`` (peft's own format: ``PeftModel.from_pretrained(base, folder/"adapter")``
        loads it), ``trainer_state.pt`` (:meth:`state_dict`), ``ppo_config.json`` (readable copy of
        the config). The previous checkpoint is only removed once the new one is complete (if the
        process dies in between, :meth:`load_state` finds the ``.<name>.old`` folder).
        """

        def fill(tmp: Path) -> None:
            # the adapter, in peft's format (peft puts a non-"default" adapter into a sub-folder)
            self.model.save_pretrained(str(tmp / "_peft"), selected_adapters=[self.adapter_name])
            peft_folder = tmp / "_peft" if self.adapter_name == "default" else tmp / "_peft" / self.adapter_name
            os.rename(peft_folder, tmp / "adapter")
            shutil.rmtree(tmp / "_peft", ignore_errors=True)
            torch.save(self.state_dict(), tmp / "trainer_state.pt")
            (tmp / "ppo_config.json").write_text(json.dumps(self.config.to_dict(), indent=2))

        return write_folder(folder, fill)

    def load_state(self, folder: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save` into this trainer (same config and model)."""
        folder = _existing_checkpoint(Path(folder))
        state = _read_trainer_state(folder)
        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported checkpoint format {state.get('format')!r} in {folder}")
        saved = PPOConfig.from_dict(state["config"])
        lora_fields = ("lora_r", "lora_alpha", "lora_target_modules")
        if any(getattr(saved, f) != getattr(self.config, f) for f in lora_fields):
            raise ValueError(
                f"checkpoint LoRA shape {[getattr(saved, f) for f in lora_fields]} differs from this "
                f"trainer's {[getattr(self.config, f) for f in lora_fields]}; use PPOTrainer.from_checkpoint"
            )

        self.load_adapter_weights(folder / "adapter")
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_controller.load_state_dict(state["kl_controller"])
        self.score_moments.load_state_dict(state["score_moments"])
        self.step_count = state["step_count"]
        self.generator.set_state(state["generator"])
        self._dropout_cpu_state = state["dropout_cpu_state"]
        self._dropout_cuda_state = state["dropout_cuda_state"] if self.device.type == "cuda" else None
        self.model.eval()

    def load_adapter_weights(self, adapter_folder: str | os.PathLike) -> None:
        """Load LoRA weights saved in peft's format (``adapter_model.safetensors``) into this trainer's adapter.

        Only the policy: the value head, optimiser and statistics stay as they are (enough to play
        with a finished run's final adapter). A damaged file raises an error naming it.
        """
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        folder = Path(adapter_folder)
        path = folder / "adapter_model.safetensors"
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, f"{path} is missing: no LoRA weights to load.", str(path))
        try:
            adapter_weights = load_file(str(path), device=str(self.device))
        except Exception as exc:  # safetensors raises its own error type for a cut-short file
            raise DamagedFileError(f"{path} is damaged and cannot be loaded ({exc}).") from None
        result = set_peft_model_state_dict(self.model, adapter_weights, adapter_name=self.adapter_name)
        invalidate_merged(self.model)  # a player's merged copy of the adapter is recomputed
        if result.unexpected_keys:
            raise ValueError(f"unexpected adapter weights in {folder}: {result.unexpected_keys[:5]}")
        missing = [k for k in result.missing_keys if f".{self.adapter_name}." in k and "lora_" in k]
        if missing:
            raise ValueError(f"adapter weights missing from {folder}: {missing[:5]}")

    @classmethod
    def from_checkpoint(
        cls,
        folder: str | os.PathLike,
        model: nn.Module,
        tokenizer_or_pad_id: Any,
        *,
        adapter_name: str | None = None,
    ) -> "PPOTrainer":
        """A new trainer on ``model`` (base model or shared PeftModel) restored from ``folder``.

        The config and (unless given) the adapter name are read from the checkpoint.
        """
        folder = _existing_checkpoint(Path(folder))
        state = _read_trainer_state(folder)
        config = PPOConfig.from_dict(state["config"])
        trainer = cls(model, tokenizer_or_pad_id, config, adapter_name=adapter_name or state["adapter_name"])
        trainer.load_state(folder)
        return trainer


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


class SideBySideValueHeads(nn.Module):
    """The value heads of several learners, each reading its own equal block of rows (see :func:`ppo_update`)."""

    def __init__(self, heads: Sequence[ValueHead]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        blocks = hidden_states.chunk(len(self.heads))
        return torch.cat([head(block) for head, block in zip(self.heads, blocks)])


def _split(scored: ScoredAnswers, parts: int) -> list[ScoredAnswers]:
    """A scored batch of ``parts`` equal blocks of rows as one :class:`ScoredAnswers` per block."""
    def chunks(x):
        return [None] * parts if x is None else list(x.chunk(parts))

    return [ScoredAnswers(logprobs=lp, values=v, mask=m, entropy=e, n_unique=scored.n_unique // parts,
                          prefix_len=scored.prefix_len)
            for lp, v, m, e in zip(chunks(scored.logprobs), chunks(scored.values), chunks(scored.mask),
                                   chunks(scored.entropy))]


_SIDE_BY_SIDE_FIELDS = ("mini_batch_size", "ppo_epochs", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
                        "value_head_dropout", "autocast_dtype", "compile", "deduplicate", "share_prefix", "tf32")
"""PPO settings that learners updated side by side must share (they shape the shared passes)."""


@contextlib.contextmanager
def _side_by_side(trainers: Sequence["PPOTrainer"]) -> Iterator[None]:
    """One learner: its adapter active. Several: their adapters side by side, every one of them trainable."""
    if len(trainers) == 1:
        trainers[0].activate()
        yield
        return
    from .llm.adapters import adapters_side_by_side

    for trainer in trainers:  # peft's set_adapter (a player's, between updates) leaves only one adapter trainable
        for p in trainer.adapter_parameters:
            p.requires_grad_(True)
    with adapters_side_by_side(trainers[0].model, [t.adapter_name for t in trainers]):
        yield


def _score_side_by_side(trainers: Sequence["PPOTrainer"], prompt_ids, answer_ids, *, with_values: bool = True,
                        with_entropy: bool = False, reference: bool = False, deduplicate: bool | None = None
                        ) -> list[ScoredAnswers]:
    """:meth:`PPOTrainer.score` of each learner's equal block of rows, in one pass for all of them."""
    if len(trainers) == 1:
        return [trainers[0].score(prompt_ids, answer_ids, with_values=with_values, with_entropy=with_entropy,
                                  reference=reference, deduplicate=deduplicate)]
    lead = trainers[0]
    graphs = lead.graphs
    context = lead.reference() if reference else contextlib.nullcontext()
    with context:
        scored = score_answers(
            lead.model,
            None if reference else SideBySideValueHeads([t.value_head for t in trainers]),
            prompt_ids,
            answer_ids,
            with_values=with_values and not reference,
            with_entropy=with_entropy,
            pad_token_id=lead.pad_token_id,
            autocast_dtype=lead.config.autocast_dtype,
            # rows stay in their blocks: no deduplication; with the adapters on, a shared prefix runs once per block
            deduplicate=False,
            share_prefix=False if graphs else lead.config.share_prefix,
            prefix_cache=lead._reference_prefix if reference and not torch.is_grad_enabled() and not graphs else None,
            groups=1 if reference else len(trainers),
        )
    return _split(scored, len(trainers))


def ppo_update(
    trainers: Sequence["PPOTrainer"],
    batches: Sequence[tuple[Sequence[Sequence[int]], Sequence[Sequence[int]], Sequence[float] | torch.Tensor]],
) -> list[dict[str, float]]:
    """One PPO update of each learner on its batch ``(prompt_ids, answer_ids, scores)``; their statistics.

    One learner (what :meth:`PPOTrainer.step` does) runs its own passes. Several learners -- several
    training runs whose adapters sit on one shared base model -- are updated **side by side**: every
    pass (scoring, reference, each minibatch's forward and backward) runs all their rows at once,
    row block ``k`` through learner ``k``'s adapter (:func:`moralkit.llm.adapters.adapters_side_by_side`),
    so that a GPU launches one set of kernels for all of them. Everything else stays each learner's
    own: score normalisation, KL penalty and controller, advantages, minibatch order (its own
    generator), early stopping, gradient clipping and Adam step. The batches must have the same
    number of rows and the learners the same shaping settings (``_SIDE_BY_SIDE_FIELDS``). A learner
    updated side by side gets the numbers of its update alone except for its dropout masks: the
    shared passes draw them from the first learner's stream (each learner keeps a copy of that
    stream afterwards, so a checkpointed group resumes identically). The ``time/ppo/*`` figures are
    each learner's share of the update's time.
    """
    if not trainers or len(trainers) != len(batches):
        raise ValueError(f"ppo_update needs one batch per learner: {len(trainers)} learners, {len(batches)} batches.")
    lead = trainers[0]
    cfg = lead.config
    parts = len(trainers)
    if parts > 1:
        if any(t.model is not lead.model for t in trainers) or len({t.adapter_name for t in trainers}) < parts:
            raise ValueError("Learners updated side by side share one model, each with an adapter of its own name.")
        for name in _SIDE_BY_SIDE_FIELDS:
            values = {repr(getattr(t.config, name)) for t in trainers}
            if len(values) > 1:
                raise ValueError(f"Learners updated side by side need the same {name} (got {', '.join(sorted(values))}).")
    t_start = time.perf_counter()
    prompts, answers, raw = [], [], []
    for trainer, (prompt_ids, answer_ids, scores) in zip(trainers, batches):
        prompts.append([[int(t) for t in p] for p in prompt_ids])
        answers.append(trainer.prepare_answers(answer_ids))
        raw.append(torch.as_tensor(scores, dtype=torch.float32).detach().cpu().flatten())
        if not (len(prompts[-1]) == len(answers[-1]) == raw[-1].numel()):
            raise ValueError(f"{len(prompts[-1])} prompts, {len(answers[-1])} answers, {raw[-1].numel()} scores")
        if not prompts[-1]:
            raise ValueError("step needs at least one row")
    n_rows = len(prompts[0])
    if any(len(p) != n_rows for p in prompts):
        raise ValueError(f"Learners updated side by side need batches of the same size, got {[len(p) for p in prompts]} rows.")
    all_prompts = [p for block in prompts for p in block]
    all_answers = [a for block in answers for a in block]

    # 1. score normalisation (running mean/std over the whole run, this batch included)
    raw_moments, norm_scores, norm_means = [], [], []
    for trainer, scores in zip(trainers, raw):
        raw_moments.append((scores.mean().item(), scores.std().item() if n_rows > 1 else 0.0))
        normalised = trainer.normalise_scores(scores)
        norm_means.append(normalised.mean().item())
        norm_scores.append(normalised.to(lead.device))

    with _side_by_side(trainers):
        # 2. rollout pass: old log-probs and values (adapter on), reference log-probs (adapter off)
        t_forward = time.perf_counter()
        for trainer in trainers:
            trainer._train_mode(False)
        # with CUDA graphs the scoring passes are replayed too: every row kept (shapes repeat)
        graphs = lead.graphs
        dedup = False if graphs else None
        with torch.no_grad(), (lead._compiled() if graphs else contextlib.nullcontext()):
            olds = _score_side_by_side(trainers, all_prompts, all_answers, with_values=True, with_entropy=True,
                                       deduplicate=dedup)
            refs = _score_side_by_side(trainers, all_prompts, all_answers, reference=True, deduplicate=dedup)

        # 3. per-token rewards and 4. advantages, each learner with its own KL coefficient
        rollouts = []
        for trainer, old, ref, scores in zip(trainers, olds, refs, norm_scores):
            old_values = old.values * old.mask
            kl_coef = trainer.kl_controller.value
            rewards = per_token_rewards(scores, old.logprobs, ref.logprobs, old.mask, kl_coef)
            advantages, returns = gae_advantages(old_values, rewards, old.mask, trainer.config.gamma,
                                                 trainer.config.lam, whiten=trainer.config.whiten_advantages)
            rollouts.append((old_values, advantages, returns, kl_coef))
        time_forward = time.perf_counter() - t_forward

        # 5. PPO epochs over shuffled minibatches, one Adam step per learner each
        t_optimize = time.perf_counter()
        for trainer in trainers:
            trainer._train_mode(True)
        minibatch_stats: list[list[dict[str, float]]] = [[] for _ in trainers]
        skipped = [0] * parts
        stopped = [False] * parts
        # compiled: every minibatch keeps its rows (no deduplication), so that shapes repeat
        dedup = None if lead._compiled_decoder is None else False
        with lead._own_dropout_rng(), lead._compiled():
            for _epoch in range(cfg.ppo_epochs):
                # each learner's order, drawn every epoch, stopped or not
                orders = [torch.randperm(n_rows, generator=t.generator) for t in trainers]
                for start in range(0, n_rows, cfg.mini_batch_size):
                    if all(stopped):
                        break
                    picks = [order[start : start + cfg.mini_batch_size] for order in orders]
                    news = _score_side_by_side(
                        trainers,
                        [prompts[k][i] for k, idx in enumerate(picks) for i in idx.tolist()],
                        [answers[k][i] for k, idx in enumerate(picks) for i in idx.tolist()],
                        with_values=True, deduplicate=dedup,
                    )
                    stepping, total = [], None
                    for k, (trainer, new, idx) in enumerate(zip(trainers, news, picks)):
                        if stopped[k]:  # its rows still ride along (fixed shapes); no loss, no step
                            continue
                        t_cfg = trainer.config
                        old_values, advantages, returns, _ = rollouts[k]
                        idx = idx.to(lead.device)
                        w = new.mask.shape[1]  # this minibatch's widest answer
                        loss, stats = ppo_losses(
                            new.logprobs, olds[k].logprobs[idx, :w], new.values, old_values[idx, :w],
                            advantages[idx, :w], returns[idx, :w], new.mask,
                            t_cfg.cliprange, t_cfg.cliprange_value, t_cfg.vf_coef,
                        )
                        minibatch_stats[k].append(stats)
                        if t_cfg.target_kl is not None and stats["approxkl"] > 1.5 * t_cfg.target_kl:
                            stopped[k] = True  # no step for this minibatch, and no more minibatches this update
                            skipped[k] += 1
                            continue
                        if t_cfg.ratio_threshold is not None and stats["ratio_mean"] > t_cfg.ratio_threshold:
                            # TRL zeroed the loss of such a minibatch but still called optimizer.step()
                            # (so Adam's momentum moved the weights); we skip the step altogether.
                            warnings.warn(
                                f"mean probability ratio {stats['ratio_mean']:.2f} of a minibatch exceeds "
                                f"ratio_threshold {t_cfg.ratio_threshold}; skipping it"
                            )
                            skipped[k] += 1
                            continue
                        stepping.append(trainer)
                        total = loss if total is None else total + loss
                    if total is None:
                        continue
                    for trainer in stepping:
                        trainer.optimizer.zero_grad(set_to_none=True)
                    total.backward()  # each learner's loss reaches only its own adapter and value head
                    for trainer in stepping:
                        if trainer.config.max_grad_norm is not None:
                            torch.nn.utils.clip_grad_norm_(trainer.trainable_parameters, trainer.config.max_grad_norm)
                        trainer.optimizer.step()
        for trainer in trainers:
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer._train_mode(False)
            invalidate_merged(trainer.model)  # the adapters moved: merged copies for sampling are recomputed
            if trainer is not lead:  # the shared passes drew their dropout masks from the lead's stream
                trainer._dropout_cpu_state = lead._dropout_cpu_state.clone()
                trainer._dropout_cuda_state = (None if lead._dropout_cuda_state is None
                                               else lead._dropout_cuda_state.clone())
        time_optimize = time.perf_counter() - t_optimize

    # 6. KL controllers: mean over rows of the summed per-token KL, before this update
    results = []
    for k, (trainer, old, ref) in enumerate(zip(trainers, olds, refs)):
        old_values, advantages, returns, kl_coef = rollouts[k]
        mask = old.mask
        kl_per_row = ((old.logprobs - ref.logprobs) * mask).sum(-1)
        mean_kl, entropy, value_mean, returns_mean, answer_tokens = torch.stack(
            [kl_per_row.mean(), masked_mean(old.entropy, mask), masked_mean(old_values, mask),
             masked_mean(returns, mask), mask.sum()]
        ).tolist()  # one device-to-host copy
        trainer.kl_controller.update(mean_kl, n_rows)
        trainer.step_count += 1
        mbs = minibatch_stats[k]

        def mean_of(key: str, mbs=mbs) -> float:
            return sum(s[key] for s in mbs) / len(mbs)

        results.append({
            "score/raw_mean": raw_moments[k][0],
            "score/raw_std": raw_moments[k][1],
            "score/norm_mean": norm_means[k],
            "score/running_mean": trainer.score_moments.mean,
            "score/running_std": trainer.score_moments.std,
            "objective/kl": mean_kl,
            "objective/kl_coef": kl_coef,
            "objective/kl_coef_next": trainer.kl_controller.value,
            "objective/entropy": entropy,
            "ppo/loss/policy": mean_of("policy_loss"),
            "ppo/loss/value": mean_of("value_loss"),
            "ppo/loss/total": mean_of("loss"),
            "ppo/policy/clipfrac": mean_of("clipfrac"),
            "ppo/policy/approxkl": mean_of("approxkl"),
            "ppo/policy/policykl": mean_of("policykl"),
            "ppo/policy/ratio_mean": mean_of("ratio_mean"),
            "ppo/val/clipfrac": mean_of("value_clipfrac"),
            "ppo/val/mean": value_mean,
            "ppo/returns/mean": returns_mean,
            "ppo/minibatches": float(len(mbs)),
            "ppo/skipped_minibatches": float(skipped[k]),
            "batch/rows": float(n_rows),
            "batch/unique_rows": float(old.n_unique),
            "batch/shared_prefix": float(old.prefix_len),
            "batch/answer_tokens": answer_tokens,
            # side by side, each learner's share of the shared passes' time
            "time/ppo/forward": time_forward / parts,
            "time/ppo/optimize": time_optimize / parts,
            "time/ppo/total": (time.perf_counter() - t_start) / parts,
            "step": float(trainer.step_count),
        })
    return results


def _existing_checkpoint(folder: Path) -> Path:
    """``folder``, or its ``.old`` twin if a save was interrupted between its two renames."""
    for version in folder_versions(folder):
        if (version / "trainer_state.pt").exists():
            if version != folder:
                warnings.warn(f"{folder} is missing; loading the previous checkpoint from {version}")
            return version
    raise FileNotFoundError(errno.ENOENT, f"no PPO checkpoint in {folder} (trainer_state.pt missing)", str(folder))


def _read_trainer_state(folder: Path) -> dict[str, Any]:
    """``trainer_state.pt`` of a checkpoint folder; a damaged file raises an error naming it."""
    path = folder / "trainer_state.pt"
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a cut-short zip archive, a foreign file
        raise DamagedFileError(f"{path} is damaged and cannot be loaded ({type(exc).__name__}: {exc}).") from None


def _pad_and_eos(tokenizer_or_pad_id: Any, model: nn.Module) -> tuple[int, int | None]:
    """(pad id, eos id) from a tokenizer, or (given pad id, eos from the model's configs)."""
    if isinstance(tokenizer_or_pad_id, int):
        eos = None
        for cfg in (getattr(model, "generation_config", None), getattr(model, "config", None)):
            eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
            if eos is not None:
                break
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        return tokenizer_or_pad_id, eos
    tokenizer = tokenizer_or_pad_id
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token; pass a pad token id instead")
    return int(pad), None if eos is None else int(eos)


def _hidden_size(model: nn.Module) -> int:
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return int(config.hidden_size)


def _adapter_parameters(model: nn.Module, adapter_name: str) -> list[nn.Parameter]:
    """The LoRA weights belonging to ``adapter_name`` (names like ``...q_proj.lora_A.<name>.weight``)."""
    params = []
    for name, param in model.named_parameters():
        parts = name.split(".")
        if adapter_name in parts and any(part.startswith("lora_") for part in parts):
            params.append(param)
    return params
