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


def test_add_seeds_appends_new_seeds_and_writes_their_means(tmp_path):
    """``benchmarks/add_seeds.py``: how a lease's new seeds join a seed-0 table of data/results."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("add_seeds", RESULTS.parents[1] / "benchmarks" / "add_seeds.py")
    add_seeds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(add_seeds)
    table = tmp_path / "t.csv"
    table.write_text("# Measured on a machine, seed 0; no interval.\nreward,seed,D,meets\ngame,0,0.9,True\n")
    new = tmp_path / "new.csv"
    new.write_text("reward,seed,D,meets\ngame,1,1.0,True\ngame,2,0.8,False\n")
    assert add_seeds.main([str(table), str(new), "--by", "reward", "--note", "Seeds 1 2 added."]) == 0
    assert _header(table) == "# measured on a machine, seed 0; no interval.\n# seeds 1 2 added."
    assert list(pd.read_csv(table, comment="#")["seed"]) == [0, 1, 2]
    spread = pd.read_csv(tmp_path / "t_over_seeds.csv", comment="#")
    assert spread.loc[0, "seeds"] == 3 and spread.loc[0, "D"] == pytest.approx(0.9) and spread.loc[0, "meets_seeds"] == "2/3"
    assert "interval" in _header(tmp_path / "t_over_seeds.csv")
    before = table.read_text()
    assert add_seeds.main([str(table), str(new), "--by", "reward", "--note", "again"]) == 2  # seeds 1 2 are there
    other = tmp_path / "other.csv"
    other.write_text("reward,seed,C\ngame,3,0.1\n")
    assert add_seeds.main([str(table), str(other), "--by", "reward", "--note", "x"]) == 2  # other columns
    assert table.read_text() == before
