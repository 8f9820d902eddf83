"""Run profiles: one switch that sizes every notebook and CLI run for the hardware at hand.

* ``smoke``: CI. Every code path runs with a handful of updates and tiny evaluations.
* ``cpu``: a laptop (2+ cores). The embedded 135M model learns visibly in minutes per run
  (40 updates of 8 games x 5 rounds, ~10-15 min per run on 2 cores). An ``"A->B"`` schedule
  switches after 15% of the run: later, the Game policy has saturated at P(D) > 0.99 and PPO
  barely moves it (measured: not one C sampled in the 15-19 updates after a switch at update 20 or 8).
* ``gpu``: Colab or a GPU box, sized for a class: the ``cpu`` profile's runs (40 updates of 8
  games x 5 rounds, which met all four of docs/science.md §5's predictions at seed 0, reciprocity
  in 2 of 3 seeds), a few minutes each on a GPU, so
  that every chapter fits a lesson on Colab's free T4.
* ``paper``: the paper's training protocol: 1000 episodes of one 5-round game per run, the ``paper``
  PPO preset, 5 seeds -- on the embedded model unless a run names another (the paper's was
  Gemma-2-2b-it). About 7 minutes per run on an H100 with CUDA graphs, ~23 eagerly (see the
  README's table of measured costs).
* ``auto``: ``gpu`` when CUDA is available, else ``cpu``.

The environment variable ``MORALKIT_PROFILE`` overrides whatever a notebook or command asks
for, so CI (``pytest --nbval-lax``, papermill) can force ``smoke`` everywhere.

>>> get_profile("smoke").name
'smoke'
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, replace

from .games import EVALUATION_GAMES

__all__ = ["SMOKE_MARK", "is_smoke", "Profile", "PROFILES", "PAPER_AGENTS", "get_profile", "ENV_VAR", "THREADS_VAR", "configure_threads", "headless"]

ENV_VAR = "MORALKIT_PROFILE"
THREADS_VAR = "MORALKIT_THREADS"

PAPER_AGENTS: tuple[str, ...] = (
    "game",
    "deontological",
    "utilitarian",
    "game_deontological",
    "game->deontological",
    "game->utilitarian",
)
"""The paper's six fine-tuned agents (docs/science.md §5-6): four rewards and two unlearning schedules."""


SMOKE_MARK = "smoke run — not a result"
"""The mark on every figure and table made in the ``smoke`` profile (its runs are far too short to learn)."""


def is_smoke(profile) -> bool:
    """Whether ``profile`` (a :class:`Profile`, its name, or None) is the ``smoke`` profile.

    >>> is_smoke("smoke"), is_smoke(PROFILES["cpu"]), is_smoke(None)
    (True, False, False)
    """
    return getattr(profile, "name", profile) == "smoke"


