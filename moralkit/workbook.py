"""Running the workbook: output folders, saving figures and tables safely, headless execution.

Every notebook starts with::

    wb = moralkit.workbook.setup("02_moral_rewards", profile=profile, output_dir=output_dir)
    ...
    wb.save_figure(fig, "q_learning_policies")     # -> <output_dir>/figures/02_moral_rewards/...png
    wb.save_table(frame, "q_learning_policies")    # -> <output_dir>/tables/02_moral_rewards/...csv

and ``moralkit workbook`` (or :func:`run_workbook`) executes all notebooks with papermill,
writing executed copies to ``<output_dir>/notebooks``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .profiles import SMOKE_MARK, Profile, configure_threads, get_profile, headless as _headless, is_smoke
from .storage import OutputError, atomic_write, save_png
from .storage import output_error as _explain

__all__ = [
    "Workbook",
    "setup",
    "caption_tables",
    "run_workbook",
    "notebook_paths",
    "default_notebooks_dir",
    "progress_line",
    "count_outputs",
    "NOTEBOOKS_DIR",
    "INLINE_BACKEND",
    "OutputError",
    "atomic_write",
    "save_png",
]

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@dataclass
class Workbook:
    """A notebook's run context: its profile and where its outputs go."""

    name: str
    profile: Profile
    output_dir: Path
    saved: list[Path] = field(default_factory=list)

    @property
    def figures_dir(self) -> Path:
        return self.output_dir / "figures" / self.name

    @property
    def tables_dir(self) -> Path:
        return self.output_dir / "tables" / self.name

    @property
    def runs_dir(self) -> Path:
        """Where training runs (checkpoints, logs) of this output folder live; shared by notebooks."""
        return self.output_dir / "runs"

    def save_figure(self, fig, name: str, *, dpi: int = 120) -> Path:
        """Save a matplotlib figure as PNG (atomically) and remember it.

        In the smoke profile the figure first gets the smoke mark (:func:`moralkit.plots.mark_smoke`),
        so both the file and the picture shown in the notebook say that it is not a result.
        """
        from .plots import mark_smoke

        mark_smoke(fig, self.profile)
        path = save_png(fig, self.figures_dir / f"{name}.png", dpi=dpi)
        self.saved.append(path)
        return path

    def train_or_reuse(self, reward: str, opponent: str = "tit_for_tat", seed: int = 0, *, folder: str | Path | None = None,
                       live: bool = True, **overrides):
        """One training run of this workbook's profile in its runs folder: reused if finished, else trained.

        The condition (``reward`` vs ``opponent``, ``seed``, ``overrides`` such as ``episodes=``)
        becomes a config with :func:`moralkit.training.condition_config`; its folder is
        :func:`moralkit.experiments.run_folder` under :attr:`runs_dir` unless ``folder`` is given (so
        chapters and ``moralkit grid`` share runs). An unfinished run resumes from its checkpoint;
        ``live`` draws a :class:`moralkit.plots.LiveTrainingPlot` while it trains. See
        :func:`moralkit.experiments.train_or_reuse`.
        """
        from .experiments import run_folder, train_or_reuse
        from .plots import LiveTrainingPlot
        from .training import condition_config

        cfg = condition_config(reward, opponent, seed, self.profile, **overrides)
        plot = LiveTrainingPlot(every=max(1, cfg.episodes // 30), window=max(1, cfg.episodes // 60),
                                profile=self.profile) if live else None
        return train_or_reuse(cfg, folder if folder is not None else run_folder(self.runs_dir, cfg), callback=plot)

    def save_table(self, frame, name: str) -> Path:
        """Save a DataFrame as CSV (atomically) and remember it."""
        path = atomic_write(self.tables_dir / f"{name}.csv", lambda p: frame.to_csv(p))
        self.saved.append(path)
        return path

    def __repr__(self) -> str:
        return f"Workbook({self.name!r}, profile={self.profile.name!r}, output_dir='{self.output_dir}')"


def setup(name: str, profile: str | Profile | None = "auto", output_dir: str | Path = "outputs", *, style: bool = True) -> Workbook:
    """Prepare a notebook run: resolve the profile, create output folders, set the plot style."""
    from ._warnings import quiet_third_party

    quiet_third_party()
    prof = get_profile(profile)
    configure_threads()
    out = Path(os.environ.get("MORALKIT_OUTPUT_DIR", output_dir)).expanduser().resolve()
    wb = Workbook(name, prof, out)
    for d in (wb.figures_dir, wb.tables_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _explain(exc, d / "x") from exc
    if is_smoke(prof):
        caption_tables(SMOKE_MARK)
    if style:
        import matplotlib

        if os.environ.get("MPLBACKEND", "").lower() == "agg":
            matplotlib.use("Agg")
        import seaborn as sns

        sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    return wb


def caption_tables(caption: str | None) -> bool:
    """Show ``caption`` above every table (pandas DataFrame, Series or Styler) this notebook displays from now on.

    Used in the smoke profile with :data:`moralkit.profiles.SMOKE_MARK`, so that no table of a smoke
    run reads as a result. ``None`` removes the caption. Outside IPython it does nothing and returns
    False.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the course extra
        return False
    shell = get_ipython()
    if shell is None:
        return False
    import html

    import pandas as pd
    from pandas.io.formats.style import Styler

    formatters = shell.display_formatter.formatters
    for kind in (pd.DataFrame, pd.Series, Styler):
        for mime in ("text/html", "text/plain"):
            formatters[mime].pop(kind, None)
    if caption is None:
        return True
    banner = f'<p style="color:#C00000;font-weight:bold;margin:0 0 4px 0">⚠ {html.escape(caption)}</p>'
    formatters["text/html"].for_type(pd.DataFrame, lambda frame: banner + frame._repr_html_())
    formatters["text/html"].for_type(Styler, lambda styler: banner + styler.to_html())
    for kind in (pd.DataFrame, pd.Series):
        formatters["text/plain"].for_type(kind, lambda frame, p, cycle: p.text(f"[{caption}]\n{frame!r}"))
    return True


def notebook_paths(names: Iterable[str] | None = None, notebooks_dir: str | Path | None = None) -> list[Path]:
    """The workbook's notebooks in chapter order (optionally only those whose name contains one of ``names``).

    ``notebooks_dir`` defaults to :func:`default_notebooks_dir`.
    """
    folder = Path(notebooks_dir).expanduser() if notebooks_dir is not None else default_notebooks_dir()
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise FileNotFoundError(
            f"No notebooks (01_*.ipynb, 02_*.ipynb, ...) in {folder}. The notebooks are not part of the installed "
            "package: run from a copy of the workbook's repository, or pass its notebooks folder "
            "(moralkit workbook --notebooks PATH)."
        )
    if names:
        names = list(names)
        chosen = [p for p in paths if any(n in p.stem for n in names)]
        if not chosen:
            raise ValueError(f"No notebook matches {names}. Notebooks: {', '.join(p.stem for p in paths)}.")
        return chosen
    return paths


def default_notebooks_dir() -> Path:
    """The repository's ``notebooks/`` beside the package (a checkout), else ``./notebooks``."""
    return NOTEBOOKS_DIR if NOTEBOOKS_DIR.is_dir() else Path.cwd() / "notebooks"


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
"""matplotlib's backend inside a Jupyter kernel: figures become ``image/png`` outputs of their cell."""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def progress_line(index: int, total: int, stem: str, profile: str, elapsed: float, remaining_stems: Sequence[str]) -> str:
    """The runner's status line before a chapter: which one, time so far, and roughly what is left.

    >>> progress_line(2, 6, "02_moral_rewards", "cpu", 75, ["02_moral_rewards", "03_llm_players"])
    '[moralkit] chapter 2/6 02_moral_rewards (profile cpu) · elapsed 1:15 · left: 02-03, about 7 min'
    """
    from .chapters import format_minutes, remaining_minutes

    left = remaining_minutes(remaining_stems, profile)
    span = remaining_stems[0][:2] if len(remaining_stems) == 1 else f"{remaining_stems[0][:2]}-{remaining_stems[-1][:2]}"
    estimate = "" if left == 0 else f", {format_minutes(left)}" + (" (estimated)" if profile == "gpu" else "")
    return f"[moralkit] chapter {index}/{total} {stem} (profile {profile}) · elapsed {_clock(elapsed)} · left: {span}{estimate}"


def count_outputs(path: str | Path, mime: str = "image/png") -> int:
    """How many outputs of an executed notebook carry ``mime`` (e.g. inline figures)."""
    import json

    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return sum(mime in out.get("data", {}) for cell in nb["cells"] for out in cell.get("outputs", []))


def run_workbook(
    output_dir: str | Path = "outputs",
    profile: str | None = None,
    notebooks: Iterable[str] | None = None,
    *,
    notebooks_dir: str | Path | None = None,
    timeout: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Execute notebooks headless with papermill; executed copies go to ``<output_dir>/notebooks``.

    Each notebook receives ``profile`` and ``output_dir`` through its ``parameters`` cell and runs
    in a kernel with matplotlib's inline backend, so the executed copies carry their figures as
    ``image/png`` outputs (the notebooks also save them as PNG files). With ``progress`` a line
    before each chapter says which one, the time so far and roughly what is left
    (:mod:`moralkit.chapters`), and in a terminal a bar counts the chapter's cells.
    Returns the executed notebooks' paths. Raises with the failing notebook named.
    """
    import papermill as pm

    out = Path(output_dir).expanduser().resolve()
    executed_dir = out / "notebooks"
    try:
        executed_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _explain(exc, executed_dir / "x") from exc
    prof = get_profile(profile or "auto")
    paths = notebook_paths(notebooks, notebooks_dir)
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # the kernel inherits it: figures inline, not Agg
    bar = {"desc": "  cells", "unit": "cell", "leave": False} if progress and sys.stderr.isatty() else False
    done = []
    began = time.time()
    try:
        for i, path in enumerate(paths):
            target = executed_dir / path.name
            start = time.time()
            if progress:
                print(progress_line(i + 1, len(paths), path.stem, prof.name, start - began, [p.stem for p in paths[i:]]),
                      flush=True)
            try:
                pm.execute_notebook(
                    str(path),
                    str(target),
                    parameters={"profile": prof.name, "output_dir": str(out)},
                    kernel_name="python3",
                    cwd=str(path.parent),
                    progress_bar=bar,
                    execution_timeout=timeout,
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # the kernel process's own log (TCP notice, shutdown)
                )
            except pm.PapermillExecutionError as exc:
                raise RuntimeError(
                    f"Notebook {path.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}. "
                    f"The executed copy with the error is at {target}."
                ) from None
            if progress:
                figures = count_outputs(target)
                print(f"[moralkit]   done in {_clock(time.time() - start)} ({figures} figure{'' if figures == 1 else 's'} inline)"
                      f" -> {target}", flush=True)
            done.append(target)
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    if progress:
        print(f"[moralkit] {len(done)} chapter(s) in {_clock(time.time() - began)}", flush=True)
    return done
