"""Condition grids: train rewards × opponents × seeds, evaluate them, write one tidy table.

A *condition* is a reward (or a schedule such as ``"game->deontological"``), an opponent and a
seed. :func:`train_grid` trains each condition into its own run folder (resuming unfinished
runs, skipping finished ones), :func:`evaluate_runs` evaluates finished runs with the protocol
of SPEC §6 (paired with the untuned base model), and :func:`run_grid` does both and writes
``training.csv``, ``unlearning.csv``, ``evaluation_rounds.csv`` and ``generalisation.csv`` into
the grid folder.

Schedules are written ``A->B`` (half the episodes each) or ``A:30,B:30`` (explicit lengths).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

from .opponents import get_opponent
from .profiles import Profile, get_profile
from .rewards import get_reward
from .training import LEARNER, PREDICTIONS, TrainingConfig, TrainingRun, training_summary
from .storage import atomic_write

__all__ = ["PAPER_AGENTS", "parse_reward_spec", "condition_config", "run_folder", "train_grid", "evaluate_runs", "run_grid", "load_runs"]

PAPER_AGENTS: tuple[str, ...] = (
    "game",
    "deontological",
    "utilitarian",
    "game_deontological",
    "game->deontological",
    "game->utilitarian",
)
"""The paper's six fine-tuned agents (SPEC §5-6): four rewards and two unlearning schedules."""


def _outside_parentheses(spec: str) -> str:
    """``spec`` without what stands inside parentheses (an aggregate's stakeholder list)."""
    out, depth = [], 0
    for ch in spec:
        depth += ch == "("
        if depth == 0:
            out.append(ch)
        depth -= ch == ")" and depth > 0
    return "".join(out)


def _split_outside_parentheses(spec: str) -> list[str]:
    """Split at commas that are not inside parentheses: ``"maxmin(a,b):5,game:5"`` → two parts."""
    parts, depth, current = [], 0, ""
    for ch in spec:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def parse_reward_spec(spec: str, episodes: int, switch_at: float = 0.5) -> tuple[tuple[str, int], ...] | None:
    """``"game"`` → None (a single reward); ``"game->deontological"`` → the first reward for the
    share ``switch_at`` of the episodes (0.5: equal halves), the second for the rest (three or more
    rewards: equal parts); ``"game:30,deontological:30"`` → explicit lengths.

    >>> parse_reward_spec("game->deontological", 40)
    (('game', 20), ('deontological', 20))
    >>> parse_reward_spec("game->deontological", 40, switch_at=0.2)
    (('game', 8), ('deontological', 32))
    >>> parse_reward_spec("maxmin(game,deontological)", 40) is None     # an aggregate is one reward
    True
    """
    spec = spec.strip()
    if "->" in spec:
        names = [s.strip() for s in spec.split("->")]
        if not 0 < switch_at < 1:
            raise ValueError(f"switch_at is a share of the run strictly between 0 and 1, got {switch_at}.")
        if len(names) == 2 and episodes >= 2:
            first = min(max(round(episodes * switch_at), 1), episodes - 1)
            return ((names[0], first), (names[1], episodes - first))
        base, extra = divmod(episodes, len(names))
        return tuple((n, base + (1 if i < extra else 0)) for i, n in enumerate(names))
    if ":" in spec or "," in _outside_parentheses(spec):
        out = []
        for part in _split_outside_parentheses(spec):
            name, _, n = part.partition(":")
            if not n:
                raise ValueError(f"Schedule part {part!r} needs a length, e.g. 'game:30,deontological:30'.")
            out.append((name.strip(), int(n)))
        return tuple(out)
    return None


def condition_config(reward: str, opponent: str, seed: int, profile: Profile, **overrides) -> TrainingConfig:
    """The training config of one condition under a profile (``overrides`` win).

    An ``"A->B"`` schedule switches after the profile's share ``switch_at`` of the episodes (the
    ``cpu`` profile: 15%, see :mod:`moralkit.profiles`); pass ``switch_at=`` to choose. Reward and
    opponent aliases are resolved to their canonical names, so ``"de"`` against ``"tft"`` reuses the
    run of ``"deontological"`` against ``"tit_for_tat"``; an unknown name raises with the valid ones.
    """
    episodes = overrides.pop("episodes", profile.train_episodes)
    schedule = parse_reward_spec(reward, episodes, overrides.pop("switch_at", profile.switch_at))
    # canonical names: "de" and "deontological", "tft" and "tit_for_tat" are one condition, one run folder
    if schedule is not None:
        schedule = tuple((get_reward(name).name, n) for name, n in schedule)
    base = dict(
        reward=get_reward(reward).name if schedule is None else schedule[0][0],
        schedule=schedule,
        opponent=opponent if opponent == LEARNER else get_opponent(opponent).name,
        episodes=episodes,
        games_per_update=profile.games_per_update,
        rounds=profile.rounds if opponent != LEARNER else min(profile.rounds, 3),
        preset=profile.ppo_preset,
        model=profile.model,
        seed=seed,
        checkpoint_every=profile.checkpoint_every,
    )
    base.update(overrides)
    return TrainingConfig(**base)


