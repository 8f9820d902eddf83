"""The ``moralkit`` command.

    moralkit workbook [--profile smoke|cpu|gpu|auto] [--out outputs] [--only 01 02]
    moralkit games                      # the catalogue with its game-theoretic facts
    moralkit rewards [--game NAME]      # every moral reward as a table
    moralkit q-learning --reward game --opponent tit_for_tat [--gamma 0.9]

Each verb is a function registered with :func:`command`.
Heavy libraries are imported inside each verb, so ``moralkit --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

__all__ = ["main", "COMMANDS"]

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str):
    """Register a verb: the decorated function receives the parsed arguments."""

    def deco(fn):
        def add_args(p):
            for args, kwargs in getattr(fn, "_args", []):
                p.add_argument(*args, **kwargs)

        COMMANDS[name] = (add_args, fn, help)
        return fn

    return deco


def arg(*args, **kwargs):
    def deco(fn):
        fn._args = [(args, kwargs)] + getattr(fn, "_args", [])
        return fn

    return deco


@command("workbook", "run every notebook headless; executed copies, figures and tables go to --out")
@arg("--profile", default=None, help="smoke, cpu, gpu or auto (default: $MORALKIT_PROFILE or auto)")
@arg("--out", default="outputs", help="output folder (default: outputs)")
@arg("--only", nargs="*", default=None, help="run only notebooks whose name contains one of these (e.g. 01 04)")
def _workbook(ns) -> int:
    from .workbook import run_workbook

    paths = run_workbook(ns.out, profile=ns.profile, notebooks=ns.only)
    print(f"[moralkit] executed {len(paths)} notebook(s); outputs in {ns.out}/ (notebooks/, figures/, tables/)")
    return 0


@command("games", "list the game catalogue with equilibria and dilemma checks")
def _games(ns) -> int:
    import pandas as pd

    from .games import games_table

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(games_table())
    return 0


@command("rewards", "show every moral reward as a table for one game")
@arg("--game", default="prisoners_dilemma")
@arg("--xi", type=float, default=None, help="norm-violation penalty (default 3)")
def _rewards(ns) -> int:
    from .games import get_game
    from .rewards import get_reward, reward_names, reward_table

    get_game(ns.game)
    for name in reward_names():
        print(f"\n== {name} ==")
        print(reward_table(get_reward(name, xi=ns.xi), ns.game))
    return 0


@command("q-learning", "train tabular Q-learners (the pure-RL prelude) and print their policies")
@arg("--game", default="prisoners_dilemma")
@arg("--reward", default="game")
@arg("--opponent", default="tit_for_tat", help="an opponent name, or 'learner' for two Q-learners")
@arg("--opponent-reward", default=None, help="the second learner's reward when --opponent learner")
@arg("--gamma", type=float, default=0.9)
@arg("--alpha", type=float, default=0.01)
@arg("--iterations", type=int, default=10_000)
@arg("--runs", type=int, default=10)
@arg("--seed", type=int, default=0)
def _q_learning(ns) -> int:
    from .tabular import train_q_learning

    res = train_q_learning(
        ns.game, ns.reward, ns.opponent, opponent_reward=ns.opponent_reward, iterations=ns.iterations,
        n_runs=ns.runs, alpha=ns.alpha, gamma=ns.gamma, seed=ns.seed,
    )
    print(res)
    print(res.policy_table().round(2))
    print("\naction types, last 20% of iterations:")
    print(res.final_behaviour().round(3).to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moralkit", description="Moral alignment of LLM agents with intrinsic rewards: the workbook's command line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_args, _, help_text) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_help()
        return 1
    try:
        return COMMANDS[ns.command][1](ns) or 0
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"moralkit {ns.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
