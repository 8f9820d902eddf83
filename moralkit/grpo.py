"""GRPO with TRL's ``GRPOTrainer`` — the critic-free alternative to our PPO, on the same task.

PPO (:mod:`moralkit.ppo`) learns a value head and turns the moral reward into a KL-penalised
per-token reward with advantages from GAE. **GRPO** (Group Relative Policy Optimisation) drops
the critic: it samples a *group* of ``num_generations`` answers to the **same** prompt, scores each
with the reward, and uses how much better an answer did than its group's mean (divided by the
group's standard deviation) as that answer's advantage. A KL term ``beta * KL(policy || base)``
keeps the policy near the base model (TRL's default ``beta`` is 0; we set it > 0, as our PPO
anchors to the base too).

On our problem one update goes like this (:meth:`GRPOLearner.update`):

1. **States from play.** The episode loop (:class:`moralkit.training.TrainingRun`) plays an episode
   with the current policy exactly as for PPO (same games, opponent, prompts, log). Every round
   gives one *state*: the prompt the player saw, the last moves (``my_prev``, ``opp_prev``), and
   the move the opponent's strategy made in that round (``opp_move``: the opponent moves at the
   same time, so its move does not depend on the answer being scored).
2. **A group per state.** TRL samples ``num_generations`` answers to each prompt with the current
   policy (LoRA adapter on).
3. **Rewards.** :func:`moral_reward_function` parses each answer with the run's labels and scores
   it with the moral reward in force (an illegal answer earns ``R_illegal``, as in PPO).
4. **Loss and step.** TRL computes the group-relative advantages, the reference log-probabilities
   (the same model with its adapter switched off: no second copy), and the clipped policy loss +
   ``beta`` x KL; we take one Adam step on the adapter.

We drive TRL's trainer one update at a time (``training_step``) rather than with its ``train()``
loop, so the run folder, the per-round log, checkpoints and resuming are the same as for PPO.
TRL is imported only here, inside functions: ``pip install "moralkit[grpo]"`` installs it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .games import MatrixGame, get_game
from .llm.prompts import LabelSet, get_label_set, parse_answers
from .ppo import PPOConfig, lora_config, native_bf16
from .rewards import Reward
from .storage import DamagedFileError, folder_versions, write_folder

__all__ = ["GRPOSettings", "GRPOLearner", "moral_reward_function", "require_trl", "TRL_INSTALL_HINT"]

TRL_INSTALL_HINT = 'pip install "moralkit[grpo]"'
_CHECKPOINT_FORMAT = 1


def require_trl():
    """The ``trl`` module, or an ImportError that says how to install it."""
    try:
        import trl
    except ImportError as exc:
        raise ImportError(
            f"GRPO trains with TRL's GRPOTrainer, and TRL is not installed ({exc}). Install it with: "
            f"{TRL_INSTALL_HINT}   (or train with our own PPO: algorithm='ppo', --algorithm ppo)."
        ) from None
    return trl


@dataclass(frozen=True)
class GRPOSettings:
    """Every knob of a GRPO update. LoRA shape, learning rate, Adam and seed come from the PPO preset
    (:meth:`from_ppo`), so the two algorithms train the same adapter with the same optimiser.

    * ``num_generations``: answers sampled per state (the group); ≥ 2.
    * ``beta``: weight of the KL to the base model (TRL's default 0 would let the policy drift freely).
    * ``epsilon``: clip range of the probability ratio (active only when ``num_iterations`` > 1).
    * ``num_iterations``: optimiser passes over one group of answers (TRL's μ).
    * ``loss_type``, ``scale_rewards``: TRL's (``"dapo"``, ``"group"``: advantages divided by the group's std).
    * ``temperature``: sampling temperature of the groups (1.0, as our player samples).
    * ``minibatch_size``: answers per forward/backward pass (gradients are accumulated: one Adam step per update).
    * ``max_grad_norm``: gradient clipping (``None``: off, as in the PPO presets).
    """

    num_generations: int = 4
    beta: float = 0.04
    epsilon: float = 0.2
    num_iterations: int = 1
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    temperature: float = 1.0
    minibatch_size: int = 32
    max_grad_norm: float | None = None
    # taken from the PPO preset by from_ppo
    learning_rate: float = 3e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    autocast_dtype: str | None = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.lora_target_modules, list):
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
        object.__setattr__(self, "adam_betas", tuple(self.adam_betas))
        if int(self.num_generations) < 2:
            raise ValueError(f"num_generations must be at least 2 (GRPO compares answers within a group), got {self.num_generations}.")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0 (the KL anchor to the base model), got {self.beta}.")
        for name in ("num_iterations", "minibatch_size", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @classmethod
    def from_ppo(cls, ppo: PPOConfig, **overrides: Any) -> "GRPOSettings":
        """The GRPO settings that share ``ppo``'s adapter, optimiser, compute and seed; ``overrides`` win.

        >>> s = GRPOSettings.from_ppo(PPOConfig.preset("cpu"), beta=0.1)
        >>> s.lora_r, s.learning_rate, s.beta
        (16, 0.0003, 0.1)
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown GRPO settings {sorted(unknown)}; the fields are {sorted(known)}.")
        shared = {k: getattr(ppo, k) for k in ("learning_rate", "adam_betas", "adam_eps", "lora_r", "lora_alpha",
                                                "lora_dropout", "lora_target_modules", "autocast_dtype", "seed")}
        return cls(**{**shared, **overrides})

    def ppo_like(self) -> PPOConfig:
        """A PPOConfig holding this adapter's LoRA settings (for :func:`moralkit.ppo.lora_config`)."""
        return PPOConfig(lora_r=self.lora_r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                         lora_target_modules=self.lora_target_modules)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# the reward function TRL calls
# ---------------------------------------------------------------------------------------------
def _text(completion: Any) -> str:
    """A completion as text: TRL passes a string, or (conversational prompts) a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def moral_reward_function(game: MatrixGame | str, rewards: Mapping[str, Reward],
                          labels: LabelSet | str | None = "train") -> Callable:
    """A reward function in TRL's form: ``f(prompts, completions, **dataset columns) -> list[float]``.

    It reads the state from the dataset columns ``train_reward`` (the reward's name in ``rewards``),
    ``my_prev``, ``opp_prev`` and ``opp_move`` (the opponent strategy's move that round), parses each
    completion with ``labels`` and returns the moral reward of M's move; a garbled answer is an
    illegal move and earns the reward's ``r_illegal``. With ``labels=None`` each row's labels come
    from its columns ``c_label`` and ``d_label`` (a run training with ``labels="pool"``).

    >>> from moralkit.rewards import get_reward
    >>> f = moral_reward_function("prisoners_dilemma", {"game": get_reward("game")})
    >>> f(["p", "p"], ["action2", "action 9"], train_reward=["game"] * 2, my_prev=[0, 0], opp_prev=[0, 0], opp_move=[0, 0])
    [4.0, -6.0]
    >>> g = moral_reward_function("prisoners_dilemma", {"game": get_reward("game")}, labels=None)
    >>> g(["p", "p"], ["red", "red"], train_reward=["game"] * 2, my_prev=[0, 0], opp_prev=[0, 0], opp_move=[0, 0],
    ...   c_label=["red", "blue"], d_label=["blue", "red"])
    [3.0, 4.0]
    """
    game = get_game(game)
    labels = None if labels is None else get_label_set(labels)

    def moral_reward(prompts, completions, train_reward, my_prev, opp_prev, opp_move, c_label=None, d_label=None,
                     **_unused) -> list[float]:
        texts = [_text(c) for c in completions]
        if labels is not None:
            moves = parse_answers(texts, labels)
        elif c_label is None or d_label is None:
            raise ValueError("This reward function reads each row's labels from the columns c_label and d_label, "
                             "which the dataset lacks; pass labels= to read every answer with one label set.")
        else:
            moves = np.array([parse_answers([t], LabelSet(c, d))[0] for t, c, d in zip(texts, c_label, d_label)])
        names = np.asarray(list(train_reward), dtype=object)
        out = np.zeros(len(moves), dtype=float)
        for name in dict.fromkeys(names):
            rows = names == name
            out[rows] = rewards[name](game, moves[rows], np.asarray(opp_move)[rows], np.asarray(opp_prev)[rows],
                                      my_prev_move=np.asarray(my_prev)[rows])
        return [float(x) for x in out]

    return moral_reward


# ---------------------------------------------------------------------------------------------
# the learner
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _score_answer_tokens_only() -> Iterator[None]:
    """Within the block, TRL's fused LM head scores only the answer tokens on every device.

    TRL 1.16 scores only the labelled positions on CUDA/XPU, but elsewhere (a CPU) it sends *every*
    prompt position through the LM head (to keep tile shapes fixed for compilers) and masks the
    result afterwards: for a two-token answer to a 200-token prompt that is ~100x the work and
    memory for the same numbers. Where TRL's code is not what we expect, nothing is changed.
    """
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:
        trl_utils = None
    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: True  # "compact": only the positions that carry a label
    try:
        yield
    finally:
        trl_utils._use_triton = original


def _chunks(total: int, size: int) -> int:
    """How many equal parts of at most ``size`` split ``total`` (the smallest divisor that works)."""
    for k in range(max(1, math.ceil(total / size)), total + 1):
        if total % k == 0:
            return k
    return total


class GRPOLearner:
    """One LLM player learning with TRL's GRPOTrainer: a LoRA adapter + Adam, driven update by update.

    ``model`` is a plain causal LM (wrapped with peft; the wrapper is ``learner.model``).
    ``rows_per_update`` is how many states each update gets (games per update x rounds): TRL sizes
    its generation batch from it. ``reward_fn`` is :func:`moral_reward_function`'s result.

    Randomness: every update runs under torch's global RNG seeded from ``(seed, update number)``
    and restored afterwards, so a resumed run samples the same groups as an uninterrupted one.
    """

    def __init__(self, model, tokenizer, settings: GRPOSettings, *, rows_per_update: int, reward_fn: Callable,
                 max_completion_length: int, adapter_name: str = "default") -> None:
        trl = require_trl()
        from datasets import Dataset
        from peft import get_peft_model

        self.settings = s = settings
        self.adapter_name = adapter_name
        if adapter_name != "default":
            raise ValueError("GRPOLearner trains one adapter named 'default' (a second learner needs PPO).")
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(s.seed)
            self.model = get_peft_model(model, lora_config(s.ppo_like()), adapter_name=adapter_name)
        self.device = next(self.model.parameters()).device
        self.rows_per_update = int(rows_per_update)
        completions = self.rows_per_update * s.num_generations
        self.accumulation = _chunks(completions, s.minibatch_size)
        bf16 = s.autocast_dtype == "bf16" or (s.autocast_dtype == "auto" and native_bf16(self.device))
        self._workdir = tempfile.TemporaryDirectory(prefix="moralkit-grpo-")  # TRL wants an output_dir; we write nothing there
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers renames gradient_checkpointing
            args = trl.GRPOConfig(
                output_dir=self._workdir.name, report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1,
                use_cpu=self.device.type == "cpu", bf16=bf16, fp16=False, seed=s.seed, gradient_checkpointing=False,
                learning_rate=s.learning_rate, max_grad_norm=s.max_grad_norm or 0.0,
                per_device_train_batch_size=completions // self.accumulation, gradient_accumulation_steps=self.accumulation,
                num_generations=s.num_generations, max_completion_length=int(max_completion_length),
                temperature=s.temperature, top_p=1.0, top_k=0, beta=s.beta, epsilon=s.epsilon,
                num_iterations=s.num_iterations, loss_type=s.loss_type, scale_rewards=s.scale_rewards,
            )
        placeholder = Dataset.from_list([{"prompt": [{"role": "user", "content": "-"}]}])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trainer = trl.GRPOTrainer(model=self.model, reward_funcs=reward_fn, args=args,
                                           train_dataset=placeholder, processing_class=tokenizer)
        self.adapter_parameters = [p for n, p in self.model.named_parameters() if "lora_" in n and f".{adapter_name}." in n]
        self.optimizer = torch.optim.Adam(self.adapter_parameters, lr=s.learning_rate, betas=s.adam_betas, eps=s.adam_eps)
        self.trainer.optimizer = self.optimizer
        self.step_count = 0
        self.model.eval()

    @property
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What GRPO trains: the LoRA adapter only (no value head: the group is the baseline)."""
        return list(self.adapter_parameters)

    def __repr__(self) -> str:
        n = sum(p.numel() for p in self.adapter_parameters)
        return (f"GRPOLearner(group={self.settings.num_generations}, beta={self.settings.beta}, LoRA r={self.settings.lora_r}: "
                f"{n:,} params, rows per update={self.rows_per_update}, steps={self.step_count})")

    def update(self, rows: Sequence[Mapping[str, Any]], max_completion_length: int | None = None) -> dict[str, float]:
        """One GRPO update on the states of an episode; returns statistics (floats).

        ``rows``: one dict per state with ``message`` (the user message the player saw) and the
        columns the reward function reads (``train_reward``, ``my_prev``, ``opp_prev``, ``opp_move``).
        ``max_completion_length``: tokens sampled per answer in this update (the longer label of the
        episode's labels, which change from update to update with ``labels="pool"``; default: as built).

        Stats: ``score/raw_mean``, ``score/raw_std`` (reward of the sampled answers),
        ``objective/kl`` (TRL's per-token KL to the base model), ``objective/kl_coef`` (β),
        ``objective/entropy``, ``grpo/loss``, ``grpo/reward_std`` (mean within-group std),
        ``grpo/frac_reward_zero_std`` (groups whose answers all scored the same: no signal),
        ``grpo/clip_ratio``, ``batch/rows``, ``batch/completions``, ``time/grpo/total``, ``step``.
        """
        if len(rows) != self.rows_per_update:
            raise ValueError(f"this learner was built for {self.rows_per_update} states per update, got {len(rows)}.")
        t0 = time.perf_counter()
        g = self.settings.num_generations
        batch = []
        for row in rows:  # each state repeated num_generations times, side by side: TRL's group layout
            item = {k: (int(v) if isinstance(v, (np.integer,)) else v) for k, v in row.items() if k != "message"}
            item["prompt"] = [{"role": "user", "content": row["message"]}]
            batch += [dict(item) for _ in range(g)]
        tr = self.trainer
        if max_completion_length is not None:  # as our player: exactly the label's tokens, no tail to garble it
            k = int(max_completion_length)
            tr.max_completion_length = tr.generation_config.max_new_tokens = tr.generation_kwargs["max_new_tokens"] = k
        tr._metrics["train"].clear()
        tr.current_gradient_accumulation_steps = self.accumulation
        tr._step, tr._buffered_inputs = 0, None  # a fresh group every update
        losses = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), _score_answer_tokens_only(), \
                warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
            torch.manual_seed(int(np.random.default_rng([self.settings.seed, self.step_count]).integers(2**62)))
            for _ in range(self.settings.num_iterations):
                for _ in range(self.accumulation):
                    losses.append(float(tr.training_step(self.model, batch, None)))
                if self.settings.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(self.adapter_parameters, self.settings.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        self.step_count += 1
        m = {k: float(np.mean(v)) for k, v in tr._metrics["train"].items() if len(v)}
        tr._metrics["train"].clear()
        return {
            "score/raw_mean": m.get("reward", float("nan")),
            "score/raw_std": m.get("reward_std", float("nan")),
            "objective/kl": m.get("kl", float("nan")),
            "objective/kl_coef": self.settings.beta,
            "objective/entropy": m.get("entropy", float("nan")),
            "grpo/loss": float(np.sum(losses)) / self.settings.num_iterations,
            "grpo/reward_std": m.get("reward_std", float("nan")),
            "grpo/frac_reward_zero_std": m.get("frac_reward_zero_std", float("nan")),
            "grpo/clip_ratio": m.get("clip_ratio/region_mean", float("nan")),
            "batch/rows": float(len(rows)),
            "batch/completions": float(len(batch)),
            "time/grpo/total": time.perf_counter() - t0,
            "step": float(self.step_count),
        }

    # -- checkpoints (the same layout as a PPO learner's: adapter/ + trainer_state.pt) -----------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``adapter/`` (peft's format), ``trainer_state.pt`` and ``grpo_config.json``, atomically."""

        def fill(tmp: Path) -> None:
            self.model.save_pretrained(str(tmp / "_peft"), selected_adapters=[self.adapter_name])
            os.rename(tmp / "_peft", tmp / "adapter")
            torch.save({"format": _CHECKPOINT_FORMAT, "settings": self.settings.to_dict(), "step_count": self.step_count,
                        "optimizer": self.optimizer.state_dict()}, tmp / "trainer_state.pt")
            (tmp / "grpo_config.json").write_text(json.dumps(self.settings.to_dict(), indent=2))

        return write_folder(folder, fill)

    def load_state(self, folder: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save` (adapter, optimiser, update counter)."""
        folder = Path(folder)
        version = next((v for v in folder_versions(folder) if (v / "trainer_state.pt").exists()), None)
        if version is None:
            raise FileNotFoundError(errno.ENOENT, f"no GRPO checkpoint in {folder} (trainer_state.pt missing)", str(folder))
        path = version / "trainer_state.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DamagedFileError(f"{path} is damaged and cannot be loaded ({type(exc).__name__}: {exc}).") from None
        if state.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported GRPO checkpoint format {state.get('format')!r} in {version}")
        self.load_adapter_weights(version / "adapter")
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count = int(state["step_count"])
        self.model.eval()

    def load_adapter_weights(self, adapter_folder: str | os.PathLike) -> None:
        """Load LoRA weights saved in peft's format into this learner's adapter."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(adapter_folder) / "adapter_model.safetensors"
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, f"{path} is missing: no LoRA weights to load.", str(path))
        try:
            weights = load_file(str(path), device=str(self.device))
        except Exception as exc:
            raise DamagedFileError(f"{path} is damaged and cannot be loaded ({exc}).") from None
        result = set_peft_model_state_dict(self.model, weights, adapter_name=self.adapter_name)
        if result.unexpected_keys:
            raise ValueError(f"unexpected adapter weights in {adapter_folder}: {result.unexpected_keys[:5]}")

    def release(self) -> None:
        """Drop TRL's trainer and its scratch folder."""
        self.trainer = None
        shutil.rmtree(self._workdir.name, ignore_errors=True)