def run_folder(root: str | Path, config: TrainingConfig) -> Path:
    """``<root>/<reward label>__<opponent>__seed<k>`` (readable and unique per condition)."""
    opp = config.opponent.replace(":", "-")
    label = re.sub(r"[^\w.+-]+", "_", config.label).strip("_")  # maxmin(game,de) -> maxmin_game_de
    return Path(root) / f"{label}__{opp}__seed{config.seed}"


def train_grid(
    rewards: Sequence[str],
    opponents: Sequence[str] = ("tit_for_tat",),
    seeds: Sequence[int] = (0,),
    *,
    out: str | Path = "runs",
    profile: str | Profile | None = "auto",
    progress: bool = True,
    workers: int = 1,
    **overrides,
) -> list[TrainingRun]:
    """Train every condition (finished ones are skipped, unfinished ones resume).

    ``workers > 1`` trains that many conditions at once, each in a process of its own on the same
    device: a GPU runs a small model's many short kernels for several runs side by side (one run
    leaves it idle most of the time), a CPU splits its cores between them. If a condition fails, the
    others still finish and the error names it; the same call resumes it.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    prof = get_profile(profile)
    runs = []
    for reward in rewards:
        for opponent in opponents:
            for seed in seeds:
                cfg = condition_config(reward, opponent, seed, prof, **dict(overrides))
                runs.append(TrainingRun(cfg, run_folder(out, cfg)))
    todo = [run for run in runs if not run.finished]
    if progress:
        for run in runs:
            if run.finished:
                print(f"[moralkit] {run.folder.name}: finished earlier, skipped")
    if workers == 1 or len(todo) <= 1:
        for run in todo:
            run.train(progress=progress)
            run.release()
    else:
        _train_in_processes(todo, workers, progress)
    return runs


def _train_in_processes(runs: Sequence[TrainingRun], workers: int, progress: bool) -> None:
    """Train ``runs`` in up to ``workers`` processes at once (spawned: safe with CUDA)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    workers = min(workers, len(runs))
    threads = max(1, (os.cpu_count() or 1) // workers)  # CPU cores shared out between the runs
    failed = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool, tqdm(
        total=len(runs), disable=not progress, desc=f"grid: {len(runs)} run(s), {workers} at a time", unit="run"
    ) as bar:
        futures = {pool.submit(_train_one, run.config.to_dict(), str(run.folder), threads): run for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                minutes = future.result()
                bar.write(f"[moralkit] {run.folder.name}: trained ({minutes:.1f} min)")
            except Exception as exc:  # noqa: BLE001 -- reported below, the other runs go on
                failed.append(f"{run.folder.name}: {type(exc).__name__}: {exc}")
            bar.update(1)
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(runs)} run(s) failed:\n  " + "\n  ".join(failed)
            + "\nThe others finished. Fix the cause and run the same command again: it resumes the failed runs."
        )


def _train_one(config: dict, folder: str, threads: int) -> float:
    """Worker process: train one condition into ``folder``; returns the minutes it took."""
    import time

    from .profiles import configure_threads

    configure_threads(threads)
    start = time.perf_counter()
    TrainingRun(TrainingConfig.from_dict(config), folder).train(progress=False)
    return (time.perf_counter() - start) / 60


