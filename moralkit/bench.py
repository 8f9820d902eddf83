"""Benchmark: how fast does the LLM player train on this machine?

    moralkit bench [--profile cpu] [--model random:smollm2-135m] [--preset paper] [--games-per-update 1] [--json]
    python -m moralkit bench ...

Trains against Tit-for-Tat for a few updates (after one warm-up update) and reports the device,
the seconds per update and where they go -- sampling the answers of the episode, the scoring passes
of the update (old log-probabilities, values and the reference model's log-probabilities) and the
optimiser steps -- with rounds per second and the peak host and GPU memory. Each update sees
``games_per_update × rounds`` game rounds.

``random:<shape>`` models (see :data:`moralkit.llm.models.RANDOM_SHAPES`) time exactly like the
real model of that shape, so speed can be measured anywhere without a download.
"""

from __future__ import annotations

import csv
import dataclasses
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["benchmark_training", "peak_rss_gb", "save_benchmark"]


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024**3 if sys.platform == "darwin" else 1024**2)


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name()})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def benchmark_training(
    preset: str | None = None,
    games_per_update: int | None = None,
    rounds: int | None = None,
    updates: int = 3,
    model: str | None = None,
    seed: int = 0,
    compile: bool | str = "auto",
    tf32: bool | str = "auto",
    merged: bool | str = "auto",
    dtype: str | None = None,
    profile: str | None = None,
    side_by_side: int = 1,
) -> dict:
    """Time ``updates`` PPO updates (after one warm-up update) and return the figures as a dict.

    The run is the ``profile``'s training run of the Game reward against Tit-for-Tat
    (:func:`~moralkit.training.condition_config`); ``preset``, ``games_per_update``, ``rounds``
    and ``model`` override the profile's.

    ``tf32`` is the run's :attr:`PPOConfig.tf32 <moralkit.ppo.PPOConfig>`: ``"auto"`` (the
    default, as in training) computes float32 matrix products in TensorFloat-32 on a CUDA GPU of the
    Ampere generation or newer; ``True``/``False`` force it; the result's ``tf32`` says what ran.
    ``merged`` is the run's ``PPOConfig.merged_sampling`` (the player samples through a copy of the
    weights with the adapter merged in; ``"auto"``: on a CUDA GPU for models under a billion
    parameters); the result's ``merged_sampling`` says what ran (never in runs side by side).

    Keys: ``device``, ``model``, ``preset``, ``games_per_update``, ``rounds``, ``compile``, ``tf32``, ``merged_sampling``,
    ``timed_updates``, ``load_s`` (model load and set-up), ``warmup_s`` (the first update: with
    ``compile`` it holds the compilation), ``seconds_per_update`` (mean; ``median_update_s``
    beside it shows outliers such as a recompilation) and its parts ``sampling_s``,
    ``scoring_s``, ``optimiser_s``; ``optimiser_steps_per_update``, ``rounds_per_s``,
    ``peak_host_gb``, ``peak_gpu_gb`` (None without CUDA) and the versions of torch, transformers
    and peft. ``dtype`` loads the model in that dtype (default: :func:`~moralkit.llm.models.load_model`'s
    choice, bfloat16 on a recent GPU).

    ``side_by_side`` > 1 trains that many runs (seeds ``seed``, ``seed + 1``, ...) at once, their
    updates in shared passes (:func:`~moralkit.training.train_side_by_side`, what ``moralkit grid
    --side-by-side`` does): the seconds are then one run's share, so ``1 / seconds_per_update`` is
    the updates per second of one run and ``side_by_side`` times that the group's.
    """
    import peft
    import torch
    import transformers

    from .llm.models import load_model
    from .training import TrainingRun, condition_config, train_side_by_side

    if updates < 1:
        raise ValueError(f"updates must be at least 1 (timed after one warm-up update), got {updates}.")
    if side_by_side < 1:
        raise ValueError(f"side_by_side must be at least 1, got {side_by_side}.")
    sizes = {k: v for k, v in {"preset": preset, "games_per_update": games_per_update, "rounds": rounds,
                                "model": model}.items() if v is not None}
    cfg = condition_config("game", "tit_for_tat", seed, profile, episodes=updates + 1, checkpoint_every=10_000,
                           ppo_overrides={"compile": compile, "tf32": tf32, "merged_sampling": merged}, **sizes)
    preset, games_per_update, rounds, model = cfg.preset, cfg.games_per_update, cfg.rounds, cfg.model
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        base, tokenizer = load_model(model, dtype=dtype) if dtype or side_by_side > 1 else (None, None)
        if side_by_side == 1:
            run = TrainingRun(cfg, folder, model=base, tokenizer=tokenizer).setup()
            load_s = time.perf_counter() - start
            run.train(progress=False)
        else:
            runs = [TrainingRun(dataclasses.replace(cfg, seed=seed + k), Path(folder) / f"run{k}")
                    for k in range(side_by_side)]
            load_s = time.perf_counter() - start
            run = train_side_by_side(runs, model=base, tokenizer=tokenizer, progress=False)[0]
        table = run.updates
    warmup, timed = table.iloc[0], table.iloc[1:]
    n = len(timed)
    total = float(timed["seconds"].sum())
    scoring = float(timed["time/ppo/forward"].sum())
    optimiser = float(timed["time/ppo/optimize"].sum())
    ppo = float(timed["time/ppo/total"].sum())
    steps = float((timed["ppo/minibatches"] - timed["ppo/skipped_minibatches"]).sum())
    rows = games_per_update * rounds
    return {
        "device": _device_name(),
        "model": model,
        "preset": preset,
        "games_per_update": games_per_update,
        "rounds": rounds,
        "compile": "graphs" if run.trainers["learner"].graphs else compile,  # what "auto" chose
        "tf32": run.trainers["learner"].tf32,  # what "auto" chose
        "merged_sampling": run.players["learner"].merged,  # what "auto" chose (off side by side)
        "side_by_side": side_by_side,
        "dtype": str(next(run.model.parameters()).dtype).removeprefix("torch."),
        "timed_updates": n,
        "load_s": round(load_s, 2),
        "warmup_s": round(float(warmup["seconds"]), 2),
        "seconds_per_update": round(total / n, 3),
        "median_update_s": round(float(timed["seconds"].median()), 3),
        "sampling_s": round((total - ppo) / n, 3),
        "scoring_s": round(scoring / n, 3),
        "optimiser_s": round(optimiser / n, 3),
        "optimiser_steps_per_update": round(steps / n, 2),
        "rounds_per_s": round(rows * n / total, 2),
        "peak_host_gb": round(peak_rss_gb(), 2),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1024**3, 2) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def save_benchmark(result: dict, path: str | Path) -> Path:
    """Append ``result`` as a row of the CSV file ``path`` (with a header when the file is new)."""
    from .storage import atomic_write

    path = Path(path)
    rows = []
    if path.exists():
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and list(rows[0]) != list(result):
            raise ValueError(
                f"{path} holds benchmark rows with other columns ({', '.join(rows[0])}); save to a new file."
            )
    rows.append({k: "" if v is None else v for k, v in result.items()})

    def write(target: Path) -> None:
        with target.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(result))
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)
    return path
