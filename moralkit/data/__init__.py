"""The data files moralkit itself reads, shipped inside the package (wheel and sdist alike).

* ``games.json`` -- the game catalogue (:func:`moralkit.games.load_games`);
* ``paper_fig4.csv`` -- the paper's Figure 4, read off the image (:func:`moralkit.evaluate.paper_reference`).

Every loader finds them through :func:`data_file`, so an installed package and a checkout behave
the same. The repository's top-level ``data/`` folder holds results and other shared artefacts
(``data/results/``), which the library never needs at run time.

>>> data_file("games.json").name
'games.json'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DATA_DIR", "data_file", "data_files"]

DATA_DIR: Path = Path(__file__).resolve().parent
"""The folder holding moralkit's own data files (inside the installed package)."""


def data_file(name: str) -> Path:
    """The path of one of moralkit's data files, e.g. ``data_file("games.json")``.

    Raises :class:`FileNotFoundError` naming the folder searched and the files that are there,
    which points at a broken installation (a wheel built without its package data).
    """
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"moralkit data file {name!r} not found in {DATA_DIR} (it holds: {', '.join(data_files()) or 'nothing'}). "
            "The installation is incomplete: reinstall moralkit (pip install --force-reinstall moralkit)."
        )
    return path


def data_files() -> list[str]:
    """The names of the data files shipped with moralkit (no Python sources)."""
    return sorted(p.name for p in DATA_DIR.iterdir() if p.is_file() and p.suffix not in {".py", ".pyc"})