def load_runs(folders: str | Path | Iterable[str | Path]) -> list[TrainingRun]:
    """Finished runs from their folders (config read from ``config.json``).

    ``folders`` is one folder or several; a grid folder (no ``config.json`` of its own, run
    folders inside) stands for all the runs in it, in name order.
    """
    import json

    if isinstance(folders, (str, Path)):
        folders = [folders]
    expanded: list[Path] = []
    for f in map(Path, folders):
        if f.is_dir() and not (f / "config.json").exists():
            inside = sorted(p.parent for p in f.glob("*/config.json"))
            expanded.extend(inside or [f])
        else:
            expanded.append(f)
    runs = []
    for f in expanded:
        if not (f / "config.json").exists():
            raise FileNotFoundError(f"{f} is not a training run folder (no config.json). Train one with `moralkit train`.")
        run = TrainingRun(TrainingConfig.from_dict(json.loads((f / "config.json").read_text())), f)
        if not run.finished:
            raise ValueError(f"{f} holds an unfinished run ({run.config.label} vs {run.config.opponent}). Finish it "
                             "first: run the `moralkit grid` / `moralkit train` command or the notebook that started "
                             "it again; it resumes from its last checkpoint.")
        runs.append(run)
    return runs


def training_table(runs: Sequence[TrainingRun], last: float = 0.2):
    """One row per run: condition, behaviour over the last ``last`` of training, cost and verdict.

    ``minutes`` is the time spent in the run's episodes (rollouts + PPO updates, summed over
    sessions if it was resumed; loading the model is not included). Against Tit-for-Tat,
    ``predicted``/``meets`` give SPEC §5's prediction for the reward the run ends with and whether
    the run meets it (:data:`~moralkit.training.PREDICTIONS`); otherwise they are empty.
    """
    import pandas as pd

    rows = []
    for run in runs:
        c = run.config
        summary = training_summary(run.log, last)
        against_tft = c.opponent != LEARNER and get_opponent(c.opponent).name == "tit_for_tat"
        prediction = PREDICTIONS.get(get_reward(c.phases[-1][0]).name) if against_tft else None
        updates = run.updates
        minutes = float(updates["seconds"].sum()) / 60 if "seconds" in updates else float("nan")
        rows.append({"agent": c.label, "opponent": c.opponent, "seed": c.seed, "episodes": c.episodes,
                     **summary, "minutes": round(minutes, 1),
                     "predicted": prediction.text if prediction else "",
                     "meets": prediction.holds(summary) if prediction else None})
    return pd.DataFrame(rows)


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
    """Evaluate finished runs (SPEC §6), each paired with the untuned base model.

    All adapters are loaded onto one copy of the base model. ``value_prompted`` adds base-model
    players told their values in words (``"utilitarian"``, ``"deontological"``).
    Returns an :class:`~moralkit.evaluate.Evaluation`; its rows carry the run's seed and opponent.
    """
    import pandas as pd

    from .evaluate import Evaluation, evaluate
    from .games import EVALUATION_GAMES
    from .llm.adapters import attach_adapters
    from .llm.agent import LLMPlayer
    from .llm.models import load_model

    if model is None:
        model, tokenizer = load_model(runs[0].config.model if runs else "embedded")
    names = {f"run{i}": run.adapter_dir for i, run in enumerate(runs)}
    peft_model = attach_adapters(model, names) if names else model
    base = LLMPlayer(peft_model, tokenizer, adapter="base" if names else None)
    games = list(games or EVALUATION_GAMES)
    parts = []
    for labels in label_sets:
        for (adapter, _), run in zip(names.items(), runs):
            player = LLMPlayer(peft_model, tokenizer, run.config.labels, adapter=adapter)
            ev = evaluate(player, name=run.config.label, baselines={"no_finetuning": base}, games=games,
                          labels=labels, episodes=episodes, seed=seed, progress=progress)
            parts.append(ev.rounds.assign(opponent_trained=run.config.opponent, seed=run.config.seed))
        for value in value_prompted:
            player = LLMPlayer(peft_model, tokenizer, value_prompt=value, adapter="base" if names else None)
            ev = evaluate(player, name=f"prompted_{value}", games=games, labels=labels, episodes=episodes, seed=seed, progress=progress)
            parts.append(ev.rounds.assign(opponent_trained="none", seed=-1))
        if not runs:
            ev = evaluate(base, name="no_finetuning", games=games, labels=labels, episodes=episodes, seed=seed, progress=progress)
            parts.append(ev.rounds.assign(opponent_trained="none", seed=-1))
    rounds = pd.concat(parts, ignore_index=True)
    return Evaluation(rounds, ev.xi, ev.r_illegal)


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
    **overrides,
):
    """Train the grid, evaluate it, and write the tables into ``out``.

    ``training.csv`` (:func:`training_table`), ``unlearning.csv`` when a run switches rewards
    (:func:`unlearning_table`; removed when none of this grid's runs does), and with ``evaluate``: ``evaluation_rounds.csv`` (every evaluated
    round) and ``generalisation.csv`` (:func:`generalisation_table`: every agent and baseline ×
    the five games, the paper's values beside ours). ``workers``: train that many conditions at
    once (:func:`train_grid`). Returns (training table, generalisation table or None).
    """
    prof = get_profile(profile)
    runs = train_grid(rewards, opponents, seeds if seeds is not None else prof.seeds, out=out, profile=prof,
                      progress=progress, workers=workers, **overrides)
    out = Path(out)
    train_tab = training_table(runs)
    atomic_write(out / "training.csv", lambda p: train_tab.to_csv(p, index=False))
    if any(reward_switches(run.log) for run in runs):
        unlearn = unlearning_table(runs)
        atomic_write(out / "unlearning.csv", lambda p: unlearn.to_csv(p, index=False))
    else:  # a table left by an earlier grid in this folder would be read as this grid's
        (out / "unlearning.csv").unlink(missing_ok=True)
    table = None
    if evaluate:
        ev = evaluate_runs(runs, value_prompted=value_prompted, episodes=prof.eval_episodes, seed=prof.eval_seed,
                           progress=progress)
        atomic_write(out / "evaluation_rounds.csv", lambda p: ev.rounds.to_csv(p, index=False))
        table = generalisation_table(ev)
        atomic_write(out / "generalisation.csv", lambda p: table.to_csv(p, index=False))
    return train_tab, table



