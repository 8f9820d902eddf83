"""Add the rows of new training seeds to a table of data/results, and write its means over seeds.

    python benchmarks/add_seeds.py data/results/ppo_vs_grpo_gpu_h100.csv runs/gpu/ppo_vs_grpo_*/ppo_vs_grpo.csv \
        --by reward algorithm opponent --note "Seeds 1 2: lease of 2026-12-01, benchmarks/gpu_session.sh grids."

The table keeps its comment lines (``# ...``: what was measured, where, how) and gets ``--note`` as
one more; the new rows must have the table's columns and seeds it does not hold yet (a seed
measured twice would count twice in the means): ``--by`` names every column that tells one
condition's rows apart (``state`` too, for a table with a row per state). Beside it, ``<table>_over_seeds.csv`` gets the mean
of every numeric column over seeds per ``--by`` group, with its 95% Student-t interval over seeds
(``moralkit.analysis.over_seeds``), under a header that says so. Both files are replaced whole
(written aside, then renamed), so an error leaves them as they were.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from moralkit.analysis import over_seeds
from moralkit.storage import atomic_write


def comments(path: Path) -> list[str]:
    """The ``# ...`` lines at the top of a CSV file."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def add_seeds(table: Path, new: list[Path], by: list[str], note: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table with the new rows, and its means over seeds; both written beside ``table``."""
    old = pd.read_csv(table, comment="#")
    parts = []
    for path in new:
        part = pd.read_csv(path, comment="#")
        if list(part.columns) != list(old.columns):
            missing, extra = set(old.columns) - set(part.columns), set(part.columns) - set(old.columns)
            raise ValueError(f"{path} has other columns than {table}: missing {sorted(missing)}, extra {sorted(extra)}"
                             + ("" if missing or extra else " (same names, another order)"))
        parts.append(part)
    added = pd.concat(parts, ignore_index=True)
    keys = [*by, "seed"]
    clash = added[keys].merge(old[keys].drop_duplicates(), how="inner")
    if len(clash) or added.duplicated(keys).any():
        raise ValueError(f"seeds already in {table} or given twice:\n{(clash if len(clash) else added[keys]).to_string(index=False)}")
    merged = pd.concat([old, added], ignore_index=True).sort_values(keys, kind="stable")
    seeds = " ".join(str(s) for s in sorted(merged["seed"].unique()))
    header = comments(table) + [f"# {note}"]
    atomic_write(table, lambda p: Path(p).write_text("\n".join(header) + "\n" + merged.to_csv(index=False)))
    spread = over_seeds(merged, by)
    spread_path = table.with_name(table.stem + "_over_seeds.csv")
    spread_header = [f"# The runs of {table.name}, mean over training seeds {seeds} per {', '.join(by)}.",
                     "# Seeds and intervals: _lo/_hi = 95% Student-t interval of the mean over seeds, _sd their "
                     "standard deviation (a share's interval can pass 0 or 1 with three seeds); a verdict column "
                     "becomes <name>_seeds = how many seeds it holds for.",
                     f"# Made by benchmarks/add_seeds.py (moralkit.analysis.over_seeds(table, {by!r})) from {table.name}, "
                     "whose header says where and how the runs were measured."]
    atomic_write(spread_path, lambda p: Path(p).write_text("\n".join(spread_header) + "\n" + spread.to_csv(index=False, float_format="%.4g")))
    return merged, spread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("table", type=Path, help="a table of data/results with a seed column")
    parser.add_argument("new", type=Path, nargs="+", help="CSV files with the new seeds' rows (same columns)")
    parser.add_argument("--by", nargs="+", required=True, help="the columns naming a condition, e.g. reward algorithm opponent")
    parser.add_argument("--note", required=True, help="a header line for the table: which seeds were added, when, where, how")
    args = parser.parse_args(argv)
    try:
        merged, spread = add_seeds(args.table, args.new, args.by, args.note)
    except (OSError, ValueError, KeyError) as exc:
        print(f"add_seeds: {exc}", file=sys.stderr)
        return 2
    print(f"{args.table}: {len(merged)} rows, seeds {sorted(int(s) for s in merged['seed'].unique())}; "
          f"{args.table.stem}_over_seeds.csv: {len(spread)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
