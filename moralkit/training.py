"""Fine-tuning an LLM player with LoRA-PPO (or TRL's GRPO) on moral rewards (docs/science.md §5), episode by episode.

An **episode** is ``games_per_update`` independent games played in parallel from random initial
states for ``rounds`` rounds; all its (prompt, answer, reward) rounds feed **one PPO update** (with ``algorithm="grpo"``: its
states feed one GRPO update, which samples a group of new answers to each, see :mod:`moralkit.grpo`).
``games_per_update=1, rounds=5`` is the paper's setting; more games per update is the batched
mode that uses a GPU (or a CPU's vector units) well (docs/glossary.md).

One path leads from a profile to a run: :func:`condition_config` turns a profile
(:mod:`moralkit.profiles`) and a condition (reward or schedule, opponent, seed) into a
:class:`TrainingConfig`; every command, grid and notebook builds its runs with it.

>>> cfg = condition_config("game->deontological", "tft", 0, "cpu")
>>> cfg.schedule, cfg.opponent, cfg.preset
((('game', 6), ('deontological', 34)), 'tit_for_tat', 'cpu')
>>> run = TrainingRun(cfg, "runs/unlearn").train()                                     # doctest: +SKIP

A run folder (docs/run-folder.md) holds ``config.json`` (the fully resolved settings, PPO
included), ``rounds.csv`` (one row per game round, written as it goes), ``updates.csv`` (one
row per PPO update), ``checkpoint/`` (adapter in peft's format + optimiser, value head, KL and
reward statistics, random states, episode counter) and, when finished, ``adapter/`` (the final
LoRA adapter, loadable with ``PeftModel.from_pretrained``) and ``done.json``. A killed run
continues from its newest intact checkpoint with ``TrainingRun(cfg, folder).train()``
(resuming is the default) and reaches the same result as an uninterrupted run on a CPU; it
refuses to continue under settings other than those it started with. While a process trains
into a folder, a lock file (``.lock``) keeps a second process out.

The reward can change during a run (``schedule``): unlearning trains with one reward, then
another, on the same model, optimiser, KL controller and reward statistics; the reference stays
the base model.

The opponent can be a fixed strategy or ``"learner"``: a second LLM with its own LoRA adapter,
value head and optimiser on the *same* base model (no second copy), reading the prompt with the
roles swapped and trained with the same reward type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .analysis import training_summary
from .env import ACTION_TYPES, IteratedGame
from .games import get_game
from .opponents import get_opponent
from .profiles import PROFILES, Profile, get_profile
from .rewards import R_ILLEGAL, XI, get_reward
from .storage import (
    DamagedFileError,
    FolderLock,
    ForeignFolderError,
    OutputError,
    atomic_write,
    claim_folder,
    folder_versions,
    read_json,
    read_table,
    write_folder,
    write_json,
)

__all__ = [
    "TrainingConfig",
    "TrainingRun",
    "LEARNER",
    "RunMismatchError",
    "RunDamagedError",
    "parse_reward_spec",
    "condition_config",
    "RUN_FORMAT",
    "ALGORITHMS",
    "read_run_settings",
    "train_side_by_side",
    "side_by_side_key",
]

LEARNER = "learner"
"""Opponent name for a second learning LLM."""

ALGORITHMS = ("ppo", "grpo")
"""The training algorithms: our own LoRA-PPO (:mod:`moralkit.ppo`), TRL's GRPO (:mod:`moralkit.grpo`)."""

RUN_FORMAT = 2
"""Version of the run-folder layout written into ``config.json`` (1: before the PPO settings were recorded)."""

_LABEL_STREAM = 3  # the random stream of a "pool" run's labels: (seed, episode, 3); env and sampling use (seed, 1), (seed, 2)
_DEFAULT = PROFILES["cpu"]  # TrainingConfig's defaults are the cpu profile's sizes


class RunMismatchError(ValueError):
    """The output folder holds a run with other settings (or must not be resumed)."""


