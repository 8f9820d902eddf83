"""Seconds per PPO update of two checkouts of moralkit, side by side on this machine.

    python benchmarks/before_after.py --before /path/to/old/checkout [--shape smollm2-135m-narrow]
        [--preset paper --games-per-update 1] [--threads 1] [--updates 4] [--repeats 3]

The model (on the GPU if there is one, in the dtype ``load_model`` would choose) is a random-weight copy of a shape in ``moralkit.llm.models.RANDOM_SHAPES`` saved once to
a temporary folder, so both checkouts load the very same weights through their ``load_model(folder)``
(an old checkout need not know ``random:`` specs). Each measurement runs in a fresh process with
``PYTHONPATH`` pointing at one checkout; the two checkouts alternate, ``--repeats`` times, so that
whatever else the machine is doing weighs on both alike. Printed: the median seconds per update
of each (after one warm-up update) and their ratio, by the wall clock and by the process's CPU
time (steadier on a shared machine: waiting for a core does not count).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs inside the measured checkout: only API that moralkit has had since its first PPO release.
_PROBE = r"""
import json, sys, tempfile, time, torch
torch.set_num_threads(int(sys.argv[5]))
from transformers import AutoModelForCausalLM, AutoTokenizer
from moralkit.llm.models import default_device, default_dtype, prepare_tokenizer
from moralkit.training import TrainingConfig, TrainingRun
folder, preset, games, updates = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
device = default_device()  # as load_model: the GPU if there is one, in its default dtype
model = AutoModelForCausalLM.from_pretrained(folder, dtype=default_dtype(device)).to(device).eval()
tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(folder))
cfg = TrainingConfig(reward="game", opponent="tit_for_tat", episodes=updates + 1, games_per_update=games,
                     rounds=5, preset=preset, checkpoint_every=10_000)
marks = []  # (wall, process CPU) at the end of every update
with tempfile.TemporaryDirectory() as out:
    run = TrainingRun(cfg, out, model=model, tokenizer=tokenizer)
    run.train(progress=False, callback=lambda run, rounds: marks.append((time.perf_counter(), time.process_time())))
wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
print("RESULT " + json.dumps({"wall": wall, "cpu": cpu}))
"""


def measure(checkout: Path, folder: Path, preset: str, games: int, updates: int, threads: int) -> dict[str, list[float]]:
    """Wall-clock and CPU seconds of each timed update of one run of ``checkout``'s trainer (a fresh process)."""
    path = os.pathsep.join(p for p in (str(checkout), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(folder), preset, str(games), str(updates), str(threads)],
        env=env, capture_output=True, text=True, check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise RuntimeError(f"the benchmark of {checkout} failed:\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--before", required=True, type=Path, help="checkout of the old code")
    parser.add_argument("--after", type=Path, default=here, help="checkout of the new code")
    parser.add_argument("--shape", default="smollm2-135m-narrow", help="a shape of RANDOM_SHAPES")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--games-per-update", type=int, default=1)
    parser.add_argument("--updates", type=int, default=4, help="timed updates per run (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each checkout, alternating")
    parser.add_argument("--threads", type=int, default=1)
    ns = parser.parse_args(argv)
    sys.path.insert(0, str(ns.after))
    from moralkit.llm.models import embedded_tokenizer, random_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / ns.shape
        random_model(ns.shape, device="cpu", dtype="float32").save_pretrained(folder)
        embedded_tokenizer().save_pretrained(folder)
        times = {(name, clock): [] for name in ("before", "after") for clock in ("wall", "cpu")}
        for _ in range(ns.repeats):
            for name, checkout in (("before", ns.before), ("after", ns.after)):
                got = measure(checkout, folder, ns.preset, ns.games_per_update, ns.updates, ns.threads)
                for clock in ("wall", "cpu"):
                    times[name, clock] += got[clock]
    result = {"shape": ns.shape, "preset": ns.preset, "games_per_update": ns.games_per_update, "threads": ns.threads,
              "updates_timed": len(times["after", "wall"])}
    for clock in ("wall", "cpu"):
        before, after = statistics.median(times["before", clock]), statistics.median(times["after", clock])
        result |= {f"before_{clock}_s": round(before, 3), f"after_{clock}_s": round(after, 3),
                   f"after_over_before_{clock}": round(after / before, 3)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
