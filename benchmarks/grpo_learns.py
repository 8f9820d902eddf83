"""Does GRPO move the embedded model in its reward's direction? Numbers, not a verdict in a unit test.

    python benchmarks/grpo_learns.py [--reward game] [--updates 6] [--games 2] [--rounds 2] [--seeds 0 1 2]
        [--threads 2] [--save data/results/grpo_learns_cpu.csv]

Trains the embedded SmolLM2-135M-Instruct with moralkit's GRPO (TRL's GRPOTrainer, group of 4,
beta 0.04, the cpu preset's LoRA and learning rate) against Tit-for-Tat in the Prisoner's Dilemma,
and prints the exact probability of D (the second label) in each memory-1 state before and after,
with the seconds each update took, for each training seed; with several seeds, also the mean change
over seeds with its 95% Student-t interval (``--save`` then writes ``<name>_over_seeds.csv`` beside
the per-seed table). Under the Game reward P(D) should rise in every state (docs/science.md
section 5). GRPO re-reads the whole prompt for every sampled answer, so on a 2-core CPU one update
takes ~20-30 s and a seed ~2-7 minutes: this lives here, not in the test suite.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--reward", default="game", help="training reward")
    parser.add_argument("--updates", type=int, default=6, help="GRPO updates (one played episode each)")
    parser.add_argument("--games", type=int, default=2, help="games per update")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per game")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds, one run each")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--save", default=None, help="also write the per-state, per-seed table as CSV here")
    args = parser.parse_args(argv)
    if args.save and not Path(args.save).parent.is_dir():
        parser.error(f"--save: the folder {Path(args.save).parent} does not exist")

    import pandas as pd
    import torch

    from moralkit.analysis import over_seeds
    from moralkit.games import get_game
    from moralkit.llm.agent import LLMPlayer
    from moralkit.llm.models import load_model
    from moralkit.training import TrainingConfig, TrainingRun

    torch.set_num_threads(args.threads)
    model, tok = load_model("embedded")
    game = get_game("prisoners_dilemma")
    states = ([0, 0, 1, 1], [0, 1, 0, 1])  # (my previous move, opponent's previous move): C|C, C|D, D|C, D|D
    before = LLMPlayer(model, tok, "train").label_probabilities(game, *states)[:, 1]
    tables, minutes = [], []
    for i, seed in enumerate(args.seeds):
        cfg = TrainingConfig(reward=args.reward, episodes=args.updates, games_per_update=args.games, rounds=args.rounds,
                             preset="cpu", seed=seed, checkpoint_every=args.updates, algorithm="grpo")
        start = time.perf_counter()
        if i:  # a fresh base model per seed: GRPO puts its LoRA layers into the model itself
            model, tok = load_model("embedded")
        with tempfile.TemporaryDirectory() as tmp:
            run = TrainingRun(cfg, Path(tmp) / "run", model=model, tokenizer=tok).train(progress=True)
            after = run.player().label_probabilities(game, *states)[:, 1]
            seconds = run.updates["seconds"].tolist() if "seconds" in run.updates else []
        minutes.append((time.perf_counter() - start) / 60)
        table = pd.DataFrame({"seed": seed, "state": ["C|C", "C|D", "D|C", "D|D"], "p_D_before": before, "p_D_after": after})
        table["change"] = table["p_D_after"] - table["p_D_before"]
        tables.append(table)
        print(f"GRPO, reward {args.reward} vs tit_for_tat, embedded model, seed {seed}: {args.updates} updates of "
              f"{args.games} games x {args.rounds} rounds, group 4; {minutes[-1]:.1f} min on {args.threads} thread(s)")
        print(table.round(4).to_string(index=False))
        print(f"mean P(D): {before.mean():.4f} -> {after.mean():.4f}; seconds per update: "
              + ", ".join(f"{s:.0f}" for s in seconds))
    per_seed = pd.concat(tables, ignore_index=True)
    means = over_seeds(per_seed, ["state"], ["p_D_before", "p_D_after", "change"]) if len(args.seeds) > 1 else None
    if means is not None:
        print(f"\nOver seeds {' '.join(map(str, args.seeds))}: mean change of P(D) and its 95% interval (Student t):")
        print(means[["state", "seeds", "change", "change_lo", "change_hi", "p_D_after"]].round(4).to_string(index=False))
    if args.save:
        seeds = " ".join(map(str, args.seeds))
        made = (f"# GRPO ({args.reward} reward vs Tit-for-Tat), embedded SmolLM2-135M-Instruct, seeds {seeds}, "
                f"{args.updates} updates of {args.games} games x {args.rounds} rounds, group 4, beta 0.04; "
                f"{' / '.join(f'{m:.1f}' for m in minutes)} min per seed on {args.threads} CPU thread(s)\n"
                f"# Measured {datetime.date.today()} with: python benchmarks/grpo_learns.py --seeds {seeds} --save {args.save}\n")
        save = Path(args.save)
        save.write_text(made + "# Seeds and intervals: one row per seed and state; the probabilities are exact "
                        "(no sampling), so no interval within a seed; over seeds see the _over_seeds table.\n"
                        + per_seed.round(4).to_csv(index=False))
        if means is not None:
            save.with_name(f"{save.stem}_over_seeds.csv").write_text(
                made + f"# Seeds and intervals: mean over seeds {seeds}; _lo/_hi = 95% Student-t interval over "
                "the seeds, _sd their spread (moralkit.analysis.over_seeds).\n" + means.round(4).to_csv(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
