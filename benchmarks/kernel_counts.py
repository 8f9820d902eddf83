"""How many operations does one training update launch, alone and side by side?  A device-free proxy.

    python benchmarks/kernel_counts.py [--model random:smollm2-135m-narrow] [--side-by-side 1 6 30] [--updates 2] [--merged]

On a recent GPU a paper-preset update is bound by the GPU's own time per kernel (~3 us each for
these tiny ones, lease 4: docs/performance.md), so the number of kernels per update sets how many
updates per second one GPU can make. This counts the torch operations (views left out: they launch
no kernel) of whole training updates -- sampling, scoring, PPO epochs, Adam -- on the path a recent
GPU takes (``compile="graphs"``: whole padded rows, the graphed sampler; on a CPU the same passes run
eagerly; Adam and gradient clipping over all tensors at once, as on a GPU), for one run alone and for R runs side by side (``moralkit grid --side-by-side R``), and
prints the operations per run-update (and, apart, the numbers read back to Python: on a CPU
mostly Adam's step counters). ``--merged``: the runs sample through a copy of the weights with the
adapter merged in (``PPOConfig.merged_sampling``, what a CUDA GPU does by default; runs side by side never do). The width of the model does not change the count, so the
narrow random shape counts what the embedded model launches. The first update (warm-up) is left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def count(model: str, runs: int, updates: int, preset: str, merged: bool = False) -> dict:
    import dataclasses

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    import moralkit.ppo as ppo
    from moralkit.llm.models import load_model
    from moralkit.training import TrainingRun, condition_config, train_side_by_side

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = 0
            self.reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                self.reads += 1  # a number read back to Python: no kernel (on a GPU, a copy and a wait)
            elif not getattr(func, "is_view", False):
                self.ops += 1
            return func(*args, **(kwargs or {}))

    cfg = condition_config("game", "tit_for_tat", 0, "cpu", episodes=updates + 1, checkpoint_every=10_000, preset=preset,
                           games_per_update=1, rounds=5, model=model,
                           ppo_overrides={"compile": "graphs", "merged_sampling": merged})
    per_update: list[tuple[int, int]] = []
    counter = Count()
    real_update = ppo.ppo_update

    def counted(trainers, batches):  # the update, and (through the episode's sampling before it) the play
        result = real_update(trainers, batches)
        per_update.append((counter.ops, counter.reads))
        return result

    # as on a GPU, where Adam and gradient clipping run over all tensors at once (foreach), not one by one
    real_adam, real_clip = torch.optim.Adam, torch.nn.utils.clip_grad_norm_
    torch.optim.Adam = lambda *a, **k: real_adam(*a, **{"foreach": True, **k})
    torch.nn.utils.clip_grad_norm_ = lambda *a, **k: real_clip(*a, **{"foreach": True, **k})
    ppo.ppo_update = counted
    try:
        with tempfile.TemporaryDirectory() as folder:
            base, tokenizer = load_model(model)
            group = [TrainingRun(dataclasses.replace(cfg, seed=k), Path(folder) / f"run{k}") for k in range(runs)]
            with counter:
                if runs == 1:
                    group[0]._model, group[0]._tokenizer = base, tokenizer
                    group[0].train(progress=False)
                else:
                    train_side_by_side(group, model=base, tokenizer=tokenizer, progress=False)
    finally:
        ppo.ppo_update = real_update
        torch.optim.Adam, torch.nn.utils.clip_grad_norm_ = real_adam, real_clip
    # each update with the episode played before it; the first (warm-up) left out
    ops = [b[0] - a[0] for a, b in zip(per_update, per_update[1:])]
    reads = [b[1] - a[1] for a, b in zip(per_update, per_update[1:])]
    return {"model": model, "preset": preset, "side_by_side": runs, "merged_sampling": merged and runs == 1,
            "updates": len(ops),
            "ops_per_run_update": round(sum(ops) / len(ops) / runs),
            "scalar_reads_per_run_update": round(sum(reads) / len(reads) / runs)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:smollm2-135m-narrow")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--side-by-side", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--updates", type=int, default=2, help="counted updates (after one warm-up)")
    parser.add_argument("--merged", action="store_true", help="sample through a merged copy of the weights")
    args = parser.parse_args(argv)
    for runs in args.side_by_side:
        print(json.dumps(count(args.model, runs, args.updates, args.preset, args.merged)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
