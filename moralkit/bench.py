"""Benchmark: how fast does the LLM player train on this machine?

    python -m moralkit.bench            # or: moralkit bench [--preset cpu] [--games-per-update 8]

Trains against Tit-for-Tat for a few updates (after one warm-up update) and reports rounds per
second for sampling, for the PPO update and overall, the seconds per update and the peak
resident memory. Each update sees ``games_per_update × rounds`` game rounds.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time

__all__ = ["benchmark_training", "peak_rss_gb"]


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024**3 if sys.platform == "darwin" else 1024**2)


def benchmark_training(preset: str = "cpu", games_per_update: int = 8, rounds: int = 5, updates: int = 3,
                       model: str = "embedded", seed: int = 0) -> dict:
    """Time ``updates`` PPO updates (plus one warm-up) and return the figures as a dict."""
    import torch

    from .training import TrainingConfig, TrainingRun

    cfg = TrainingConfig(reward="game", opponent="tit_for_tat", episodes=updates + 1, games_per_update=games_per_update,
                         rounds=rounds, preset=preset, model=model, seed=seed, checkpoint_every=10_000)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run = TrainingRun(cfg, folder)
        run._setup()
        load_s = time.perf_counter() - start
        run.train(progress=False)
        up = run.updates.iloc[1:]  # drop the warm-up update
    rows = games_per_update * rounds
    total = float(up["seconds"].sum())
    ppo = float(up["time/ppo/total"].sum())
    sample = total - ppo
    return {
        "preset": preset,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
        "rounds per update": rows,
        "timed updates": len(up),
        "model load + setup (s)": round(load_s, 1),
        "seconds per update": round(total / len(up), 2),
        "sampling rounds/s": round(rows * len(up) / sample, 2),
        "PPO update rounds/s": round(rows * len(up) / ppo, 2),
        "overall rounds/s": round(rows * len(up) / total, 2),
        "peak RSS (GB)": round(peak_rss_gb(), 2),
    }


if __name__ == "__main__":  # pragma: no cover
    from .cli import main

    sys.exit(main(["bench", *sys.argv[1:]]))