# --------------------------------------------------------------------- unlearning (chapter 5)
def reward_switches(log) -> list[int]:
    """Episodes at which the training reward changes: the first episode of each later phase.

    ``log`` is a training log (:attr:`TrainingRun.log`) with ``episode`` and ``train_reward``;
    a run with one reward has none (``[]``).
    """
    if len(log) == 0 or "train_reward" not in log.columns:
        return []
    per_episode = log.groupby("episode")["train_reward"].first().sort_index()
    changed = per_episode.ne(per_episode.shift()) & per_episode.shift().notna()
    return [int(e) for e in per_episode.index[changed]]


def _switch_windows(log, switch_episode: int | None, last: float) -> dict[str, tuple[int, int]]:
    """``{"before switch": (first, last), "end": (first, last)}`` episode ranges (inclusive)."""
    import math

    if not 0 < last <= 1:
        raise ValueError(f"last must be a fraction in (0, 1], got {last}.")
    if len(log) == 0:
        raise ValueError("The log is empty: train the run first.")
    n = int(log["episode"].max()) + 1
    if switch_episode is None:
        switches = reward_switches(log)
        if not switches:
            raise ValueError("This log has no reward switch; pass switch_episode (or train a schedule such as "
                             "'game->deontological').")
        switch_episode = switches[0]
    switch = int(switch_episode)
    if not 0 < switch < n:
        raise ValueError(f"switch_episode must lie inside the run (1 … {n - 1}), got {switch}.")
    start_before = min(math.floor(switch * (1 - last)), switch - 1)
    start_end = max(min(math.floor(n * (1 - last)), n - 1), switch)
    return {"before switch": (start_before, switch - 1), "end": (start_end, n - 1)}


def phase_shares(log, switch_episode: int | None = None, last: float = 0.2):
    """The unlearning metric: behaviour just before the reward switch and at the end of training.

    Two windows of the training log, each the last ``last`` fraction of a stretch of episodes
    (at least one episode): **before switch** = the last ``last`` of the episodes before
    ``switch_episode`` (default: the run's first reward switch); **end** = the last ``last`` of
    all episodes (as :func:`~moralkit.training.training_summary`; never before the switch).

    Returns one row per window: ``window``, ``first_episode``, ``last_episode``, ``rounds``, the
    five action-type shares (``C|C`` … ``illegal``, adding up to 1), ``legal``, and the
    conditional shares ``C_after_C`` and ``D_after_C`` (C or D right after the opponent's C,
    among all answers in that state, illegal ones included; NaN when the state never occurred).
    """
    import pandas as pd

    from .env import ACTION_TYPES

    rows = []
    for window, (first, last_ep) in _switch_windows(log, switch_episode, last).items():
        part = log[(log["episode"] >= first) & (log["episode"] <= last_ep)]
        shares = part["action_type"].value_counts(normalize=True).reindex(list(ACTION_TYPES), fill_value=0.0)
        after_c = part[part["opp_prev"] == "C"]
        rows.append({
            "window": window,
            "first_episode": first,
            "last_episode": last_ep,
            "rounds": int(len(part)),
            **{t: float(shares[t]) for t in ACTION_TYPES},
            "legal": float((part["my_move"] != "illegal").mean()) if len(part) else float("nan"),
            "C_after_C": float((after_c["my_move"] == "C").mean()) if len(after_c) else float("nan"),
            "D_after_C": float((after_c["my_move"] == "D").mean()) if len(after_c) else float("nan"),
        })
    return pd.DataFrame(rows)


