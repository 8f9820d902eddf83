"""Every notebook runs top to bottom headless in the smoke profile, as ``moralkit workbook`` runs it.

The notebooks share one output folder, in chapter order, exactly as ``moralkit workbook`` runs
them: later chapters may reuse what earlier ones saved (e.g. trained adapters). Each executed copy
must carry its figures inline and no library deprecation warning.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOISE = re.compile(r"FutureWarning|DeprecationWarning|PendingDeprecationWarning|is deprecated")


@pytest.fixture(scope="module")
def workbook_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workbook")
    (folder / "notebooks").mkdir()
    return folder


def output_texts(path: Path) -> list[str]:
    """Every text a notebook's cells printed or returned (streams, errors, plain-text results)."""
    texts = []
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            texts.append(text if isinstance(text, str) else "".join(text))
            texts.append("".join(out.get("data", {}).get("text/plain", "")))
            texts.append("\n".join(out.get("traceback", [])))
    return texts


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_headless_in_smoke_profile(path, workbook_dir, monkeypatch):
    from moralkit.workbook import count_outputs, run_workbook

    monkeypatch.setenv("MORALKIT_PROFILE", "smoke")
    monkeypatch.setenv("MORALKIT_THREADS", "1")  # tiny smoke batches: one thread is faster, and CI cores are few
    [executed] = run_workbook(workbook_dir, profile="smoke", notebooks=[path.stem], progress=False)
    assert executed == workbook_dir / "notebooks" / path.name
    figures = list((workbook_dir / "figures" / path.stem).glob("*.png"))
    assert figures, f"{path.name} saved no figure"
    assert count_outputs(executed, "image/png") >= 1, f"{path.name}: no figure inline in the executed copy"
    noise = [line for text in output_texts(executed) for line in text.splitlines() if NOISE.search(line)]
    assert not noise, f"{path.name} printed library warnings:\n" + "\n".join(noise[:10])
    assert "profile smoke" in "".join(output_texts(executed)), "the set-up cell's report"
