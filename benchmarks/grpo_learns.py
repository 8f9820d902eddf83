"""Does GRPO move the embedded model in its reward's direction? Numbers, not a verdict in a unit test.

    python benchmarks/grpo_learns.py [--reward game] [--updates 6] [--games 2] [--rounds 2] [--seed 0]
        [--threads 2] [--save data/results/grpo_learns_cpu.csv]

Trains the embedded SmolLM2-135M-Instruct with moralkit's GRPO (TRL's GRPOTrainer, group of 4,
beta 0.04, the cpu preset's LoRA and learning rate) against Tit-for-Tat in the Prisoner's Dilemma,
and prints the exact probability of D (the second label) in each memory-1 state before and after,
with the seconds each update took. Under the Game reward P(D) should rise in every state (docs/science.md
section 5). GRPO re-reads the whole prompt for every sampled answer, so on a 2-core CPU one update of
4 states x 4 answers takes minutes: this lives here, not in the test suite.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--save", default=None, help="also write the per-state table as CSV here")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from moralkit.games import get_game
    from moralkit.llm.agent import LLMPlayer
    from moralkit.llm.models import load_model
    from moralkit.training import TrainingConfig, TrainingRun

    torch.set_num_threads(args.threads)
    model, tok = load_model("embedded")
    game = get_game("prisoners_dilemma")
    states = ([0, 0, 1, 1], [0, 1, 0, 1])  # (my previous move, opponent's previous move): C|C, C|D, D|C, D|D
    before = LLMPlayer(model, tok, "train").label_probabilities(game, *states)[:, 1]
    cfg = TrainingConfig(reward=args.reward, episodes=args.updates, games_per_update=args.games, rounds=args.rounds,
                         preset="cpu", seed=args.seed, checkpoint_every=args.updates, algorithm="grpo")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = TrainingRun(cfg, Path(tmp) / "run", model=model, tokenizer=tok).train(progress=True)
        after = run.player().label_probabilities(game, *states)[:, 1]
        seconds = run.updates["seconds"].tolist() if "seconds" in run.updates else []
    minutes = (time.perf_counter() - start) / 60
    table = pd.DataFrame({"state": ["C|C", "C|D", "D|C", "D|D"], "p_D_before": before, "p_D_after": after})
    table["change"] = table["p_D_after"] - table["p_D_before"]
    print(f"GRPO, reward {args.reward} vs tit_for_tat, embedded model, seed {args.seed}: {args.updates} updates of "
          f"{args.games} games x {args.rounds} rounds, group 4; {minutes:.1f} min on {args.threads} thread(s)")
    print(table.round(4).to_string(index=False))
    print(f"mean P(D): {before.mean():.4f} -> {after.mean():.4f}; seconds per update: "
          + ", ".join(f"{s:.0f}" for s in seconds))
    if args.save:
        header = (f"# GRPO ({args.reward} reward vs Tit-for-Tat), embedded SmolLM2-135M-Instruct, seed {args.seed}, "
                  f"{args.updates} updates of {args.games} games x {args.rounds} rounds, group 4, beta 0.04; "
                  f"{minutes:.1f} min on {args.threads} CPU thread(s)\n"
                  f"# Measured with: python benchmarks/grpo_learns.py --save {args.save}\n")
        Path(args.save).write_text(header + table.round(4).to_csv(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
