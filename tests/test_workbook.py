"""Saving outputs safely: a failed write explains itself and leaves earlier files untouched."""

import errno
import os
import stat

import pandas as pd
import pytest

from moralkit.workbook import OutputError, Workbook, atomic_write
from moralkit.profiles import get_profile


def test_atomic_write_replaces_the_file_with_ordinary_permissions(tmp_path):
    path = atomic_write(tmp_path / "sub" / "t.csv", lambda p: p.write_text("new"))
    assert path.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's private 0600
    assert [p.name for p in path.parent.iterdir()] == ["t.csv"]  # no temporary file left


def test_a_full_disk_is_explained_and_the_old_file_survives(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("old")

    def full(p):
        p.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="disk holding .* is full.*Files written earlier are untouched"):
        atomic_write(path, full)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_an_interrupted_write_leaves_nothing_behind(tmp_path):
    def interrupted(p):
        p.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "t.csv", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_workbook_saves_tables_where_it_says(tmp_path):
    wb = Workbook("99_test", get_profile("smoke"), tmp_path)
    path = wb.save_table(pd.DataFrame({"a": [1, 2]}), "numbers")
    assert path == tmp_path / "tables" / "99_test" / "numbers.csv" and wb.saved == [path]
    assert pd.read_csv(path, index_col=0)["a"].tolist() == [1, 2]
    assert "99_test" in repr(wb) and "smoke" in repr(wb)