UNLEARNING_GAIN = 0.30
"""Least rise of the C|C share from just before the switch to the end (issue #5's bar)."""
UNLEARNING_MAX_EXPLOIT = 0.10
"""Greatest D|C share at the end of an unlearning run (issue #5's bar)."""


def unlearning_table(runs: Sequence[TrainingRun], last: float = 0.2):
    """One row per run that switches rewards: :func:`phase_shares` before the switch and at the end.

    Columns: ``agent``, ``opponent``, ``seed``, ``switch_episode``, ``CC_before``, ``CC_end``,
    ``CC_gain`` (end − before), ``DC_before``, ``DC_end`` (shares of the action types C|C and
    D|C among all rounds of each window), ``legal_end``, ``C_after_C_end``, and ``unlearned``:
    whether the C|C share rose by at least :data:`UNLEARNING_GAIN` and D|C ended below
    :data:`UNLEARNING_MAX_EXPLOIT`. Runs without a switch are left out.
    """
    import pandas as pd

    rows = []
    for run in runs:
        log = run.log
        switches = reward_switches(log)
        if not switches:
            continue
        shares = phase_shares(log, switches[0], last).set_index("window")
        before, end = shares.loc["before switch"], shares.loc["end"]
        gain = float(end["C|C"] - before["C|C"])
        rows.append({
            "agent": run.config.label, "opponent": run.config.opponent, "seed": run.config.seed,
            "switch_episode": switches[0],
            "CC_before": round(float(before["C|C"]), 4), "CC_end": round(float(end["C|C"]), 4),
            "CC_gain": round(gain, 4),
            "DC_before": round(float(before["D|C"]), 4), "DC_end": round(float(end["D|C"]), 4),
            "legal_end": round(float(end["legal"]), 4), "C_after_C_end": round(float(end["C_after_C"]), 4),
            "unlearned": bool(gain >= UNLEARNING_GAIN and end["D|C"] < UNLEARNING_MAX_EXPLOIT),
        })
    return pd.DataFrame(rows, columns=["agent", "opponent", "seed", "switch_episode", "CC_before", "CC_end", "CC_gain",
                                       "DC_before", "DC_end", "legal_end", "C_after_C_end", "unlearned"])


def state_policy(log, first_episode: int = 0, last_episode: int | None = None):
    """What the player actually answered in each memory-1 state, from a training log.

    The sampled counterpart of :meth:`~moralkit.llm.agent.LLMPlayer.policy_table`, over the
    episodes ``first_episode … last_episode`` (inclusive; default: to the end). Same columns
    (``my_prev``, ``opp_prev``, ``P(C)``, ``P(D)``, ``P(illegal)``: shares of the answers given
    in that state) plus ``rounds``; a state that never occurred has ``rounds`` 0 and NaN shares.
    Useful where no checkpoint is left, e.g. "at the reward switch" of an unlearning run.
    """
    import pandas as pd

    part = log[log["episode"] >= first_episode]
    if last_episode is not None:
        part = part[part["episode"] <= last_episode]
    rows = []
    for my_prev in ("C", "D"):
        for opp_prev in ("C", "D"):
            moves = part.loc[(part["my_prev"] == my_prev) & (part["opp_prev"] == opp_prev), "my_move"]
            n = len(moves)
            share = (lambda m: float((moves == m).mean())) if n else (lambda m: float("nan"))
            rows.append({"my_prev": my_prev, "opp_prev": opp_prev, "P(C)": share("C"), "P(D)": share("D"),
                         "P(illegal)": share("illegal"), "rounds": n})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------- two learners (chapter 5)
