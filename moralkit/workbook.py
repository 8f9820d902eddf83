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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .profiles import Profile, configure_threads, get_profile, headless as _headless
from .storage import OutputError, atomic_write, save_png
from .storage import output_error as _explain

__all__ = ["Workbook", "setup", "run_workbook", "notebook_paths", "NOTEBOOKS_DIR", "OutputError", "atomic_write", "save_png"]

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
        """Save a matplotlib figure as PNG (atomically) and remember it."""
        path = save_png(fig, self.figures_dir / f"{name}.png", dpi=dpi)
        self.saved.append(path)
        return path

    def save_table(self, frame, name: str) -> Path:
        """Save a DataFrame as CSV (atomically) and remember it."""
        path = atomic_write(self.tables_dir / f"{name}.csv", lambda p: frame.to_csv(p))
        self.saved.append(path)
        return path

    def __repr__(self) -> str:
        return f"Workbook({self.name!r}, profile={self.profile.name!r}, output_dir='{self.output_dir}')"


def setup(name: str, profile: str | Profile | None = "auto", output_dir: str | Path = "outputs", *, style: bool = True) -> Workbook:
    """Prepare a notebook run: resolve the profile, create output folders, set the plot style."""
    prof = get_profile(profile)
    configure_threads()
    out = Path(os.environ.get("MORALKIT_OUTPUT_DIR", output_dir)).expanduser().resolve()
    wb = Workbook(name, prof, out)
    for d in (wb.figures_dir, wb.tables_dir):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _explain(exc, d / "x") from exc
    if style:
        import matplotlib

        if os.environ.get("MPLBACKEND", "").lower() == "agg":
            matplotlib.use("Agg")
        import seaborn as sns

        sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    return wb


def notebook_paths(names: Iterable[str] | None = None) -> list[Path]:
    """The workbook's notebooks in chapter order (optionally only those whose name contains one of ``names``)."""
    paths = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if names:
        names = list(names)
        chosen = [p for p in paths if any(n in p.stem for n in names)]
        if not chosen:
            raise ValueError(f"No notebook matches {names}. Notebooks: {', '.join(p.stem for p in paths)}.")
        return chosen
    return paths


def run_workbook(
    output_dir: str | Path = "outputs",
    profile: str | None = None,
    notebooks: Iterable[str] | None = None,
    *,
    timeout: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Execute notebooks headless with papermill; executed copies go to ``<output_dir>/notebooks``.

    Each notebook receives ``profile`` and ``output_dir`` through its ``parameters`` cell.
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
    env_backup = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    done = []
    try:
        for path in notebook_paths(notebooks):
            target = executed_dir / path.name
            start = time.time()
            if progress:
                print(f"[moralkit] running {path.name} (profile {prof.name}) ...", flush=True)
            try:
                pm.execute_notebook(
                    str(path),
                    str(target),
                    parameters={"profile": prof.name, "output_dir": str(out)},
                    kernel_name="python3",
                    cwd=str(path.parent),
                    progress_bar=False,
                    execution_timeout=timeout,
                )
            except pm.PapermillExecutionError as exc:
                raise RuntimeError(
                    f"Notebook {path.name} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}. "
                    f"The executed copy with the error is at {target}."
                ) from None
            if progress:
                print(f"[moralkit]   done in {time.time() - start:.0f}s -> {target}", flush=True)
            done.append(target)
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    return done
