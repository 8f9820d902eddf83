"""What the notebooks' code may and may not hold, read from the notebook files (nothing is executed).

Notebooks tell the story; the library does the work. Chapters 4-6 once re-implemented plumbing
that now lives in the library (train-or-reuse, peeking into checkpoints, counting parameters and
memory, the unlearning table, hand-made figures, renaming schedules); these tests catch its return.
"""

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LLM_CHAPTERS = [p for p in NOTEBOOKS if p.name[:2] in ("04", "05", "06", "07")]

PLUMBING = {
    r"training_state\.json": "peeks into a checkpoint: use TrainingRun.status (or Workbook.train_or_reuse)",
    r"replace\(\s*[\"']_then_": "renames a schedule by hand: plots.pretty_name already writes game → deontological",
    r"\.numel\(": "counts parameters by hand: use TrainingRun.parameter_counts / memory_report or llm.adapters.memory_report",
    r"element_size\(": "measures memory by hand: use TrainingRun.memory_report or llm.adapters.memory_report",
    r"named_parameters\(": "walks the model's parameters: use the library's memory reports",
    r"def train_or_reuse": "re-implements train-or-reuse: use Workbook.train_or_reuse",
    r"\bTrainingRun\(": "builds runs by hand: use Workbook.train_or_reuse or experiments.train_grid",
    r"\brun_folder\(": "names run folders by hand: Workbook.train_or_reuse does it",
    r"plt\.subplots\(|plt\.Rectangle|\.barh\(|sns\.heatmap\(": "draws a figure by hand: make it a function in moralkit.plots",
    r"def joint_outcomes|def megabytes|def adapter_size": "a library helper re-defined in the notebook",
}


def code_cells(path: Path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [(i, "".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", LLM_CHAPTERS, ids=lambda p: p.stem)
def test_llm_chapters_hold_no_library_plumbing(path):
    found = [f"cell {i}: {what} ({pattern})" for i, source in code_cells(path)
             for pattern, what in PLUMBING.items() if re.search(pattern, source)]
    assert not found, f"{path.name} re-implements library plumbing:\n" + "\n".join(found)


def test_the_llm_chapters_are_there():
    assert [p.name[:2] for p in LLM_CHAPTERS] == ["04", "05", "06", "07"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_numbered_sections_follow_one_another(path):
    """``## 1.``, ``## 2.``, ... without a gap: a section lost in an edit (as chapter 7's section 4 once was,
    inside a cell replaced by a solution drop-down) shows as a missing number."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    numbers = [int(m.group(1)) for c in cells if c["cell_type"] == "markdown"
               for m in re.finditer(r"^## (\d+)\.", "".join(c["source"]), flags=re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: sections numbered {numbers}"


def _shows_a_path(source: str) -> str | None:
    """The last expression of a cell when it returns a file path (a save call not ended with ``;``)."""
    if source.rstrip().endswith(";"):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: not ours to judge here
        return None
    if not tree.body or not isinstance(tree.body[-1], ast.Expr):
        return None
    last = tree.body[-1].value
    if isinstance(last, ast.Call) and isinstance(last.func, ast.Attribute) and last.func.attr in (
            "save_figure", "save_table", "save", "save_png", "mkdir"):
        return ast.get_source_segment(source, last)
    return None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_ends_by_showing_a_saved_files_path(path):
    stray = [f"cell {i}: {shown}" for i, source in code_cells(path) if (shown := _shows_a_path(source))]
    assert not stray, f"{path.name}: these cells would print PosixPath(...); end them with ';':\n" + "\n".join(stray)


def test_the_path_check_sees_a_stray_path():
    assert _shows_a_path('fig = 1\nwb.save_figure(fig, "x")') == 'wb.save_figure(fig, "x")'
    assert _shows_a_path('wb.save_figure(fig, "x");') is None
    assert _shows_a_path("table.round(3)") is None


def test_the_plumbing_patterns_catch_the_old_code():
    old = ('resumed = (run.checkpoint_dir / "training_state.json").exists()\n'
           'trainable = sum(p.numel() for p in trainer.trainable_parameters)\n'
           'name = label.replace("_then_", " → ")\n'
           'fig, axes = plt.subplots(1, 2)\n')
    hits = [pattern for pattern in PLUMBING if re.search(pattern, old)]
    assert len(hits) == 4


def test_every_relative_link_in_the_readme_and_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert (ROOT / "docs" / "README.md") in pages
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+:", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)
    assert "(docs/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_has_its_own_id(path):
    """nbformat 4.5 gives every cell an ``id``; a cell added by a script without one makes Jupyter
    rewrite the file on the next save (and nbformat warn) -- the kind of edit that loses text unnoticed."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    ids = [c.get("id") for c in nb["cells"]]
    assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5)
    assert None not in ids, f"{path.name}: cells {[i for i, x in enumerate(ids) if x is None]} have no id"
    assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"