def opponent_log(log):
    """A two-learner training log seen from the second learner (O), with O as the row player.

    Swaps every M/O column pair (previous moves, moves, payoffs, rewards ``reward_*`` ↔
    ``opp_reward_*``, answers) and recomputes ``action_type`` as O's move given M's previous
    move, so every function that reads a training log (``training_summary``, the plots) works
    for the second learner too.
    """
    from .env import action_types
    from .games import C, D, ILLEGAL

    if "opp_answer" not in log.columns and not any(c.startswith("opp_reward_") for c in log.columns):
        raise ValueError("This is not a two-learner log (no opp_answer / opp_reward_* columns); "
                         "train with opponent='learner'.")
    pairs = [("my_prev", "opp_prev"), ("my_move", "opp_move"), ("my_payoff", "opp_payoff"), ("answer", "opp_answer")]
    pairs += [(c, "opp_" + c) for c in log.columns if c.startswith("reward_") and "opp_" + c in log.columns]
    mapping = {}
    for a, b in pairs:
        if a in log.columns and b in log.columns:
            mapping[a], mapping[b] = b, a
    out = log.rename(columns=mapping)[list(log.columns)].copy()
    code = {"C": C, "D": D, "illegal": ILLEGAL}
    out["action_type"] = action_types(out["my_move"].map(code).to_numpy(), out["opp_prev"].map(code).to_numpy())
    return out


# --------------------------------------------------------------------- generalisation (chapter 6)
def agent_players(runs: Sequence[TrainingRun], *, model=None, tokenizer=None, labels: str = "test",
                  base_name: str = "no_finetuning"):
    """One base model, every run's adapter on it: ``(peft_model, tokenizer, players)``.

    ``players`` maps ``base_name`` (the untuned model: all adapters off) and each run's label
    (``game``, ``game_then_deontological`` …; ``_seed<k>`` appended when a label repeats) to an
    :class:`~moralkit.llm.agent.LLMPlayer`. The adapters get the names :func:`evaluate_runs` uses,
    so passing the returned model to ``evaluate_runs(runs, model=..., tokenizer=...)`` loads nothing twice.
    """
    from .llm.adapters import BASE, attach_adapters
    from .llm.agent import LLMPlayer
    from .llm.models import load_model

    if model is None:
        model, tokenizer = load_model(runs[0].config.model if runs else "embedded")
    elif tokenizer is None:
        raise ValueError("Pass the tokenizer together with the model.")
    names = {f"run{i}": run.adapter_dir for i, run in enumerate(runs)}
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


def agent_kind(agent: str) -> str:
    """``"untuned"``, ``"prompted"`` or ``"fine-tuned"`` for an agent name of an evaluation."""
    if agent == "no_finetuning":
        return "untuned"
    if str(agent).startswith("prompted_"):
        return "prompted"
    return "fine-tuned"


def generalisation_table(evaluation, reference=None):
    """The generalisation table: one row per agent × game × label set (tidy).

    Columns: ``agent``, ``kind`` (:func:`agent_kind`), ``game``, ``labels``, ``rounds``, the two
    regrets with the paper's values beside them (``paper_*``; NaN where the paper has none, e.g.
    for other label sets than ``test``), the five action-type shares, ``mean_payoff`` (the agent's
    own mean payoff, an illegal answer counting as R_illegal) and ``C_among_legal`` (the share of
    the first action among legal answers: 1 for an agent that always picks the first action, which
    is the bad one in the Defective Coordination game).
    """
    from .env import ACTION_TYPES
    from .evaluate import compare_with_paper

    summary = evaluation.summary
    compared = compare_with_paper(summary, reference)
    keys = ["agent", "game", "labels"]
    out = compared.merge(summary[keys + ["rounds", "mean_payoff"]], on=keys, how="left")
    legal = 1.0 - out["illegal"]
    out["C_among_legal"] = ((out["C|C"] + out["C|D"]) / legal).where(legal > 0)
    out.insert(1, "kind", out["agent"].map(agent_kind))
    columns = ["agent", "kind", "game", "labels", "rounds", "deont_regret", "paper_deont_regret", "utilit_regret",
               "paper_utilit_regret", *ACTION_TYPES, "mean_payoff", "C_among_legal"]
    return out[columns]


__all__ += ["training_table", "reward_switches", "phase_shares", "unlearning_table", "state_policy", "opponent_log", "agent_players",
            "agent_kind", "generalisation_table"]