class RunDamagedError(ValueError):
    """A run folder cannot be resumed: its checkpoint is missing or damaged."""


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that defines a training run (saved in ``config.json`` in the run folder).

    The defaults are the ``cpu`` profile's sizes; build configs with :func:`condition_config`
    to get another profile's. ``schedule`` overrides ``reward``/``episodes``: a sequence of
    ``(reward, episodes)`` pairs played one after the other, e.g. ``(("game", 30),
    ("deontological", 30))``. ``ppo_overrides`` change single fields of the PPO preset (see
    :class:`moralkit.ppo.PPOConfig`). ``algorithm`` is ``"ppo"`` (our own LoRA-PPO) or ``"grpo"``
    (TRL's GRPOTrainer, :mod:`moralkit.grpo`: same adapter, optimiser and learning rate as the
    preset, against fixed opponents); ``grpo_overrides`` change fields of
    :class:`moralkit.grpo.GRPOSettings`.
    """

    reward: str = "game"
    opponent: str = "tit_for_tat"
    game: str = "prisoners_dilemma"
    episodes: int = _DEFAULT.train_episodes
    games_per_update: int = _DEFAULT.games_per_update
    rounds: int = _DEFAULT.rounds
    preset: str = _DEFAULT.ppo_preset
    labels: str = "train"
    model: str = _DEFAULT.model
    xi: float = XI
    r_illegal: float = R_ILLEGAL
    seed: int = 0
    checkpoint_every: int = _DEFAULT.checkpoint_every
    schedule: tuple[tuple[str, int], ...] | None = None
    ppo_overrides: dict = field(default_factory=dict)
    algorithm: str = "ppo"
    grpo_overrides: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.schedule is not None:
            sched = tuple((str(r), int(n)) for r, n in self.schedule)
            if not sched or any(n < 1 for _, n in sched):
                raise ValueError(f"schedule needs (reward, episodes>=1) pairs, got {self.schedule!r}.")
            object.__setattr__(self, "schedule", sched)
            object.__setattr__(self, "episodes", sum(n for _, n in sched))
            object.__setattr__(self, "reward", sched[0][0])
        for name, _ in self.phases:
            get_reward(name, xi=self.xi, r_illegal=self.r_illegal)  # fails early with the valid names / bad numbers
        get_game(self.game)
        from .llm.prompts import check_training_labels

        object.__setattr__(self, "labels", check_training_labels(self.labels))
        if self.opponent != LEARNER:
            get_opponent(self.opponent)
        for k in ("episodes", "games_per_update", "rounds", "checkpoint_every"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"{k} must be at least 1, got {getattr(self, k)}.")
        if int(self.seed) < 0:
            raise ValueError(f"seed must be 0 or more (a training seed), got {self.seed}.")
        self.ppo_config()  # unknown preset/field -> clear error
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}.")
        if self.algorithm == "grpo":
            if self.opponent == LEARNER:
                raise ValueError("GRPO trains against a fixed opponent; two learning LLMs (opponent='learner') need "
                                 "algorithm='ppo'.")
            self.grpo_config()  # unknown field / bad value -> clear error
        elif self.grpo_overrides:
            raise ValueError(f"grpo_overrides {self.grpo_overrides} only apply with algorithm='grpo'.")

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

    def labels_at(self, episode: int) -> "LabelSet":
        """The labels the players see in a (0-based) episode.

        A label set's name gives the same labels in every episode. ``"pool"`` draws each episode's
        pair from :data:`~moralkit.llm.prompts.LABEL_POOL`, with a random meaning for each label,
        from a random stream of its own (``seed``, ``episode``): a resumed run sees the same labels.

        >>> TrainingConfig().labels_at(3).name
        'train'
        >>> pool = TrainingConfig(labels="pool")
        >>> pool.labels_at(0) == pool.labels_at(0), pool.labels_at(0).name.startswith("pool_")
        (True, True)
        """
        from .llm.prompts import POOL, get_label_set, pool_labels

        if self.labels != POOL:
            return get_label_set(self.labels)
        return pool_labels(np.random.default_rng([self.seed, int(episode), _LABEL_STREAM]))

    @property
    def label(self) -> str:
        """A short name for tables: ``game``, ``game_then_deontological``…; ``utilitarian+pool`` trained
        with other labels than the paper's (``labels="pool"``)."""
        name = "_then_".join(name for name, _ in self.phases)
        return name if self.labels == "train" else f"{name}+{self.labels}"

    def ppo_config(self, learner: str = "learner"):
        """The fully resolved PPO settings of a learner: the preset, this run's seed, the overrides.

        The second learner (``learner="opponent"``) draws its seeds from ``seed + 1``.
        """
        from .ppo import PPOConfig

        seed = self.seed + (1 if learner == "opponent" else 0)
        return PPOConfig.preset(self.preset, **{"seed": seed, **self.ppo_overrides})

    def grpo_config(self):
        """The fully resolved GRPO settings: the PPO preset's adapter, optimiser and seed, then ``grpo_overrides``."""
        from .grpo import GRPOSettings

        return GRPOSettings.from_ppo(self.ppo_config(), **self.grpo_overrides)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schedule"] = [list(p) for p in self.schedule] if self.schedule else None
        return d

    def settings(self) -> dict:
        """What ``config.json`` records: these fields, the resolved PPO settings and the format version."""
        out = {**self.to_dict(), "ppo": self.ppo_config().to_dict(), "format": RUN_FORMAT}
        if self.algorithm == "grpo":
            out["grpo"] = self.grpo_config().to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingConfig":
        """The config of a ``config.json`` (extra keys such as the recorded PPO settings are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if d.get("schedule"):
            d["schedule"] = tuple(tuple(p) for p in d["schedule"])
        return cls(**d)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "TrainingConfig":
        """The config of the run in ``folder``, from its ``config.json`` (see :func:`read_run_settings`).

        Settings this moralkit cannot build a run from (a hand-edited value, a reward or game it does
        not know) raise :class:`moralkit.storage.DamagedFileError` naming the file and the problem.
        """
        settings = read_run_settings(folder)
        try:
            return cls.from_dict(settings)
        except (TypeError, ValueError) as exc:
            raise DamagedFileError(
                f"{Path(folder) / 'config.json'} holds settings this moralkit cannot train or read a run from: {exc}"
            ) from None


_RUN_KEYS = ("reward", "opponent", "episodes")  # in every run's config.json since the first format


def read_run_settings(folder: str | Path, *, fix: str = "Its settings are lost; train the run again in a new folder."
                      ) -> dict:
    """What a run folder's ``config.json`` records, after checking that it is a moralkit run's.

    Refuses (nothing is changed) a file that cannot be read (:class:`~moralkit.storage.DamagedFileError`,
    with ``fix`` as the advice), a ``config.json`` of something else, such as a model folder
    (:class:`~moralkit.storage.ForeignFolderError`), and a run folder written by a newer moralkit whose
    layout this one does not know (:class:`RunMismatchError`).
    """
    folder = Path(folder)
    path = folder / "config.json"
    saved = read_json(path, fix=fix)
    if not isinstance(saved, dict) or not all(k in saved for k in _RUN_KEYS):
        keys = ", ".join(list(saved)[:6]) if isinstance(saved, dict) else type(saved).__name__
        raise ForeignFolderError(
            f"{folder} is not a moralkit training run: its config.json lacks the keys reward, opponent and episodes (it holds "
            f"{keys or 'nothing'}; a model folder, or another program's?). Give the folder of a run trained by "
            "moralkit, or choose a new folder for a new run (--out, or output_dir in a notebook)."
        )
    version = saved.get("format", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DamagedFileError(f"{path} is damaged: its run-folder format is {version!r}, not a version number. {fix}")
    if version > RUN_FORMAT:
        raise RunMismatchError(
            f"{folder} was written by a newer moralkit (run-folder format {version}; this one reads formats 1 to "
            f"{RUN_FORMAT}). Upgrade moralkit (pip install -U moralkit) to read or resume it. Nothing was changed."
        )
    return saved


# --------------------------------------------------------------------- from a profile to a config
def _outside_parentheses(spec: str) -> str:
    """``spec`` without what stands inside parentheses (an aggregate's stakeholder list)."""
    out, depth = [], 0
    for ch in spec:
        depth += ch == "("
        if depth == 0:
            out.append(ch)
        depth -= ch == ")" and depth > 0
    return "".join(out)


def _split_outside_parentheses(spec: str) -> list[str]:
    """Split at commas that are not inside parentheses: ``"maxmin(a,b):5,game:5"`` → two parts."""
    parts, depth, current = [], 0, ""
    for ch in spec:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def parse_reward_spec(spec: str, episodes: int, switch_at: float = 0.5) -> tuple[tuple[str, int], ...] | None:
    """``"game"`` → None (a single reward); ``"game->deontological"`` → the first reward for the
    share ``switch_at`` of the episodes (0.5: equal halves), the second for the rest (three or more
    rewards: equal parts); ``"game:30,deontological:30"`` → explicit lengths.

    >>> parse_reward_spec("game->deontological", 40)
    (('game', 20), ('deontological', 20))
    >>> parse_reward_spec("game->deontological", 40, switch_at=0.2)
    (('game', 8), ('deontological', 32))
    >>> parse_reward_spec("maxmin(game,deontological)", 40) is None     # an aggregate is one reward
    True
    """
    spec = spec.strip()
    if "->" in spec:
        names = [s.strip() for s in spec.split("->")]
        if not all(names):
            raise ValueError(f"Schedule {spec!r} has an empty part: write rewards on both sides of each '->', "
                             "e.g. 'game->deontological'.")
        if episodes < len(names):
            raise ValueError(f"Schedule {spec!r} splits the run's episodes between {len(names)} rewards: it needs at "
                             f"least {len(names)} episodes, got {episodes}.")
        if not 0 < switch_at < 1:
            raise ValueError(f"switch_at is a share of the run strictly between 0 and 1, got {switch_at}.")
        if len(names) == 2 and episodes >= 2:
            first = min(max(round(episodes * switch_at), 1), episodes - 1)
            return ((names[0], first), (names[1], episodes - first))
        base, extra = divmod(episodes, len(names))
        return tuple((n, base + (1 if i < extra else 0)) for i, n in enumerate(names))
    if ":" in spec or "," in _outside_parentheses(spec):
        out = []
        for part in _split_outside_parentheses(spec):
            name, _, n = part.partition(":")
            if not n.strip():
                raise ValueError(f"Schedule part {part!r} needs a length, e.g. 'game:30,deontological:30'.")
            try:
                length = int(n)
            except ValueError:
                raise ValueError(
                    f"Schedule part {part!r}: the length after ':' must be a whole number of episodes, got {n.strip()!r} "
                    "(e.g. 'game:30,deontological:30')."
                ) from None
            out.append((name.strip(), length))
        return tuple(out)
    return None


def condition_config(reward: str, opponent: str = "tit_for_tat", seed: int = 0,
                     profile: str | Profile | None = "auto", **overrides) -> TrainingConfig:
    """The training config of one condition under a profile: the one path from sizes to a run.

    ``reward`` is a reward name, an aggregate, or a schedule (``"A->B"``, ``"A:30,B:30"``). The
    profile gives episodes, games per update, rounds (at most ``learner_rounds`` against a
    second learner), PPO preset, model and checkpoint interval; ``overrides`` win (any
    :class:`TrainingConfig` field, or ``switch_at``). An ``"A->B"`` schedule switches after the
    profile's share ``switch_at`` of the episodes (the ``cpu`` profile: 15%, see
    :mod:`moralkit.profiles`). Reward and opponent aliases are resolved to their canonical names,
    so ``"de"`` against ``"tft"`` is the run of ``"deontological"`` against ``"tit_for_tat"``; an
    unknown name raises with the valid ones.
    """
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    asked = overrides.pop("episodes", None)
    episodes = prof.train_episodes if asked is None else asked
    schedule = parse_reward_spec(reward, episodes, overrides.pop("switch_at", prof.switch_at))
    if asked is not None and schedule is not None and "->" not in reward and sum(n for _, n in schedule) != asked:
        raise ValueError(
            f"The schedule {reward!r} sets its own length ({sum(n for _, n in schedule)} episodes), but {asked} episodes "
            "were asked for too (--episodes, or episodes=): leave one of them out, or make them agree."
        )
    # canonical names: "de" and "deontological", "tft" and "tit_for_tat" are one condition, one run folder
    if schedule is not None:
        schedule = tuple((get_reward(name).name, n) for name, n in schedule)
    base = dict(
        reward=get_reward(reward).name if schedule is None else schedule[0][0],
        schedule=schedule,
        opponent=opponent if opponent == LEARNER else get_opponent(opponent).name,
        episodes=episodes,
        games_per_update=prof.games_per_update,
        rounds=prof.rounds if opponent != LEARNER else min(prof.rounds, prof.learner_rounds),
        preset=prof.ppo_preset,
        model=prof.model,
        seed=seed,
        checkpoint_every=prof.checkpoint_every,
    )
    base.update(overrides)
    return TrainingConfig(**base)


def _recorded_rewards(cfg: TrainingConfig) -> list[str]:
    names = ["game", "deontological", "utilitarian", "game_deontological"]
    for name, _ in cfg.phases:
        canonical = get_reward(name).name
        if canonical not in names:
            names.append(canonical)
    return names


def _differences(saved: dict, now: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(field, saved value, value now)`` for every field that differs (JSON values compared)."""
    now = json.loads(json.dumps(now))
    keys = list(now) + [k for k in saved if k not in now]
    return [(prefix + k, saved.get(k, "(not recorded)"), now.get(k, "(not set)")) for k in keys if saved.get(k) != now.get(k)]


def _diff_text(diffs) -> str:
    return "\n".join(f"  {name}: {old!r} in the run folder, {new!r} now" for name, old, new in diffs)


def _without_speed_fields(settings: dict) -> dict:
    """``settings`` without the PPO overrides that change only speed (``ppo.SPEED_FIELDS``): a run may resume under others."""
    from .ppo import SPEED_FIELDS

    overrides = settings.get("ppo_overrides") or {}
    return {**settings, "ppo_overrides": {k: v for k, v in overrides.items() if k not in SPEED_FIELDS}}


class TrainingRun:
    """A (resumable) PPO fine-tuning run writing into ``folder``.

    Parameters
    ----------
    config:
        What to train.
    folder:
        The run folder: new, empty, or one that holds a run of the *same* config (training then
        resumes from its newest intact checkpoint). A folder with another config, or with files
        that are not a run's, is refused; so is resuming under other PPO settings than the run
        started with (e.g. after a preset was edited).
    model, tokenizer:
        A base model to fine-tune (default: ``load_model(config.model)``). It gets wrapped in
        LoRA; pass a fresh one per run, or another run's peft model together with an
        ``adapter_name`` of this run's own to share its base (:func:`train_side_by_side` does).
    resume:
        ``False`` refuses to touch a folder that already holds a run.
    adapter_name:
        The name of the learner's LoRA adapter on the model (saved files do not depend on it).
    """

    def __init__(self, config: TrainingConfig, folder: str | Path, *, model=None, tokenizer=None, resume: bool = True,
                 adapter_name: str = "default"):
        self.config = config
        self.folder = Path(folder).expanduser()
        self._model, self._tokenizer = model, tokenizer
        self.adapter_name = adapter_name
        self.resume = resume
        self.trainers: dict = {}
        self.players: dict = {}
        self.episode = 0
        self._lock = FolderLock(self.folder, purpose="training")
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

    @property
    def status(self) -> str:
        """``"finished"``, ``"resumable"`` (a checkpoint to continue from) or ``"new"`` (nothing trained yet).

        What calling :meth:`train` would do: nothing, continue from the newest checkpoint, or start.
        Reads only the folder; a damaged checkpoint counts as ``"resumable"`` (``train`` then says what
        is wrong).
        """
        if self.finished:
            return "finished"
        if any((version / "training_state.json").exists() for version in folder_versions(self.checkpoint_dir)):
            return "resumable"
        return "new"

    def _start_over_hint(self) -> str:
        return (f"To train this condition from the start, delete {self.folder} (or move it away) and run the same "
                "command again; to keep this run, use another folder for the new one (--out, or output_dir in a notebook).")

    def _saved_settings(self) -> dict | None:
        if not (self.folder / "config.json").exists():
            return None
        return read_run_settings(self.folder, fix=f"The run's settings are lost. {self._start_over_hint()}")

    def _check_folder(self) -> None:
        """Refuse a foreign folder, a run with other settings, or resuming when ``resume`` is False."""
        claim_folder(self.folder, marker="config.json", kind="training run folder (no config.json)",
                     fix="Choose a new or empty folder for the run (--out, or output_dir in a notebook).")
        saved = self._saved_settings()
        if saved is None:
            return
        fields = {f.name: f for f in dataclasses.fields(TrainingConfig)}
        defaults = {k: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                    for k, f in fields.items()}
        recorded = {k: saved.get(k, defaults[k]) for k in fields}
        diffs = _differences(_without_speed_fields(recorded), _without_speed_fields(self.config.to_dict()))
        if diffs:
            raise RunMismatchError(
                f"{self.folder} holds a run with other settings:\n{_diff_text(diffs)}\n"
                f"Ask for the same settings to continue that run, or choose another output folder. {self._start_over_hint()}"
            )
        if not self.resume:
            raise RunMismatchError(
                f"{self.folder} already holds a run and resuming was switched off (resume=False, --no-resume). "
                "Leave out --no-resume (resume=True, the default) to continue it, or choose another output folder."
            )
        if not self.finished:
            self._check_ppo_settings(saved)

    def _recorded_ppo(self, saved: dict) -> dict | None:
        """The PPO settings the run started with: from config.json, or (older folders) the checkpoint's copy."""
        if isinstance(saved.get("ppo"), dict):
            return saved["ppo"]
        for version in folder_versions(self.checkpoint_dir):
            path = version / "learner" / "ppo_config.json"
            if path.exists():
                return read_json(path, fix=f"The run's PPO settings are unknown. {self._start_over_hint()}")
        return None

    def ppo_changes(self) -> list[tuple[str, object, object]] | None:
        """``(field, value in the run folder, value now)`` for each resolved PPO setting that differs.

        None when the folder records no PPO settings (no run yet, or an older folder without a
        checkpoint copy). A finished run stays usable whatever this says; an unfinished one
        refuses to resume unless it is empty.
        """
        from .ppo import REMOVED_FIELDS, SPEED_FIELDS

        saved = self._saved_settings()
        recorded = self._recorded_ppo(saved) if saved is not None else None
        if recorded is None:
            return None
        recorded = {k: v for k, v in recorded.items() if k not in REMOVED_FIELDS | SPEED_FIELDS}
        now = {k: v for k, v in self.config.ppo_config().to_dict().items() if k not in SPEED_FIELDS}
        return _differences(recorded, now, prefix="ppo.")

    def _check_ppo_settings(self, saved: dict) -> None:
        """Refuse to resume under other PPO settings than the run started with (an edited preset)."""
        diffs = self.ppo_changes()
        if diffs is None:
            if folder_versions(self.checkpoint_dir):
                raise RunMismatchError(
                    f"{self.folder} was started by an older moralkit that did not record its PPO settings, so it "
                    f"cannot be resumed safely. Its logs stay readable. {self._start_over_hint()}"
                )
            return  # nothing trained yet that could disagree: the run starts afresh
        if not diffs and self.config.algorithm == "grpo" and isinstance(saved.get("grpo"), dict):
            diffs = _differences(saved["grpo"], self.config.grpo_config().to_dict(), prefix="grpo.")
        if diffs:
            raise RunMismatchError(
                f"{self.folder} holds an unfinished run that started with other PPO settings:\n{_diff_text(diffs)}\n"
                f"A run must finish with the settings it started with (preset {self.config.preset!r} has changed since, "
                "or other ppo_overrides were given). Restore those settings to continue it (e.g. undo the edit of the "
                f"preset, or pass the old values as ppo_overrides), or train with the new ones in another folder. "
                f"{self._start_over_hint()}"
            )

    def __repr__(self) -> str:
        c = self.config
        state = "finished" if self.finished else f"episode {self.episode}/{c.episodes}"
        return f"TrainingRun({c.label!r} vs {c.opponent!r} on {c.game!r}, preset={c.preset!r}, {state}, folder='{self.folder}')"

    # ----------------------------------------------------------------- set-up
    def setup(self) -> "TrainingRun":
        """Load the model, build the learners, and restore the run's state (done once; ``train`` calls it).

        An unfinished run is locked for this process and resumes from its newest intact
        checkpoint (or starts afresh if it has none yet); a finished run loads its final state.
        """
        if not self.trainers:
            if not self.finished:
                self._lock.acquire()
            try:
                self._setup()
            except BaseException:
                self.trainers, self.players = {}, {}
                self._lock.release()
                raise
        return self

    def _setup(self) -> None:
        from .llm.agent import LLMPlayer
        from .llm.models import load_model
        from .ppo import PPOTrainer

        c = self.config
        if c.algorithm == "grpo":
            from .grpo import require_trl

            require_trl()  # before the model is loaded: say at once how to install TRL
        if not self.finished:
            point = self._resume_point()  # before the model is loaded: a damaged folder fails fast
        if self._model is None:
            self._model, self._tokenizer = load_model(c.model)
        elif self._tokenizer is None:
            raise ValueError("Pass the tokenizer together with the model.")
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
        if c.algorithm == "grpo":
            learner = self._grpo_learner()
        else:
            learner = PPOTrainer(self._model, self._tokenizer, c.ppo_config(), adapter_name=self.adapter_name)
        self.trainers = {"learner": learner}
        if c.opponent == LEARNER:
            self.trainers["opponent"] = PPOTrainer(learner.model, self._tokenizer, c.ppo_config("opponent"),
                                                   adapter_name="opponent")
        # each player answers with its own learner's adapter, whatever else is active on the shared model
        # (when the PPO updates replay CUDA graphs -- compile="graphs", or "auto" on a recent GPU -- they
        # sample through CUDA graphs too)
        graphs = c.algorithm == "ppo" and learner.graphs
        # (and through a merged copy of the weights where merged_sampling says so; not in runs side by side,
        # whose players sample through the stacked adapters: train_side_by_side turns it off)
        self.players = {k: LLMPlayer(t.model, self._tokenizer, c.labels_at(0), adapter=t.adapter_name, graphs=graphs,
                                     merged=c.algorithm == "ppo" and t.merged_sampling)
                        for k, t in self.trainers.items()}
        self.sample_rng = np.random.default_rng([c.seed, 2])
        self.episode = 0
        if self.finished:
            self._load_final()
        elif point is not None:
            self._load_checkpoint(*point)
        else:
            self._start_folder()

    def _grpo_learner(self):
        """TRL's GRPO on this run's model, with the moral reward of the run's environment (its reward objects)."""
        from .grpo import GRPOLearner, moral_reward_function
        from .llm.prompts import POOL

        c = self.config
        labels = None if c.labels == POOL else c.labels_at(0)  # pool: each row's labels travel with it
        return GRPOLearner(self._model, self._tokenizer, c.grpo_config(), rows_per_update=c.games_per_update * c.rounds,
                           reward_fn=moral_reward_function(self.env.game, self.env.rewards, labels),
                           max_completion_length=self._answer_tokens(0))

    def _answer_tokens(self, episode: int) -> int:
        """Tokens per answer in an episode: as many as the longer of its labels needs."""
        from .llm.agent import label_token_ids

        return max(len(ids) for ids in label_token_ids(self._tokenizer, self.config.labels_at(episode)))

    def _logged_episodes(self) -> int:
        """How many episodes ``rounds.csv`` holds (0 without a log)."""
        import pandas as pd

        path = self.folder / "rounds.csv"
        if not path.exists():
            return 0
        episodes = pd.to_numeric(_complete_rows(path).get("episode", pd.Series(dtype=str)), errors="coerce").dropna()
        return 0 if len(episodes) == 0 else int(episodes.max()) + 1

    def _intact(self, version: Path) -> tuple[dict | None, str]:
        """(training state, "") if ``version`` is a complete checkpoint, else (None, what is wrong)."""
        path = version / "training_state.json"
        try:
            state = read_json(path)
        except FileNotFoundError:
            return None, f"{path} is missing"
        except DamagedFileError as exc:
            return None, str(exc)
        needed = ("episode", "env_rng", "sample_rng", "env_episode")
        if not isinstance(state, dict) or any(k not in state for k in needed):
            return None, f"{path} is damaged (it lacks {', '.join(k for k in needed if k not in (state or {}))})"
        for key in self.trainers_expected:
            for name in ("trainer_state.pt", "adapter/adapter_model.safetensors"):
                if not (version / key / name).is_file():
                    return None, f"{version / key / name} is missing"
        return state, ""

    @property
    def trainers_expected(self) -> tuple[str, ...]:
        return ("learner", "opponent") if self.config.opponent == LEARNER else ("learner",)

    def _resume_point(self) -> tuple[Path, dict] | None:
        """The newest intact checkpoint (``checkpoint/``, else ``.checkpoint.old``) and its state.

        None when the run has no checkpoint yet and nothing logged that a checkpoint should cover
        (it then starts afresh). A run whose checkpoint is missing or damaged while its logs say it
        trained further raises :class:`RunDamagedError` and touches nothing.
        """
        if not self.resume:
            return None
        problems = []
        for version in folder_versions(self.checkpoint_dir):
            state, problem = self._intact(version)
            if state is not None:
                if version != self.checkpoint_dir:
                    warnings.warn(f"{self.checkpoint_dir} is incomplete ({'; '.join(problems) or 'missing'}); resuming "
                                  f"from the previous checkpoint {version} (episode {state['episode']}).", stacklevel=3)
                return version, state
            problems.append(problem)
        logged = self._logged_episodes()
        if not problems and logged < self.config.checkpoint_every:
            return None  # killed before its first checkpoint: those episodes are played again, identically
        why = "; ".join(p.rstrip(". ") for p in problems) or f"there is no checkpoint in {self.checkpoint_dir}"
        raise RunDamagedError(
            f"{self.folder} cannot resume: {why}. Yet rounds.csv holds {logged} episode(s), so starting afresh would "
            f"lose them. Nothing was changed: the logs (rounds.csv, updates.csv) stay as they are. {self._start_over_hint()}"
        )

    def _start_folder(self) -> None:
        for name in ("rounds.csv", "updates.csv"):
            (self.folder / name).unlink(missing_ok=True)
        write_json(self.folder / "config.json", self.config.settings())

    @property
    def model(self):
        return self._model if not self.trainers else self.trainers["learner"].model

    @property
    def tokenizer(self):
        return self._tokenizer

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        """Write the checkpoint (atomically): trainers, random states and the episode counter."""

        def fill(tmp: Path) -> None:
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

        try:
            write_folder(self.checkpoint_dir, fill)
        except RuntimeError as exc:
            if not _write_failed(exc):
                raise
            raise OutputError(
                None,
                f"Could not write the checkpoint in {self.folder} (torch could not write its file: is the disk full?). "
                "Free some space or choose another folder; the previous checkpoint is intact and the run can resume "
                "from it.",
            ) from exc
        except OSError as exc:
            raise OutputError(
                exc.errno,
                f"Could not write the checkpoint in {self.folder}: {exc.strerror or exc}. Free some space or choose "
                "another folder; the previous checkpoint is intact and the run can resume from it.",
            ) from exc

    def _load_checkpoint(self, version: Path, state: dict) -> None:
        try:
            for key, trainer in self.trainers.items():
                trainer.load_state(version / key)
        except (DamagedFileError, FileNotFoundError) as exc:
            raise RunDamagedError(
                f"{exc} The run in {self.folder} cannot resume from its checkpoint (episode {state['episode']}). "
                f"Nothing was changed. {self._start_over_hint()}"
            ) from None
        self.env.rng.bit_generator.state = state["env_rng"]
        self.sample_rng.bit_generator.state = state["sample_rng"]
        self.env.episode = state["env_episode"]
        self.env.load_reward_states(state.get("reward_states", {}))
        self.episode = int(state["episode"])
        self._truncate_logs(self.episode)
        saved = self._saved_settings() or {}
        if saved.get("format") != RUN_FORMAT:  # a folder of an older moralkit: record the resolved settings now
            write_json(self.folder / "config.json", self.config.settings())

    def _load_final(self) -> None:
        """A finished run: its last checkpoint (full state) if intact, else the final adapters."""
        for version in folder_versions(self.checkpoint_dir):
            state, _ = self._intact(version)
            if state is not None:
                for key, trainer in self.trainers.items():
                    trainer.load_state(version / key)
                self.episode = int(state["episode"])
                return
        for key, trainer in self.trainers.items():
            trainer.load_adapter_weights(self.adapter_dir if key == "learner" else self.folder / f"adapter_{key}")
        self.episode = self.config.episodes

    def _truncate_logs(self, episode: int) -> None:
        """Drop log rows of episodes after the checkpoint: they will be played again.

        The logs are read and written back as text, so every other field stays exactly as it was.
        """
        logs = {path: _complete_rows(path) for path in (self.folder / "rounds.csv", self.folder / "updates.csv")
                if path.exists()}
        for path, frame in logs.items():  # both checked before either is touched
            if not frame.columns.empty and "episode" not in frame.columns:
                raise RunDamagedError(_foreign_log(path, frame.columns))
        for path, frame in logs.items():
            if frame.columns.empty:  # empty: written by a process killed at once
                path.unlink()
                continue
            kept = frame[frame["episode"].astype(int) < episode]
            atomic_write(path, lambda p, kept=kept: kept.to_csv(p, index=False))


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
        episode = self._start_episode()
        with contextlib.ExitStack() as weights_fixed:  # the weights change only in the update after the episode
            for player in episode["players"].values():
                weights_fixed.enter_context(player.reuse_prefix())
            while not self.env.done:
                self._play_round(episode)
        return self._end_episode(episode)

    def _start_episode(self) -> dict:
        """A new episode's game, state, reward, players and empty batches (prompt ids, answer ids, rewards, states)."""
        return {"game": self.env.game, "state": self.env.reset(), "players": self._episode_players(),
                "reward": get_reward(self.config.reward_at(self.episode)).name,
                "batches": {k: ([], [], [], []) for k in self.trainers}}

    def _end_episode(self, episode: dict):
        """The episode's rounds (as logged) and batches."""
        from .llm.prompts import POOL

        rounds = self.env.frame(clear=True)
        rounds.insert(1, "train_reward", episode["reward"])
        if self.config.labels == POOL:  # which labels meant C and D in this episode
            rounds.insert(2, "labels", episode["players"]["learner"].labels.name)
        return rounds, episode["batches"]

    def _learner_request(self, episode: dict) -> tuple:
        """What the learner's player decides on this round: ``(game, my_prev, opp_prev, rng)``."""
        state = episode["state"]
        return episode["game"], state.my_prev, state.opp_prev, self.sample_rng

    def _episode_players(self) -> dict:
        """This episode's players: the run's own, or with a ``"pool"`` run's labels of the episode."""
        from .llm.prompts import POOL

        if self.config.labels != POOL:
            return self.players
        labels = self.config.labels_at(self.episode)
        return {key: player.with_labels(labels) for key, player in self.players.items()}

    def _play_round(self, episode: dict, decision=None) -> None:
        """One round of every game of the episode; appends each learner's rows to its batch.

        ``decision``: the learner's answers, when they were sampled already (side by side with
        other runs' learners); else its player decides now.
        """
        game, state, reward_name = episode["game"], episode["state"], episode["reward"]
        batches, players = episode["batches"], episode["players"]
        d = decision if decision is not None else players["learner"].decide(*self._learner_request(episode))
        labels = players["learner"].labels
        info = {"answer": d.answers}
        opp_moves = None
        if "opponent" in self.trainers:
            od = players["opponent"].decide(game.swap_players(), state.opp_prev, state.my_prev, self.sample_rng)
            opp_moves, info["opp_answer"] = od.moves, od.answers
        res = self.env.step(d.moves, opp_moves, info=info)
        batches["learner"][0].extend(d.prompt_ids)
        batches["learner"][1].extend(d.answer_ids)
        batches["learner"][2].extend(res.rewards[reward_name])
        batches["learner"][3].extend(  # what GRPO needs to score other answers to the same prompt
            {"message": m, "train_reward": reward_name, "my_prev": int(mp), "opp_prev": int(op), "opp_move": int(om),
             "c_label": labels.c, "d_label": labels.d}
            for m, mp, op, om in zip(d.messages, state.my_prev, state.opp_prev, res.opp_moves))
        if opp_moves is not None:
            batches["opponent"][3].extend({} for _ in od.prompt_ids)
            batches["opponent"][0].extend(od.prompt_ids)
            batches["opponent"][1].extend(od.answer_ids)
            batches["opponent"][2].extend(res.opp_rewards[reward_name])
        episode["state"] = res.state

    def train(self, *, progress: bool = True, callback: Callable[["TrainingRun", object], None] | None = None) -> "TrainingRun":
        """Train until ``config.episodes``; ``callback(run, rounds_of_this_episode)`` after each update."""
        from tqdm.auto import tqdm

        from .ppo import tf32_products

        if self.finished:
            return self
        self.setup()
        self._lock.acquire()  # again, if an earlier train() of this run released it
        c = self.config
        bar = tqdm(total=c.episodes, initial=self.episode, disable=not progress, desc=f"{c.algorithm.upper()} {c.label} vs {c.opponent}")
        try:
            # float32 products in TF32 where the run's PPO config asks for it (PPOConfig.tf32:
            # "auto" = on a GPU of the Ampere generation or newer), for sampling and updates alike
            with tf32_products(c.algorithm == "ppo" and self.trainers["learner"].tf32):
                while self.episode < c.episodes:
                    start = time.perf_counter()
                    rounds, batches = self.play_episode()
                    stats_rows = {}
                    for key, trainer in self.trainers.items():
                        prompts, answers, scores, states = batches[key]
                        if c.algorithm == "grpo":  # new groups of answers to the states just played
                            stats_rows[key] = trainer.update(states, self._answer_tokens(self.episode))
                        else:
                            stats_rows[key] = trainer.step(prompts, answers, np.asarray(scores, dtype=np.float32))
                    postfix = self._record(rounds, stats_rows, time.perf_counter() - start)
                    bar.update(1)
                    bar.set_postfix(postfix)
                    if callback is not None:
                        callback(self, rounds)
            self._finish()
        finally:
            bar.close()
            self._lock.release()
        return self

    def _record(self, rounds, stats_rows: dict, seconds: float) -> dict:
        """Log an episode's rounds and update, count it, checkpoint when due; the progress bar's figures."""
        import pandas as pd

        c = self.config
        rounds["episode"] = self.episode
        update = {"episode": self.episode, "train_reward": rounds["train_reward"].iloc[0], "seconds": seconds}
        for key, stats in stats_rows.items():
            prefix = "" if key == "learner" else "opponent/"
            update.update({prefix + k: v for k, v in stats.items()})
        shares = rounds["action_type"].value_counts(normalize=True)
        update.update({t: float(shares.get(t, 0.0)) for t in ACTION_TYPES})
        self._append("rounds.csv", rounds)
        self._append("updates.csv", pd.DataFrame([update]))
        self.episode += 1
        if self.episode % c.checkpoint_every == 0 or self.episode == c.episodes:
            self.save_checkpoint()
        return {"C": f"{(rounds['my_move'] == 'C').mean():.2f}", "illegal": f"{shares.get('illegal', 0.0):.2f}",
                "kl": f"{update.get('objective/kl', float('nan')):.2f}"}

    def _finish(self) -> None:
        from .llm.adapters import drop_merged

        for trainer in self.trainers.values():  # sampling is over: free the players' merged copies
            drop_merged(trainer.model)
        for key in self.trainers:
            target = self.adapter_dir if key == "learner" else self.folder / f"adapter_{key}"
            source = self.checkpoint_dir / key / "adapter"
            write_folder(target, lambda tmp, source=source: shutil.copytree(source, tmp, dirs_exist_ok=True))
        summary = training_summary(self.log)
        write_json(self.folder / "done.json", {"episodes": self.episode, **summary})

    # ----------------------------------------------------------------- results
    @property
    def log(self):
        """Every training round so far (reads ``rounds.csv``; empty before the first update)."""
        return self._read_log("rounds.csv")

    @property
    def updates(self):
        """One row per PPO update: statistics and the episode's action-type shares."""
        return self._read_log("updates.csv")

    def _read_log(self, name: str):
        import pandas as pd

        path = self.folder / name
        frame = read_table(path) if path.exists() else pd.DataFrame()
        if not frame.columns.empty and "episode" not in frame.columns:
            raise RunDamagedError(_foreign_log(path, frame.columns))
        return frame

    def problems(self, *, adapters: bool = True) -> list[str]:
        """What a finished run's folder lacks (empty: nothing): its training log, its final adapters.

        Finished means ``done.json`` is there; this checks what the results are read from: in
        ``rounds.csv``, every episode of the run, and (``adapters``) every learner's ``adapter``
        folder, which evaluation loads (tables of the training need only the log).
        """
        if not self.finished:
            return []
        c = self.config
        found = []
        if adapters:
            folders = [self.adapter_dir] + ([self.folder / "adapter_opponent"] if c.opponent == LEARNER else [])
            found += [f"its adapter {a} is missing" for a in folders if not (a / "adapter_config.json").exists()]
        log = self.log
        if log.empty:
            found.append(f"its training log {self.folder / 'rounds.csv'} is missing or empty")
        else:
            missing = sorted(set(range(c.episodes)) - set(log["episode"].astype(int)))
            if missing:
                found.append(f"its training log {self.folder / 'rounds.csv'} lacks {len(missing)} of its {c.episodes} "
                             f"episodes (from episode {missing[0]})")
        return found

    def check_intact(self, *, adapters: bool = True) -> None:
        """Raise :class:`RunDamagedError` naming what a finished run lacks (:meth:`problems`), and the fix."""
        found = self.problems(adapters=adapters)
        if found:
            raise RunDamagedError(f"{self.folder} holds a finished run that cannot be read: {'; '.join(found)}. Train "
                                  "it again in another folder (--out, or output_dir in a notebook), or restore the "
                                  "missing files.")

    def release(self) -> None:
        """Drop the model and trainers (frees memory); logs and files stay readable."""
        import gc

        self.trainers, self.players = {}, {}
        self._model = self._tokenizer = None
        self._lock.release()
        gc.collect()

    def memory_report(self):
        """What this run keeps in memory: the shared base model, and per learner its adapter and value head.

        A table of ``parameters`` and ``MiB`` (:func:`moralkit.llm.models.parameter_size`); sets the
        model up (loads it) if needed. Against a fixed opponent there is one learner; with two
        learners (``opponent="learner"``) both adapters sit on the one base model.
        """
        from .llm.adapters import base_parameters, parameter_table

        self.setup()
        rows = {"base model (frozen, shared)": base_parameters(self.model)}
        for key, trainer in self.trainers.items():
            rows[f"LoRA adapter {trainer.adapter_name!r} ({key})"] = trainer.adapter_parameters
            if getattr(trainer, "value_head", None) is not None:  # PPO's critic; GRPO has none
                rows[f"value head ({key})"] = trainer.value_head.parameters()
        return parameter_table(rows)

    def parameter_counts(self, which: str = "learner") -> tuple[int, int]:
        """``(trained, frozen)``: the parameters training changes for ``which`` (adapter, and PPO's value head) and the base model's."""
        from .llm.adapters import base_parameters
        from .llm.models import parameter_size

        self.setup()
        trained, _ = parameter_size(self.trainers[which].trainable_parameters)
        frozen, _ = parameter_size(base_parameters(self.model))
        return trained, frozen

    def player(self, which: str = "learner", labels: str | None = None):
        """An :class:`~moralkit.llm.agent.LLMPlayer` answering with this run's (current) adapter.

        Each player owns its adapter: getting another player never changes how this one answers.
        """
        self.setup()
        return self.players[which] if labels is None else self.players[which].with_labels(labels)


def side_by_side_key(config: TrainingConfig) -> tuple | None:
    """What runs trained side by side must share (their passes have one shape); None: this run cannot be.

    The model, the batch's size (games per update x rounds), the checkpoint interval (the group
    checkpoints together) and the PPO settings that shape the passes; rewards, opponents, seeds,
    labels, episodes and the other PPO numbers may differ. Only
    our PPO against fixed opponents (not GRPO, not two learners).
    """
    from .ppo import _SIDE_BY_SIDE_FIELDS

    if config.algorithm != "ppo" or config.opponent == LEARNER:
        return None
    ppo = config.ppo_config()
    return (config.model, config.games_per_update, config.rounds, config.checkpoint_every,
            tuple(repr(getattr(ppo, name)) for name in _SIDE_BY_SIDE_FIELDS))


def train_side_by_side(runs: "Sequence[TrainingRun]", *, progress: bool = True, model=None, tokenizer=None
                       ) -> "list[TrainingRun]":
    """Train several runs at once, their PPO updates side by side on one model (one process).

    The runs share one copy of the base model, each with its own LoRA adapter; every episode each
    run plays its games, then one :func:`moralkit.ppo.ppo_update` updates them all, every pass of
    the update running all runs' rows at once (on a GPU: one set of kernels for all the runs
    instead of one per run). Each run keeps its own folder, logs, checkpoints, random streams,
    optimiser and KL controller; only the dropout masks of the shared passes come from one stream
    (:func:`moralkit.ppo.ppo_update`), so a run's numbers differ from the same seed trained alone
    as two seeds' do. A group whose runs started together and checkpoint together (the same
    ``checkpoint_every``, part of :func:`side_by_side_key`) resumes exactly where it stopped; runs
    may also be at different episodes (resumed apart) and of different lengths: a run that
    finishes leaves the group (its folder unlocked, the group's recorded passes made anew).

    The runs must share :func:`side_by_side_key` (model, batch size, the passes' PPO settings).
    ``seconds`` in ``updates.csv`` is each run's share of the group's time per episode.
    ``model``/``tokenizer``: a base model to share (default: loaded once from the runs' config).
    """
    import time as _time

    from tqdm.auto import tqdm

    from .ppo import _SIDE_BY_SIDE_FIELDS, ppo_update, tf32_products

    runs = [run for run in runs if not run.finished]
    if not runs:
        return []
    keys = {side_by_side_key(run.config) for run in runs}
    if None in keys or len(keys) > 1:
        raise ValueError(
            "Runs trained side by side need our PPO against a fixed opponent, one model, the same games per update "
            f"and rounds, and the same PPO preset settings that shape the passes ({', '.join(_SIDE_BY_SIDE_FIELDS)}); "
            "train the others alone or in a group of their own.")
    folders = [run.folder.resolve() for run in runs]
    if len(set(folders)) < len(folders):
        raise ValueError("A run folder is given twice: runs trained side by side need a folder each.")
    if len(runs) == 1 and model is None:
        return [runs[0].train(progress=progress)]
    names = {run.adapter_name for run in runs}
    if len(names) < len(runs):  # runs made without a name of their own (the default): name them here
        for k, run in enumerate(runs):
            run.adapter_name = f"run{k}"
    locked = []
    try:
        shared, shared_tokenizer = model, tokenizer
        for run in runs:
            if run.trainers:
                raise ValueError(f"{run.folder}: this run was set up on a model of its own; train it side by side "
                                 "from a fresh TrainingRun.")
            run._model = shared if shared is not None else run._model
            run._tokenizer = shared_tokenizer if shared_tokenizer is not None else run._tokenizer
            run.setup()
            for player in run.players.values():  # the group samples through its stacked adapters, not merged copies
                player.merged = False
            run._lock.acquire()
            locked.append(run)
            shared, shared_tokenizer = run.trainers["learner"].model, run._tokenizer
        for run in runs:  # killed after its last checkpoint, before done.json: only the finishing is left
            if run.episode >= run.config.episodes:
                run._finish()
        total = sum(run.config.episodes - run.episode for run in runs)
        group: list[TrainingRun] = []
        with tqdm(total=total, disable=not progress, desc=f"PPO, {len(runs)} runs side by side") as bar, \
                tf32_products(runs[0].trainers["learner"].tf32):
            while True:
                active = [run for run in runs if run.episode < run.config.episodes]
                if not active:
                    break
                if active != group:  # a run left: the recordings of the larger group's passes are of no use
                    for run in group:
                        _forget_recordings(run)
                        if run not in active:
                            run._lock.release()
                    group = active
                start = _time.perf_counter()
                played = _play_episodes_side_by_side(active)
                stats = ppo_update([run.trainers["learner"] for run in active],
                                   [(b["learner"][0], b["learner"][1], np.asarray(b["learner"][2], dtype=np.float32))
                                    for _, b in played])
                seconds = (_time.perf_counter() - start) / len(active)
                for run, (rounds, _), row in zip(active, played, stats):
                    run._record(rounds, {"learner": row}, seconds)
                    if run.episode == run.config.episodes:  # done: finished now, whatever becomes of the others
                        run._finish()
                bar.update(len(active))
                bar.set_postfix({"C": " ".join(f"{(r['my_move'] == 'C').mean():.2f}" for r, _ in played)})
    finally:
        for run in locked:
            run._lock.release()
    return runs


def _forget_recordings(run: "TrainingRun") -> None:
    """Drop the CUDA-graph recordings a run's learner and players hold (each keeps a memory pool)."""
    from .llm.graphs import graphed_logits

    learner = run.trainers.get("learner")
    compiled = getattr(learner, "_compiled_decoder", None)
    if compiled is not None and hasattr(compiled[1], "forget"):
        compiled[1].forget()
    if learner is not None:
        graphed_logits(learner.model).forget()


def _play_episodes_side_by_side(runs: "Sequence[TrainingRun]") -> list:
    """Each run's :meth:`TrainingRun.play_episode`, round by round together: the learners' answers of a
    round sampled in shared passes (:func:`moralkit.llm.agent.decide_side_by_side`), each with the
    run's own random stream, so that each run plays as it would alone."""
    from .llm.agent import decide_side_by_side

    episodes = [run._start_episode() for run in runs]
    with contextlib.ExitStack() as weights_fixed:
        for episode in episodes:
            for player in episode["players"].values():
                weights_fixed.enter_context(player.reuse_prefix())
        while not runs[0].env.done:  # one shape: every run's episode has the same rounds
            decisions = decide_side_by_side([e["players"]["learner"] for e in episodes],
                                            [run._learner_request(e) for run, e in zip(runs, episodes)])
            for run, episode, decision in zip(runs, episodes, decisions):
                run._play_round(episode, decision)
    return [run._end_episode(episode) for run, episode in zip(runs, episodes)]


def _write_failed(exc: RuntimeError) -> bool:
    """Whether torch.save failed to write its file (a full disk shows so, not as an OSError)."""
    text = str(exc)
    return any(sign in text for sign in ("inline_container", "file write failed", "PytorchStreamWriter"))


def _foreign_log(path: Path, columns) -> str:
    shown = ", ".join(map(str, list(columns)[:6])) + (", ..." if len(columns) > 6 else "")
    return (f"{path} is not a moralkit training log (no 'episode' column; its columns: {shown}). Nothing was "
            "changed. Put the run's own file back, or delete the run folder to train it from the start (or "
            "train into another folder: --out, or output_dir in a notebook).")


def _complete_rows(path: Path):
    """A log as text columns, without a last line that a kill cut short (it has no line end)."""
    import io

    import pandas as pd

    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    if not text.strip():
        return pd.DataFrame()
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise DamagedFileError(f"{path} is damaged and cannot be read as a table ({exc}).") from None
