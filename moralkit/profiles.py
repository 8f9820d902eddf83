"""Run profiles: one switch that sizes every notebook and CLI run for the hardware at hand.

* ``smoke``: CI. Every code path runs with a handful of updates and tiny evaluations.
* ``cpu``: a laptop (2+ cores). The embedded 135M model learns visibly in minutes per run
  (40 updates of 8 games x 5 rounds, ~10-15 min per run on 2 cores). An ``"A->B"`` schedule
  switches after 15% of the run: later, the Game policy has saturated at P(D) > 0.99 and PPO
  barely moves it (measured: not one C sampled in the 15-19 updates after a switch at update 20 or 8).
* ``gpu``: Colab or a GPU box, sized for a class: the ``cpu`` profile's runs (40 updates of 8
  games x 5 rounds, which meet all four of SPEC §5's predictions), a few minutes each on a GPU, so
  that every chapter fits a lesson on Colab's free T4.
* ``paper``: the paper's exact protocol: 1000 episodes of one 5-round game per run, the ``paper``
  PPO preset, 5 seeds. About an hour per run on a GPU with the eager trainer (see the README's
  table of measured costs).
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

__all__ = ["Profile", "PROFILES", "get_profile", "ENV_VAR", "THREADS_VAR", "configure_threads", "headless"]

ENV_VAR = "MORALKIT_PROFILE"
THREADS_VAR = "MORALKIT_THREADS"


@dataclass(frozen=True)
class Profile:
    """How big each piece of work is in a given setting."""

    name: str
    description: str
    # pure-RL prelude (notebook 02)
    q_iterations: int
    q_runs: int
    # the LLM
    model: str
    ppo_preset: str
    train_episodes: int
    """PPO updates per training run."""
    games_per_update: int
    """Games played in parallel, each for ``rounds`` rounds, feeding one update."""
    rounds: int
    checkpoint_every: int
    switch_at: float
    """Share of an ``"A->B"`` schedule's episodes trained with the first reward (0.5: halves)."""
    # evaluation (SPEC §6)
    eval_episodes: int
    """Episodes of 5 rounds per game in the evaluation (the paper: 10)."""
    eval_seed: int = 100
    seeds: tuple[int, ...] = (0,)

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


def configure_threads(threads: int | None = None) -> int | None:
    """Set torch's CPU threads from ``threads`` or ``$MORALKIT_THREADS`` (unset: torch's default).

    On a small shared machine (CI, a laptop running other jobs) one thread can be many times
    faster than two fighting over the same cores. Returns the number set, or None.
    """
    value = threads if threads is not None else os.environ.get(THREADS_VAR, "").strip()
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