@dataclass(frozen=True)
class Profile:
    """How big each piece of work is in a given setting: the one table of sizes.

    Every notebook and command reads its sizes here (a training run's through
    :func:`moralkit.training.condition_config`); nothing else holds a second opinion. Fields
    without a value in a profile keep the full size given here.
    """

    name: str
    description: str
    # pure-RL prelude (chapter 2)
    q_iterations: int
    """Iterations of each tabular Q-learning run."""
    q_runs: int
    """Independent Q-learning runs per condition."""
    # the LLM and its fine-tuning (chapters 4, 5, 7)
    model: str
    """The base model: ``embedded``, a local folder, a hub id or ``random:<shape>``."""
    ppo_preset: str
    """The PPO preset (:meth:`moralkit.ppo.PPOConfig.preset`): LoRA shape, learning rate, minibatches, KL."""
    train_episodes: int
    """PPO updates per training run."""
    games_per_update: int
    """Games played in parallel, each for ``rounds`` rounds, feeding one update."""
    rounds: int
    checkpoint_every: int
    switch_at: float
    """Share of an ``"A->B"`` schedule's episodes trained with the first reward (0.5: halves)."""
    # evaluation (docs/science.md §6; chapters 3 and 6)
    eval_episodes: int
    """Episodes of 5 rounds per game in the evaluation (the paper: 10)."""
    eval_seed: int = 100
    seeds: tuple[int, ...] = (0,)
    """Training seeds of a grid (``moralkit grid``)."""
    learner_rounds: int = 3
    """Rounds per game against a second learning LLM (the paper: 3); at most ``rounds``."""
    threads: int | None = None
    """torch CPU threads when neither the notebook nor ``$MORALKIT_THREADS`` says (None: torch's choice)."""
    eval_games: tuple[str, ...] = EVALUATION_GAMES
    """Games of the evaluation (the paper's five)."""
    agents: tuple[str, ...] = PAPER_AGENTS
    """Fine-tuned agents of the generalisation chapter (6)."""
    unlearning_schedules: tuple[str, ...] = ("game->deontological", "game->utilitarian")
    """Reward schedules of the unlearning chapter (5)."""
    two_learner_rewards: tuple[str, ...] = ("game", "deontological")
    """Reward types of the two-learner runs (chapter 5)."""
    exercise_episodes: int | None = None
    """PPO updates of the exercise run with your own reward (chapter 4; None: ``train_episodes``)."""
    demo_games: int = 4
    """Games of the untuned model against Tit-for-Tat shown in chapter 3."""
    probe_label_sets: tuple[str, ...] = ("train", "test", "ab", "xy", "zero_one")
    """Label sets whose probabilities chapter 3 compares (a random set is added)."""
    unrelated_prompts: int = 20
    """Prompts per level of the unrelated-prompt test (chapters 3 and 6)."""
    average_label_orders: bool = True
    """Exact policy tables average over both orders of the labels in the prompt (twice the cost)."""
    tabular_updates: int = 800
    """Updates of chapter 7's tabular MaxMin learner (32 games x 5 rounds each)."""

    def replace(self, **changes) -> "Profile":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="CI: every code path, tiny budgets (minutes for the whole workbook on 2 CPU cores).",
        q_iterations=2_000,
        q_runs=4,
        model="embedded",
        ppo_preset="smoke",
        train_episodes=2,
        games_per_update=4,
        rounds=2,
        checkpoint_every=1,
        switch_at=0.5,
        eval_episodes=1,
        threads=1,  # tiny batches: one thread is faster, above all on a busy CPU
        eval_games=("prisoners_dilemma", "defective_coordination"),
        agents=("game", "game->deontological"),
        unlearning_schedules=("game->deontological",),
        two_learner_rewards=("deontological",),
        exercise_episodes=1,
        demo_games=2,
        probe_label_sets=("test", "ab"),
        unrelated_prompts=4,
        average_label_orders=False,
        tabular_updates=60,
    ),
    "cpu": Profile(
        name="cpu",
        description="A laptop CPU: the embedded 135M model learns visibly within minutes per run.",
        q_iterations=10_000,
        q_runs=20,
        model="embedded",
        ppo_preset="cpu",
        train_episodes=40,
        games_per_update=8,
        rounds=5,
        checkpoint_every=10,
        switch_at=0.15,  # unlearning: switch while the Game policy still samples C (notebook 05, section 1b)
        eval_episodes=10,
    ),
    "gpu": Profile(
        name="gpu",
        description="A GPU (Colab's T4 or better): the cpu profile's runs, each in a few minutes.",
        q_iterations=10_000,
        q_runs=50,
        model="embedded",
        ppo_preset="cpu",  # the batched preset, tuned for the embedded model (its name says where it was tuned)
        train_episodes=40,
        games_per_update=8,
        rounds=5,
        checkpoint_every=10,
        switch_at=0.15,  # as the cpu profile: the same runs, the same saturation of the Game policy
        eval_episodes=10,
    ),
    "paper": Profile(
        name="paper",
        description="The paper's protocol: 1000 episodes of one 5-round game per run, 5 seeds (hours on a GPU).",
        q_iterations=10_000,
        q_runs=50,
        model="embedded",
        ppo_preset="paper",
        train_episodes=1000,
        games_per_update=1,
        rounds=5,
        checkpoint_every=100,
        switch_at=0.5,
        eval_episodes=10,
        seeds=(0, 1, 2, 3, 4),
    ),
}


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:  # pragma: no cover
        return False


def get_profile(name: str | Profile | None = "auto") -> Profile:
    """The profile to use: ``$MORALKIT_PROFILE`` if set, else ``name`` (``auto`` picks by hardware)."""
    override = os.environ.get(ENV_VAR, "").strip().lower()
    if isinstance(name, Profile) and not override:
        return name
    key = override or (str(name).strip().lower() if name else "auto")
    if key == "auto":
        key = "gpu" if _cuda_available() else "cpu"
    if key not in PROFILES:
        source = f"${ENV_VAR}" if override else "profile"
        raise ValueError(f"Unknown {source} {key!r}. Valid profiles: {', '.join(PROFILES)}, auto.")
    return PROFILES[key]


def configure_threads(threads: int | None = None, *, fallback: int | None = None) -> int | None:
    """Set torch's CPU threads: ``threads`` if given, else ``$MORALKIT_THREADS``, else ``fallback``.

    On a small shared machine (CI, a laptop running other jobs) one thread can be many times
    faster than two fighting over the same cores. ``fallback`` is typically the profile's
    :attr:`Profile.threads`. Returns the number set, or None (torch's default kept).
    """
    value = threads if threads is not None else os.environ.get(THREADS_VAR, "").strip()
    if value in (None, ""):
        value = fallback
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"${THREADS_VAR} must be a whole number of threads, got {value!r}.") from None
    if n < 1:
        raise ValueError(f"The number of threads must be at least 1, got {n}.")
    import torch

    torch.set_num_threads(n)
    return n


def headless() -> bool:
    """Whether nobody watches: not inside a notebook kernel, or ``$MORALKIT_HEADLESS`` / ``$CI`` set."""
    return "ipykernel" not in sys.modules or bool(os.environ.get("MORALKIT_HEADLESS")) or bool(os.environ.get("CI"))
