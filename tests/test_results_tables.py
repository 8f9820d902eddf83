"""Every measured table in data/results/ says how it was made: its seeds and its intervals (issue 16).

The tables are quoted by the README and the notebooks; a reader must be able to tell from the
file alone whether a figure is one seed or a mean over seeds, and what its interval is over.
The ``bench_*.csv`` files are exempt: ``moralkit bench --save`` appends timing rows to them
(a comment line would break the append), and data/README.md describes them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

RESULTS = Path(__file__).resolve().parents[1] / "data" / "results"
TABLES = sorted(p for p in RESULTS.glob("*.csv") if not p.name.startswith("bench_"))


def _header(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if line.startswith("#")).lower()


def test_there_are_tables_to_check():
    assert len(TABLES) >= 10


@pytest.mark.parametrize("path", TABLES, ids=lambda p: p.name)
def test_a_table_states_its_seeds_and_intervals_and_reads(path):
    header = _header(path)
    assert "seed" in header, f"{path.name}: its '#' header lines must say which seeds it holds"
    assert "interval" in header, f"{path.name}: its '#' header lines must say what its intervals are over (or that it has none)"
    assert "measured" in header or "command" in header, f"{path.name}: its header must say how it was produced"
    table = pd.read_csv(path, comment="#")
    assert len(table) > 0 and len(table.columns) > 1


def test_over_seeds_tables_hold_at_least_three_seeds():
    for path in RESULTS.glob("*_over_seeds.csv"):
        table = pd.read_csv(path, comment="#")
        if "kind" in table:  # the untuned and prompted references are not trained: one "seed" each
            table = table[table["kind"] == "fine-tuned"]
        assert len(table) and (table["seeds"] >= 3).all(), f"{path.name}: a trained row with fewer than 3 seeds"
