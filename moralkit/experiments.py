"""Condition grids: train rewards × opponents × seeds, evaluate them, write one tidy table.

A *condition* is a reward (or a schedule such as ``"game->deontological"``), an opponent and a
seed; :func:`moralkit.training.condition_config` turns it and a profile into a training config.
:func:`train_grid` trains each condition into its own run folder (resuming unfinished runs,
skipping finished ones), :func:`evaluate_runs` evaluates finished runs with the protocol of
docs/science.md §6 (paired with the untuned base model), and :func:`run_grid` does both and
writes ``training.csv``, ``unlearning.csv``, ``evaluation_rounds.csv`` and ``generalisation.csv``
into the grid folder (the tables themselves come from :mod:`moralkit.analysis`).

Schedules are written ``A->B`` (the profile's ``switch_at`` share first) or ``A:30,B:30``
(explicit lengths).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from pathlib import Path
from typing import Iterable, Sequence

from .analysis import (generalisation_over_seeds, generalisation_table, over_seeds, reward_switches,
                       rounds_to_criterion, training_summary, training_table,
                       unlearning_table)
from .profiles import PAPER_AGENTS, Profile, get_profile
from .storage import atomic_write, claim_folder, read_json, write_json
from .training import TrainingConfig, TrainingRun, condition_config, side_by_side_key, train_side_by_side

__all__ = ["PAPER_AGENTS", "condition_config", "run_folder", "train_or_reuse", "train_grid", "evaluate_runs", "run_grid",
           "load_runs", "compare_algorithms", "algorithm_table"]


def run_folder(root: str | Path, config: TrainingConfig) -> Path:
    """``<root>/<reward label>__<opponent>__seed<k>`` (readable and unique per condition)."""
    opp = config.opponent.replace(":", "-")
    label = re.sub(r"[^\w.+-]+", "_", config.label).strip("_")  # maxmin(game,de) -> maxmin_game_de
    return Path(root) / f"{label}__{opp}__seed{config.seed}"


def train_or_reuse(config: TrainingConfig, folder: str | Path, *, callback=None, progress: bool = True,
                   say=print) -> TrainingRun:
    """The run of ``config`` in ``folder``: reused if finished, else resumed from its checkpoint or trained.

    ``say`` (default ``print``; ``None`` for silence) gets one line saying which of the three
    happens. ``callback`` is passed to :meth:`TrainingRun.train`; if it has a ``finish(run)``
    method (as :class:`moralkit.plots.LiveTrainingPlot` does) that is called once training ends.
    Returns the run (its model released only if it was never loaded: call ``run.release()`` when done).
    """
    run = TrainingRun(config, folder)
    status = run.status
    who = f"{config.label} vs {config.opponent}"
    if status == "finished":
        if say:
            changes = run.ppo_changes()
            note = f" (trained with other PPO settings: {', '.join(n for n, *_ in changes[:4])})" if changes else ""
            say(f"{who}: reusing the finished run in {run.folder}{note}")
        return run
    if say:
        say(f"{who}: {'resuming' if status == 'resumable' else 'training'} {config.episodes} updates in {run.folder}")
    run.train(progress=progress, callback=callback)
    finish = getattr(callback, "finish", None)
    if callable(finish):
        finish(run)
    return run


def train_grid(
    rewards: Sequence[str],
    opponents: Sequence[str] = ("tit_for_tat",),
    seeds: Sequence[int] = (0,),
    *,
    out: str | Path = "runs",
    profile: str | Profile | None = "auto",
    progress: bool = True,
    workers: int = 1,
    side_by_side: int = 1,
    **overrides,
) -> list[TrainingRun]:
    """Train every condition (finished ones are skipped, unfinished ones resume).

    ``workers > 1`` trains that many conditions at once, each in a process of its own on the same
    device: a GPU runs a small model's many short kernels for several runs side by side (one run
    leaves it idle most of the time), a CPU splits its cores between them. If a condition fails, the
    others still finish and the error names it; the same call resumes it.

    ``side_by_side > 1`` trains up to that many conditions in one process on one model, their
    updates in shared passes (:func:`moralkit.training.train_side_by_side`; conditions of another
    shape, GRPO or two learners go in groups of their own); with ``workers``, that many groups at once.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    if side_by_side < 1:
        raise ValueError(f"side_by_side must be at least 1, got {side_by_side}.")
    prof = get_profile(profile)
    conditions = {}  # folder -> config; every condition checked before any folder is touched
    for reward, opponent, seed in itertools.product(rewards, opponents, seeds):
        cfg = condition_config(reward, opponent, seed, prof, **dict(overrides))
        folder = run_folder(out, cfg)
        if folder in conditions:
            raise ValueError(f"the grid names one condition twice ({folder.name}: {cfg.label} vs {cfg.opponent}, "
                             f"seed {seed}): give each reward, opponent and seed once.")
        conditions[folder] = cfg
    runs = [TrainingRun(cfg, folder) for folder, cfg in conditions.items()]
    todo = [run for run in runs if not run.finished]
    for run in runs:
        changes = run.ppo_changes() if run.finished else None
        if changes:  # a finished run is reused as it is, but say that it was trained otherwise
            shown = ", ".join(f"{name} {old!r} (now {new!r})" for name, old, new in changes[:4])
            print(f"[moralkit] {run.folder.name}: finished earlier with other PPO settings: {shown}; reused as it is. "
                  "Delete the folder to train it with the current settings.")
        elif progress and run.finished:
            print(f"[moralkit] {run.folder.name}: finished earlier, skipped")
    groups = side_by_side_groups(todo, side_by_side)
    if workers == 1 or len(groups) <= 1:
        for group in groups:
            if len(group) == 1:
                group[0].train(progress=progress)
            else:
                train_side_by_side(group, progress=progress)
            for run in group:
                run.release()
    else:
        _train_in_processes(groups, workers, progress)
    return runs


