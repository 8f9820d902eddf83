"""Fine-tuning an LLM player with LoRA-PPO on moral rewards (SPEC §5), episode by episode.

An **episode** is ``games_per_update`` independent games played in parallel from random initial
states for ``rounds`` rounds; all its (prompt, answer, reward) rounds feed **one PPO update**.
``games_per_update=1, rounds=5`` is the paper's setting; more games per update is the batched
mode that uses a GPU (or a CPU's vector units) well.

>>> cfg = TrainingConfig(reward="deontological", opponent="tit_for_tat", episodes=60)   # doctest: +SKIP
>>> run = TrainingRun(cfg, "runs/deont").train()                                       # doctest: +SKIP
>>> training_summary(run.log)                                                           # doctest: +SKIP

A run folder holds ``config.json``, ``rounds.csv`` (one row per game round, written as it goes),
``updates.csv`` (one row per PPO update), ``checkpoint/`` (adapter in peft's format + optimiser,
value head, KL and reward statistics, random states, episode counter) and, when finished,
``adapter/`` (the final LoRA adapter, loadable with ``PeftModel.from_pretrained``). A killed
run continues from its last checkpoint with ``TrainingRun(cfg, folder).train()`` (resuming is
the default) and reaches the same result as an uninterrupted run on a CPU.

The reward can change during a run (``schedule``): unlearning trains with one reward, then
another, on the same model, optimiser, KL controller and reward statistics; the reference stays
the base model.

The opponent can be a fixed strategy or ``"learner"``: a second LLM with its own LoRA adapter,
value head and optimiser on the *same* base model (no second copy), reading the prompt with the
roles swapped and trained with the same reward type.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .analysis import training_summary
from .env import ACTION_TYPES, IteratedGame
from .games import get_game
from .opponents import get_opponent
from .rewards import R_ILLEGAL, XI, get_reward
from .workbook import OutputError, atomic_write

__all__ = [
    "TrainingConfig",
    "TrainingRun",
    "LEARNER",
    "RunMismatchError",
]

LEARNER = "learner"
"""Opponent name for a second learning LLM."""


class RunMismatchError(ValueError):
    """The output folder holds a run with different settings."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that defines a training run (saved as ``config.json`` in the run folder).

    ``schedule`` overrides ``reward``/``episodes``: a sequence of ``(reward, episodes)`` pairs
    played one after the other, e.g. ``(("game", 30), ("deontological", 30))``.
    ``ppo_overrides`` change single fields of the PPO preset (see :class:`moralkit.ppo.PPOConfig`).
    """

    reward: str = "game"
    opponent: str = "tit_for_tat"
    game: str = "prisoners_dilemma"
    episodes: int = 60
    games_per_update: int = 8
    rounds: int = 5
    preset: str = "cpu"
    labels: str = "train"
    model: str = "embedded"
    xi: float = XI
    r_illegal: float = R_ILLEGAL
    seed: int = 0
    checkpoint_every: int = 10
    schedule: tuple[tuple[str, int], ...] | None = None
    ppo_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.schedule is not None:
            sched = tuple((str(r), int(n)) for r, n in self.schedule)
            if not sched or any(n < 1 for _, n in sched):
                raise ValueError(f"schedule needs (reward, episodes>=1) pairs, got {self.schedule!r}.")
            object.__setattr__(self, "schedule", sched)
            object.__setattr__(self, "episodes", sum(n for _, n in sched))
            object.__setattr__(self, "reward", sched[0][0])
        for name, _ in self.phases:
            get_reward(name)  # fails early with the valid names
        get_game(self.game)
        if self.opponent != LEARNER:
            get_opponent(self.opponent)
        for k in ("episodes", "games_per_update", "rounds", "checkpoint_every"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be at least 1, got {getattr(self, k)}.")
        from .ppo import PPOConfig

        PPOConfig.preset(self.preset, **self.ppo_overrides)  # unknown preset/field -> clear error

    @property
    def phases(self) -> tuple[tuple[str, int], ...]:
        return self.schedule if self.schedule is not None else ((self.reward, self.episodes),)

    def reward_at(self, episode: int) -> str:
        """The reward in force at a (0-based) episode."""
        end = 0
        for name, n in self.phases:
            end += n
            if episode < end:
                return name
        return self.phases[-1][0]

    @property
    def label(self) -> str:
        """A short name for tables: ``game``, ``game_then_deontological``…"""
        return "_then_".join(name for name, _ in self.phases)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schedule"] = [list(p) for p in self.schedule] if self.schedule else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        d = dict(d)
        if d.get("schedule"):
            d["schedule"] = tuple(tuple(p) for p in d["schedule"])
        return cls(**d)


def _recorded_rewards(cfg: TrainingConfig) -> list[str]:
    names = ["game", "deontological", "utilitarian", "game_deontological"]
    for name, _ in cfg.phases:
        canonical = get_reward(name).name
        if canonical not in names:
            names.append(canonical)
    return names


class TrainingRun:
    """A (resumable) PPO fine-tuning run writing into ``folder``.

    Parameters
    ----------
    config:
        What to train.
    folder:
        The run folder. If it holds a checkpoint of the *same* config, training resumes from it;
        a different config is refused (choose another folder).
    model, tokenizer:
        A base model to fine-tune (default: ``load_model(config.model)``). It gets wrapped in
        LoRA; pass a fresh one per run.
    resume:
        ``False`` refuses to touch a folder that already holds a run.
    """

    def __init__(self, config: TrainingConfig, folder: str | Path, *, model=None, tokenizer=None, resume: bool = True):
        self.config = config
        self.folder = Path(folder).expanduser()
        self._model, self._tokenizer = model, tokenizer
        self.resume = resume
        self.trainers: dict = {}
        self.players: dict = {}
        self.episode = 0
        self._check_folder()

    # ----------------------------------------------------------------- files
    @property
    def checkpoint_dir(self) -> Path:
        return self.folder / "checkpoint"

    @property
    def adapter_dir(self) -> Path:
        """The final adapter (peft format) of the learner; of the second learner: ``adapter_opponent``."""
        return self.folder / "adapter"

    @property
    def finished(self) -> bool:
        return (self.folder / "done.json").exists()

    def _check_folder(self) -> None:
        cfg_path = self.folder / "config.json"
        if cfg_path.exists():
            saved = json.loads(cfg_path.read_text())
            if saved != json.loads(json.dumps(self.config.to_dict())):
                diff = {k: (saved.get(k), v) for k, v in self.config.to_dict().items() if saved.get(k) != v}
                raise RunMismatchError(
                    f"{self.folder} holds a run with other settings {diff} (saved, asked). "
                    "Choose another output folder, or delete that one to start over."
                )
            if not self.resume:
                raise RunMismatchError(f"{self.folder} already holds a run; pass resume=True (--resume) to continue it.")

    def __repr__(self) -> str:
        c = self.config
        state = "finished" if self.finished else f"episode {self.episode}/{c.episodes}"
        return f"TrainingRun({c.label!r} vs {c.opponent!r} on {c.game!r}, preset={c.preset!r}, {state}, folder='{self.folder}')"

    # ----------------------------------------------------------------- set-up
    def setup(self) -> "TrainingRun":
        """Load the model, build the learners and resume from a checkpoint (done once; ``train`` calls it)."""
        if not self.trainers:
            self._setup()
        return self

    def _setup(self) -> None:
        from .llm.agent import LLMPlayer
        from .llm.models import load_model
        from .ppo import PPOConfig, PPOTrainer

        c = self.config
        if self._model is None:
            self._model, self._tokenizer = load_model(c.model)
        elif self._tokenizer is None:
            raise ValueError("Pass the tokenizer together with the model.")
        ppo_cfg = PPOConfig.preset(c.preset, **{"seed": c.seed, **c.ppo_overrides})
        learner = PPOTrainer(self._model, self._tokenizer, ppo_cfg, adapter_name="default")
        self.trainers = {"learner": learner}
        if c.opponent == LEARNER:
            self.trainers["opponent"] = PPOTrainer(learner.model, self._tokenizer, ppo_cfg.replace(seed=c.seed + 1), adapter_name="opponent")
        # each player answers with its own learner's adapter, whatever else is active on the shared model
        self.players = {k: LLMPlayer(t.model, self._tokenizer, c.labels, adapter=t.adapter_name) for k, t in self.trainers.items()}
        self.env = IteratedGame(
            c.game,
            None if c.opponent == LEARNER else c.opponent,
            n_games=c.games_per_update,
            rounds=c.rounds,
            rewards=_recorded_rewards(c),
            xi=c.xi,
            r_illegal=c.r_illegal,
            seed=np.random.default_rng([c.seed, 1]),
        )
        self.sample_rng = np.random.default_rng([c.seed, 2])
        self.episode = 0
        if self.resume and (self.checkpoint_dir / "training_state.json").exists():
            self._load_checkpoint()
        else:
            self._start_folder()

    def _start_folder(self) -> None:
        for name in ("rounds.csv", "updates.csv"):
            (self.folder / name).unlink(missing_ok=True)
        atomic_write(self.folder / "config.json", lambda p: p.write_text(json.dumps(self.config.to_dict(), indent=2)))

    @property
    def model(self):
        return self._model if not self.trainers else self.trainers["learner"].model

    @property
    def tokenizer(self):
        return self._tokenizer

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Write the checkpoint (atomically): trainers, random states and the episode counter."""
        tmp = self.folder / ".checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for key, trainer in self.trainers.items():
                trainer.save(tmp / key)
            state = {
                "episode": self.episode,
                "env_rng": self.env.rng.bit_generator.state,
                "sample_rng": self.sample_rng.bit_generator.state,
                "env_episode": self.env.episode,
                "reward_states": self.env.reward_states(),  # what MaxMin rewards learned (stakeholder weights)
            }
            (tmp / "training_state.json").write_text(json.dumps(state))
            old = self.folder / ".checkpoint.old"
            shutil.rmtree(old, ignore_errors=True)
            if self.checkpoint_dir.exists():
                os.replace(self.checkpoint_dir, old)
            os.replace(tmp, self.checkpoint_dir)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OutputError(
                exc.errno,
                f"Could not write the checkpoint in {self.folder}: {exc.strerror or exc}. Free some space or choose "
                "another folder; the previous checkpoint is intact and the run can resume from it.",
            ) from exc

    def _load_checkpoint(self) -> None:
        ckpt = self.checkpoint_dir
        if not ckpt.exists() and (self.folder / ".checkpoint.old").exists():
            ckpt = self.folder / ".checkpoint.old"
        state = json.loads((ckpt / "training_state.json").read_text())
        for key, trainer in self.trainers.items():
            trainer.load_state(ckpt / key)
        self.env.rng.bit_generator.state = state["env_rng"]
        self.sample_rng.bit_generator.state = state["sample_rng"]
        self.env.episode = state["env_episode"]
        self.env.load_reward_states(state.get("reward_states", {}))
        self.episode = int(state["episode"])
        self._truncate_logs(self.episode)

    def _truncate_logs(self, episode: int) -> None:
        """Drop log rows of episodes after the checkpoint: they will be played again."""
        import pandas as pd

        for name in ("rounds.csv", "updates.csv"):
            path = self.folder / name
            if path.exists():
                frame = pd.read_csv(path)
                frame = frame[frame["episode"] < episode]
                atomic_write(path, lambda p: frame.to_csv(p, index=False))

    # ----------------------------------------------------------------- the loop
    def _append(self, name: str, frame) -> None:
        path = self.folder / name
        try:
            frame.to_csv(path, mode="a", header=not path.exists(), index=False)
        except OSError as exc:
            raise OutputError(
                exc.errno,
                f"Could not append to {path}: {exc.strerror or exc}. Free some space or choose another folder; "
                f"the run resumes from its last checkpoint (episode {self.episode // self.config.checkpoint_every * self.config.checkpoint_every}).",
            ) from exc

    def play_episode(self):
        """Play one episode with the current policies; returns (rounds frame, batches per learner)."""
        c = self.config
        game = self.env.game
        batches = {k: ([], [], []) for k in self.trainers}
        state = self.env.reset()
        reward_name = get_reward(c.reward_at(self.episode)).name
        with contextlib.ExitStack() as weights_fixed:  # the weights change only in the update after the episode
            for player in self.players.values():
                weights_fixed.enter_context(player.reuse_prefix())
            while not self.env.done:
                state = self._play_round(game, state, reward_name, batches)
        rounds = self.env.frame(clear=True)
        rounds.insert(1, "train_reward", reward_name)
        return rounds, batches

    def _play_round(self, game, state, reward_name: str, batches: dict):
        """One round of every game of the episode; appends each learner's rows to ``batches``."""
        d = self.players["learner"].decide(game, state.my_prev, state.opp_prev, self.sample_rng)
        info = {"answer": d.answers}
        opp_moves = None
        if "opponent" in self.trainers:
            od = self.players["opponent"].decide(game.swap_players(), state.opp_prev, state.my_prev, self.sample_rng)
            opp_moves, info["opp_answer"] = od.moves, od.answers
        res = self.env.step(d.moves, opp_moves, info=info)
        batches["learner"][0].extend(d.prompt_ids)
        batches["learner"][1].extend(d.answer_ids)
        batches["learner"][2].extend(res.rewards[reward_name])
        if opp_moves is not None:
            batches["opponent"][0].extend(od.prompt_ids)
            batches["opponent"][1].extend(od.answer_ids)
            batches["opponent"][2].extend(res.opp_rewards[reward_name])
        return res.state

    def train(self, *, progress: bool = True, callback: Callable[["TrainingRun", object], None] | None = None) -> "TrainingRun":
        """Train until ``config.episodes``; ``callback(run, rounds_of_this_episode)`` after each update."""
        import pandas as pd
        from tqdm.auto import tqdm

        if self.finished:
            return self
        self.setup()
        c = self.config
        bar = tqdm(total=c.episodes, initial=self.episode, disable=not progress, desc=f"PPO {c.label} vs {c.opponent}")
        try:
            while self.episode < c.episodes:
                start = time.perf_counter()
                rounds, batches = self.play_episode()
                rounds["episode"] = self.episode
                stats_rows = {}
                for key, trainer in self.trainers.items():
                    prompts, answers, scores = batches[key]
                    stats_rows[key] = trainer.step(prompts, answers, np.asarray(scores, dtype=np.float32))
                update = {"episode": self.episode, "train_reward": rounds["train_reward"].iloc[0],
                          "seconds": time.perf_counter() - start}
                for key, stats in stats_rows.items():
                    prefix = "" if key == "learner" else "opponent/"
                    update.update({prefix + k: v for k, v in stats.items()})
                shares = rounds["action_type"].value_counts(normalize=True)
                update.update({t: float(shares.get(t, 0.0)) for t in ACTION_TYPES})
                self._append("rounds.csv", rounds)
                self._append("updates.csv", pd.DataFrame([update]))
                self.episode += 1
                bar.update(1)
                bar.set_postfix({"C": f"{(rounds['my_move'] == 'C').mean():.2f}", "illegal": f"{shares.get('illegal', 0.0):.2f}",
                                 "kl": f"{update.get('objective/kl', float('nan')):.2f}"})
                if self.episode % c.checkpoint_every == 0 or self.episode == c.episodes:
                    self.save_checkpoint()
                if callback is not None:
                    callback(self, rounds)
        finally:
            bar.close()
        self._finish()
        return self

    def _finish(self) -> None:
        for key, trainer in self.trainers.items():
            target = self.adapter_dir if key == "learner" else self.folder / f"adapter_{key}"
            tmp = self.folder / f".{target.name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(self.checkpoint_dir / key / "adapter", tmp)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        summary = training_summary(self.log)
        atomic_write(self.folder / "done.json", lambda p: p.write_text(json.dumps({"episodes": self.episode, **summary}, indent=2)))

    # ----------------------------------------------------------------- results
    @property
    def log(self):
        """Every training round so far (reads ``rounds.csv``)."""
        import pandas as pd

        path = self.folder / "rounds.csv"
        return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.exists() else pd.DataFrame()

    @property
    def updates(self):
        """One row per PPO update: statistics and the episode's action-type shares."""
        import pandas as pd

        path = self.folder / "updates.csv"
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def release(self) -> None:
        """Drop the model and trainers (frees memory); logs and files stay readable."""
        import gc

        self.trainers, self.players = {}, {}
        self._model = self._tokenizer = None
        gc.collect()

    def player(self, which: str = "learner", labels: str | None = None):
        """An :class:`~moralkit.llm.agent.LLMPlayer` answering with this run's (current) adapter.

        Each player owns its adapter: getting another player never changes how this one answers.
        """
        self.setup()
        return self.players[which] if labels is None else self.players[which].with_labels(labels)
