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


def _tiny_notebook(path, cells):
    """A notebook of code cells; the first is tagged ``parameters``."""
    import json

    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "outputs": [], "source": src,
                     "metadata": {"tags": ["parameters"]} if i == 0 else {}} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def test_notebooks_are_found_in_a_given_folder_or_explained(tmp_path):
    from moralkit.workbook import notebook_paths

    with pytest.raises(FileNotFoundError, match="--notebooks PATH"):
        notebook_paths(notebooks_dir=tmp_path)
    for name in ("02_b.ipynb", "01_a.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in notebook_paths(notebooks_dir=tmp_path)] == ["01_a.ipynb", "02_b.ipynb"]
    assert [p.name for p in notebook_paths(["02"], notebooks_dir=tmp_path)] == ["02_b.ipynb"]


def test_progress_line_says_where_the_run_is_and_what_is_left():
    from moralkit.workbook import progress_line

    line = progress_line(4, 6, "04_ppo_finetuning", "cpu", 3725, ["04_ppo_finetuning", "05_unlearning_selfishness", "06_generalisation"])
    assert line == "[moralkit] chapter 4/6 04_ppo_finetuning (profile cpu) · elapsed 1:02:05 · left: 04-06, about 2 h"
    assert progress_line(1, 1, "01_payoff_matrices", "gpu", 5, ["01_payoff_matrices"]).endswith("left: 01, about 1 min (estimated)")


def test_run_workbook_executes_with_inline_figures_and_reports_progress(tmp_path, monkeypatch, capsys):
    """Even with MPLBACKEND=Agg around it, the executed copy carries the figure as image/png."""
    from moralkit.workbook import count_outputs, run_workbook

    monkeypatch.setenv("MPLBACKEND", "Agg")
    folder = tmp_path / "nbs"
    folder.mkdir()
    _tiny_notebook(folder / "01_tiny.ipynb", [
        'profile = "auto"\noutput_dir = "outputs"',
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([0, 1], [1, 0]);",
        "print(profile, output_dir)",
    ])
    [executed] = run_workbook(tmp_path / "out", profile="smoke", notebooks_dir=folder)
    assert executed == tmp_path / "out" / "notebooks" / "01_tiny.ipynb"
    assert count_outputs(executed, "image/png") == 1
    assert f"smoke {tmp_path / 'out'}" in executed.read_text()
    out = capsys.readouterr().out
    assert "[moralkit] chapter 1/1 01_tiny (profile smoke) · elapsed 0:00 · left: 01" in out
    assert "(1 figure inline)" in out
    import os

    assert os.environ["MPLBACKEND"] == "Agg"  # restored


def test_workbook_marks_smoke_figures_and_not_others(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from moralkit.profiles import SMOKE_MARK

    for profile, marked in (("smoke", True), ("cpu", False)):
        wb = Workbook("99_test", get_profile(profile), tmp_path / profile)
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1])
        wb.save_figure(fig, "line")
        assert (SMOKE_MARK in [t.get_text() for t in fig.texts]) is marked
        plt.close(fig)


def test_tables_shown_in_a_smoke_notebook_carry_a_caption():
    from IPython.core.interactiveshell import InteractiveShell

    from moralkit.profiles import SMOKE_MARK
    from moralkit.workbook import caption_tables

    shell = InteractiveShell.instance()
    frame = pd.DataFrame({"C": [0.5]})
    try:
        assert caption_tables(SMOKE_MARK)
        data, _ = shell.display_formatter.format(frame)
        assert SMOKE_MARK in data["text/html"] and SMOKE_MARK in data["text/plain"]
        data, _ = shell.display_formatter.format(frame.style)
        assert SMOKE_MARK in data["text/html"]
        data, _ = shell.display_formatter.format(frame["C"])
        assert SMOKE_MARK in data["text/plain"]
        caption_tables(None)
        data, _ = shell.display_formatter.format(frame)
        assert SMOKE_MARK not in data["text/html"] and SMOKE_MARK not in data["text/plain"]
    finally:
        caption_tables(None)
        InteractiveShell.clear_instance()


def test_caption_tables_outside_ipython_does_nothing():
    from moralkit.workbook import caption_tables

    assert caption_tables("x") is False