def side_by_side_groups(runs: Sequence[TrainingRun], size: int) -> list[list[TrainingRun]]:
    """``runs`` in groups of at most ``size`` that can train side by side (one shape each), in order.

    A run that cannot go side by side with any other (GRPO, two learners) is a group of its own.
    """
    by_key: dict = {}
    groups: list[list[TrainingRun]] = []
    for run in runs:
        key = side_by_side_key(run.config) if size > 1 else None
        group = by_key.get(key) if key is not None else None
        if group is None or len(group) >= size:
            group = []
            groups.append(group)
            if key is not None:
                by_key[key] = group
        group.append(run)
    return groups


def _train_in_processes(groups: Sequence[Sequence[TrainingRun]], workers: int, progress: bool) -> None:
    """Train the groups of runs in up to ``workers`` processes at once (spawned: safe with CUDA)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    workers = min(workers, len(groups))
    threads = max(1, (os.cpu_count() or 1) // workers)  # CPU cores shared out between the processes
    total = sum(len(group) for group in groups)
    failed: list[tuple[str, BaseException]] = []
    context = multiprocessing.get_context("spawn")
    what = f"grid: {total} run(s), {workers} process(es)" + (
        f", up to {max(len(g) for g in groups)} side by side in each" if any(len(g) > 1 for g in groups) else "")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool, tqdm(total=total, disable=not progress, desc=what,
                                                                   unit="run") as bar:
        futures = {pool.submit(_train_group, [run.config.to_dict() for run in group],
                               [str(run.folder) for run in group], threads): group for group in groups}
        for future in as_completed(futures):
            group = futures[future]
            names = ", ".join(run.folder.name for run in group)
            try:
                minutes = future.result()
                bar.write(f"[moralkit] {names}: trained ({minutes:.1f} min)")
            except Exception as exc:  # noqa: BLE001 -- reported below, the other runs go on
                failed.append((names, exc))
            bar.update(len(group))
    if failed:
        raise RuntimeError(grid_failure_report(failed, total))


def grid_failure_report(failed: Sequence[tuple[str, BaseException]], total: int) -> str:
    """What a grid says when some of its ``total`` runs failed: each run's error, and how to go on.

    >>> print(grid_failure_report([("game__tit_for_tat__seed0", ValueError("bad"))], 2))
    1 of 2 run(s) failed:
      game__tit_for_tat__seed0: ValueError: bad
    The others finished. Fix the cause and run the same command again: it resumes the failed runs.
    """
    memory = any("out of memory" in str(exc).lower() for _, exc in failed)
    return (
        f"{len(failed)} of {total} run(s) failed:\n  "
        + "\n  ".join(f"{name}: {type(exc).__name__}: {exc}" for name, exc in failed)
        + ("\nThe GPU ran out of memory: each run holds its model, its batches and (with CUDA graphs, the "
           "default on an Ampere-or-newer GPU) one recording per batch shape -- ~3 GB per paper-profile run and 5-7 GB per "
           "gpu-profile run on an H100. Use fewer --workers (workers=...), or --ppo compile=False (eager, "
           "~2.5 GB per run, slower)." if memory else "")
        + "\nThe others finished. Fix the cause and run the same command again: it resumes the failed runs."
    )


def _die_with_parent(parent: int, every: float = 1.0) -> None:
    """Worker process: exit as soon as the grid's process is gone (killed, or its terminal closed).

    A worker whose parent dies is adopted by another process and would train on unseen, holding
    the run's lock, cores and GPU memory; the run it leaves resumes from its last checkpoint.
    """
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(70)

    threading.Thread(target=watch, name="moralkit-die-with-parent", daemon=True).start()


def _train_group(configs: list[dict], folders: list[str], threads: int) -> float:
    """Worker process: train a group of conditions (one alone, several side by side); the minutes it took."""
    import time

    from .profiles import configure_threads

    configure_threads(threads)
    start = time.perf_counter()
    runs = [TrainingRun(TrainingConfig.from_dict(config), folder) for config, folder in zip(configs, folders)]
    if len(runs) == 1:
        runs[0].train(progress=False)
    else:
        train_side_by_side(runs, progress=False)
    return (time.perf_counter() - start) / 60


def load_runs(folders: str | Path | Iterable[str | Path]) -> list[TrainingRun]:
    """Finished runs from their folders (config read from ``config.json``).

    ``folders`` is one folder or several; a grid folder (no ``config.json`` of its own, run
    folders inside) stands for all the runs in it, in name order. A run named twice is refused.
    """
    if isinstance(folders, (str, Path)):
        folders = [folders]
    expanded: list[Path] = []
    for f in map(Path, folders):
        if f.is_dir() and not (f / "config.json").exists():
            inside = sorted(p.parent for p in f.glob("*/config.json"))
            expanded.extend(inside or [f])
        else:
            expanded.append(f)
    seen: dict[Path, Path] = {}
    for f in expanded:
        first = seen.setdefault(f.resolve(), f)
        if first is not f:
            raise ValueError(f"The run in {f} is given twice (a grid folder stands for every run in it): give each "
                             "run once.")
    runs = []
    for f in expanded:
        if not (f / "config.json").exists():
            raise FileNotFoundError(f"{f} is not a training run folder (no config.json). Train one with `moralkit train`.")
        run = TrainingRun(TrainingConfig.from_folder(f), f)
        if not run.finished:
            raise ValueError(f"{f} holds an unfinished run ({run.config.label} vs {run.config.opponent}). Finish it "
                             "first: run the `moralkit grid` / `moralkit train` command or the notebook that started "
                             "it again; it resumes from its last checkpoint.")
        run.check_intact(adapters=False)  # evaluation says so itself when an adapter is missing
        runs.append(run)
    return runs


def evaluate_runs(
    runs: Sequence[TrainingRun],
    *,
    model=None,
    tokenizer=None,
    value_prompted: Sequence[str] = (),
    games: Sequence[str] | None = None,
    label_sets: Sequence[str] = ("test",),
    episodes: int = 10,
    seed: int = 100,
    progress: bool = True,
):
    """Evaluate finished runs (docs/science.md §6), each paired with the untuned base model.

    All adapters are loaded onto one copy of the base model (:func:`agent_players`) and played by
    the one evaluation loop, :func:`moralkit.evaluate.generalisation_grid`. ``value_prompted``
    adds base-model players told their values in words (``"utilitarian"``, ``"deontological"``).
    Returns an :class:`~moralkit.evaluate.Evaluation` whose rows carry each run's label as
    ``agent`` and its ``seed`` and training opponent (``opponent_trained``; ``"none"`` and seed
    -1 for players that were not fine-tuned).
    """
    from .evaluate import generalisation_grid
    from .games import EVALUATION_GAMES
    from .llm.agent import LLMPlayer

    peft_model, tokenizer, players = agent_players(runs, model=model, tokenizer=tokenizer)
    base = players.pop("no_finetuning")
    prompted = {f"prompted_{value}": LLMPlayer(peft_model, tokenizer, value_prompt=value, adapter=base.adapter)
                for value in value_prompted}
    ev = generalisation_grid(players, base=base, value_prompted=prompted, games=list(games or EVALUATION_GAMES),
                             label_sets=label_sets, episodes=episodes, seed=seed, progress=progress)
    by_player = {key: run for key, run in zip(players, runs)}
    rounds = ev.rounds
    driver_run = [by_player.get(driver) for driver in rounds["driver"]]
    rounds["opponent_trained"] = [run.config.opponent if run is not None else "none" for run in driver_run]
    rounds["seed"] = [run.config.seed if run is not None else -1 for run in driver_run]
    label = {key: run.config.label for key, run in by_player.items()}
    rounds["agent"] = rounds["agent"].replace(label)
    rounds["driver"] = rounds["driver"].replace(label)
    return ev


def _is_grid_folder(folder: Path) -> bool:
    """A folder holding at least one run folder (a grid writes its runs before its tables)."""
    return any(folder.glob("*/config.json"))


def run_grid(
    rewards: Sequence[str],
    opponents: Sequence[str] = ("tit_for_tat",),
    seeds: Sequence[int] | None = None,
    *,
    out: str | Path = "runs",
    profile: str | Profile | None = "auto",
    evaluate: bool = True,
    value_prompted: Sequence[str] = ("utilitarian", "deontological"),
    progress: bool = True,
    workers: int = 1,
    side_by_side: int = 1,
    **overrides,
):
    """Train the grid, evaluate it, and write the tables into ``out``.

    ``training.csv`` (:func:`training_table`), ``training_over_seeds.csv`` (the same per condition:
    mean over seeds with a 95% Student-t interval over seeds, and how many seeds meet the
    prediction: :func:`~moralkit.analysis.over_seeds`), ``unlearning.csv`` when a run switches rewards
    (:func:`unlearning_table`; removed when none of this grid's runs does), and with ``evaluate``: ``evaluation_rounds.csv`` (every evaluated
    round), ``generalisation.csv`` (:func:`~moralkit.analysis.generalisation_table`: every agent and
    baseline × the profile's evaluation games, the paper's values beside ours, seeds pooled) and
    ``generalisation_over_seeds.csv`` (:func:`~moralkit.analysis.generalisation_over_seeds`: each
    agent's means over the games, with an interval over seeds). ``workers``: train that many conditions at
    once; ``side_by_side``: that many in one process, their updates in shared passes (:func:`train_grid`). Returns (training table, generalisation table or None).
    """
    for name, value in (("workers", workers), ("side_by_side", side_by_side)):  # before the grid folder is made
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    prof = get_profile(profile)
    out = Path(out)
    claim_folder(out, marker=_is_grid_folder, kind="grid folder (no run folders inside)",
                 fix="Choose a new or empty folder for the grid (--out), or the folder of an earlier grid.")
    runs = train_grid(rewards, opponents, seeds if seeds is not None else prof.seeds, out=out, profile=prof,
                      progress=progress, workers=workers, side_by_side=side_by_side, **overrides)
    train_tab = training_table(runs)
    atomic_write(out / "training.csv", lambda p: train_tab.to_csv(p, index=False))
    by_seed = over_seeds(train_tab, ["agent", "opponent", "episodes", "predicted"])
    atomic_write(out / "training_over_seeds.csv", lambda p: by_seed.to_csv(p, index=False))
    if any(reward_switches(run.log) for run in runs):
        unlearn = unlearning_table(runs)
        atomic_write(out / "unlearning.csv", lambda p: unlearn.to_csv(p, index=False))
    else:  # a table left by an earlier grid in this folder would be read as this grid's
        (out / "unlearning.csv").unlink(missing_ok=True)
    table = None
    if evaluate:
        ev = evaluate_runs(runs, value_prompted=value_prompted, games=prof.eval_games, episodes=prof.eval_episodes,
                           seed=prof.eval_seed, progress=progress)
        atomic_write(out / "evaluation_rounds.csv", lambda p: ev.rounds.to_csv(p, index=False))
        table = generalisation_table(ev)
        atomic_write(out / "generalisation.csv", lambda p: table.to_csv(p, index=False))
        means = generalisation_over_seeds(ev)
        atomic_write(out / "generalisation_over_seeds.csv", lambda p: means.to_csv(p, index=False))
    return train_tab, table



# --------------------------------------------------------------------- generalisation (chapter 6)
def adapter_key(adapter_dir: str | Path) -> str:
    """The name a run's adapter gets on a shared model: its run folder's name and a hash of its path.

    >>> key = adapter_key("runs/game__tit_for_tat__seed0/adapter")
    >>> key.rsplit("_", 1)[0], len(key.rsplit("_", 1)[1])
    ('game__tit_for_tat__seed0_adapter', 8)
    """
    path = Path(adapter_dir).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return re.sub(r"\W", "_", f"{path.parent.name}_{path.name}") + "_" + digest


def agent_players(runs: Sequence[TrainingRun], *, model=None, tokenizer=None, labels: str = "test",
                  base_name: str = "no_finetuning"):
    """One base model, every run's adapter on it: ``(peft_model, tokenizer, players)``.

    ``players`` maps ``base_name`` (the untuned model: all adapters off) and each run's label
    (``game``, ``game_then_deontological`` …; ``_seed<k>`` appended when a label repeats) to an
    :class:`~moralkit.llm.agent.LLMPlayer`. Each adapter is named after its folder
    (:func:`adapter_key`), so passing the returned model to ``evaluate_runs(runs, model=...,
    tokenizer=...)`` loads nothing twice, and evaluating other runs on it later adds their adapters
    beside these without touching them.
    """
    from .llm.adapters import BASE, attach_adapters
    from .llm.agent import LLMPlayer
    from .llm.models import load_model

    if model is None:
        model, tokenizer = load_model(runs[0].config.model if runs else "embedded")
    elif tokenizer is None:
        raise ValueError("Pass the tokenizer together with the model.")
    names = {adapter_key(run.adapter_dir): run.adapter_dir for run in runs}
    peft_model = attach_adapters(model, names) if names else model
    players = {base_name: LLMPlayer(peft_model, tokenizer, labels, adapter=BASE if names else None)}
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.config.label] = counts.get(run.config.label, 0) + 1
    for adapter, run in zip(names, runs):
        key = run.config.label if counts[run.config.label] == 1 else f"{run.config.label}_seed{run.config.seed}"
        if key in players:
            raise ValueError(f"Two runs would both be called {key!r}; pass runs that differ in reward or seed.")
        players[key] = LLMPlayer(peft_model, tokenizer, labels, adapter=adapter)
    return peft_model, tokenizer, players


__all__ += ["agent_players"]


# --------------------------------------------------------------------- PPO vs GRPO
_MEASUREMENTS = "measurements.json"


def _measure_one(config: dict, folder: str, threads: int) -> dict:
    """Worker process: train one run; returns this process's peak memory (MiB) and its device."""
    import resource

    import torch

    from .profiles import configure_threads

    configure_threads(threads)
    TrainingRun(TrainingConfig.from_dict(config), folder).train(progress=False)
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def compare_algorithms(rewards: Sequence[str], algorithms: Sequence[str] = ("ppo", "grpo"), *,
                       out: str | Path = "runs/ppo_vs_grpo", opponent: str = "tit_for_tat",
                       seeds: Sequence[int] = (0,), profile: str | Profile | None = "auto",
                       progress: bool = True, grpo_overrides_for_grpo: dict | None = None, **overrides):
    """Train every reward with every algorithm and seed on the same machine, one run at a time; returns the table.

    Each run trains in a process of its own (so its peak memory is its own) into
    ``out/<algorithm>/<run folder>``; finished runs are skipped and unfinished ones resume, so the
    same call continues a killed comparison. Peak memory per run is kept in ``out/measurements.json``
    (the largest over the sessions a resumed run took). The table (:func:`algorithm_table`) is
    written to ``out/ppo_vs_grpo.csv``, one row per run (``seed`` names its training seed), and
    the mean over seeds of each reward and algorithm with its 95% interval over seeds
    (:func:`~moralkit.analysis.over_seeds`; no interval with one seed) to
    ``out/ppo_vs_grpo_over_seeds.csv``. ``overrides`` apply to every run; ``grpo_overrides_for_grpo`` (fields of
    :class:`moralkit.grpo.GRPOSettings`) to the GRPO runs only.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be one or more distinct integers, got {seeds!r}")
    prof = get_profile(profile)
    out = Path(out)
    claim_folder(out, marker=_MEASUREMENTS, kind="algorithm comparison folder (no measurements.json)",
                 fix="Choose a new or empty folder (--out), or the folder of an earlier comparison.")
    path = out / _MEASUREMENTS
    measured = read_json(path) if path.exists() else {}
    write_json(path, measured)
    runs = {}
    for reward, seed, algorithm in itertools.product(rewards, seeds, algorithms):
        extra = {"grpo_overrides": dict(grpo_overrides_for_grpo)} if algorithm == "grpo" and grpo_overrides_for_grpo else {}
        cfg = condition_config(reward, opponent, seed, prof, algorithm=algorithm, **extra, **dict(overrides))
        runs[(reward, seed, algorithm)] = run = TrainingRun(cfg, run_folder(out / algorithm, cfg))
        key = f"{algorithm}/{run.folder.name}"
        if run.finished:
            if progress:
                print(f"[moralkit] {key}: finished earlier, skipped")
            continue
        if progress:
            print(f"[moralkit] {key}: training ({cfg.episodes} updates)", flush=True)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            result = pool.submit(_measure_one, cfg.to_dict(), str(run.folder), prof.threads).result()
        before = measured.get(key, {})
        measured[key] = {**result, **{k: max(result[k], before.get(k, 0.0)) for k in ("peak_rss_mb", "peak_gpu_mb") if k in result}}
        write_json(path, measured)
    table = algorithm_table(list(runs.values()), measured)
    atomic_write(out / "ppo_vs_grpo.csv", lambda p: table.to_csv(p, index=False))
    spread = over_seeds(table, ["reward", "algorithm", "opponent"])
    atomic_write(out / "ppo_vs_grpo_over_seeds.csv", lambda p: spread.to_csv(p, index=False))
    return table


def algorithm_table(runs: Sequence[TrainingRun], measured: dict | None = None):
    """One row per run: reward, algorithm, rounds to criterion, minutes, rounds/s, peak memory, final behaviour.

    ``rounds_to_criterion`` (:func:`~moralkit.analysis.rounds_to_criterion`): training rounds until
    the prediction first held over a trailing 20% of the episodes (empty: never); ``minutes`` and
    ``rounds_per_s``: time in the episodes (play + update), model loading excluded; ``peak_rss_mb``
    (``peak_gpu_mb`` on a GPU): the training process's peak; the behaviour columns and ``meets``
    are over the last 20% of training, as in :func:`~moralkit.analysis.training_table`.
    """
    import pandas as pd

    measured = measured or {}
    verdicts = training_table(runs)
    rows = []
    for run, verdict in zip(runs, verdicts.to_dict("records")):
        c, log, updates = run.config, run.log, run.updates
        seconds = float(updates["seconds"].sum()) if "seconds" in updates else float("nan")
        summary = training_summary(log)
        m = measured.get(f"{c.algorithm}/{run.folder.name}", {})
        rows.append({
            "reward": c.label, "algorithm": c.algorithm, "opponent": c.opponent, "seed": c.seed,
            "episodes": c.episodes,
            "rounds": int(len(log)),
            "rounds_to_criterion": rounds_to_criterion(log, c.phases[-1][0], c.opponent, game=c.game, xi=c.xi),
            "minutes": round(seconds / 60, 2), "rounds_per_s": round(len(log) / seconds, 2) if seconds else float("nan"),
            "peak_rss_mb": round(m["peak_rss_mb"]) if "peak_rss_mb" in m else None,
            "peak_gpu_mb": round(m["peak_gpu_mb"]) if "peak_gpu_mb" in m else None,
            "device": m.get("device", ""),
            **{k: summary.get(k) for k in ("D", "C", "legal", "C_after_C", "D_after_C", "C_after_D", "D_after_D")},
            "predicted": verdict["predicted"], "meets": verdict["meets"],
        })
    return pd.DataFrame(rows)
