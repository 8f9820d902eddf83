"""Every notebook runs top to bottom headless in the smoke profile (papermill).

The notebooks share one output folder, in chapter order, exactly as ``moralkit workbook`` runs
them: later chapters may reuse what earlier ones saved (e.g. trained adapters).
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def workbook_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workbook")
    (folder / "notebooks").mkdir()
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless_in_smoke_profile(path, workbook_dir, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("MORALKIT_PROFILE", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("MORALKIT_THREADS", "1")  # tiny smoke batches: one thread is faster, and CI cores are few
    pm.execute_notebook(
        str(path),
        str(workbook_dir / "notebooks" / path.name),
        parameters={"output_dir": str(workbook_dir)},
        kernel_name="python3",
        cwd=str(path.parent),
        progress_bar=False,
    )
    figures = list((workbook_dir / "figures" / path.stem).glob("*.png"))
    assert figures, f"{path.name} saved no figure"
