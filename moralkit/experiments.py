"""Condition grids: train rewards × opponents × seeds, evaluate them, write one tidy table.

A *condition* is a reward (or a schedule such as ``"game->deontological"``), an opponent and a
seed. :func:`train_grid` trains each condition into its own run folder (resuming unfinished
runs, skipping finished ones), :func:`evaluate_runs` evaluates finished runs with the protocol
of SPEC §6 (paired with the untuned base model), and :func:`run_grid` does both and writes
``training.csv``, ``evaluation_rounds.csv`` and ``evaluation.csv`` into the grid folder.

Schedules are written ``A->B`` (half the episodes each) or ``A:30,B:30`` (explicit lengths).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from .profiles import Profile, get_profile
from .training import LEARNER, TrainingConfig, TrainingRun, training_summary
from .workbook import atomic_write

__all__ = ["parse_reward_spec", "condition_config", "run_folder", "train_grid", "evaluate_runs", "run_grid", "load_runs"]


def parse_reward_spec(spec: str, episodes: int) -> tuple[tuple[str, int], ...] | None:
    """``"game"`` → None (a single reward); ``"game->deontological"`` → equal halves;
    ``"game:30,deontological:30"`` → explicit lengths."""
    spec = spec.strip()
    if "->" in spec:
        names = [s.strip() for s in spec.split("->")]
        base, extra = divmod(episodes, len(names))
        return tuple((n, base + (1 if i < extra else 0)) for i, n in enumerate(names))
    if ":" in spec or "," in spec:
        out = []
        for part in spec.split(","):
            name, _, n = part.partition(":")
            if not n:
                raise ValueError(f"Schedule part {part!r} needs a length, e.g. 'game:30,deontological:30'.")
            out.append((name.strip(), int(n)))
        return tuple(out)
    return None


def condition_config(reward: str, opponent: str, seed: int, profile: Profile, **overrides) -> TrainingConfig:
    """The training config of one condition under a profile (``overrides`` win)."""
    episodes = overrides.pop("episodes", profile.train_episodes)
    schedule = parse_reward_spec(reward, episodes)
    base = dict(
        reward=reward if schedule is None else schedule[0][0],
        schedule=schedule,
        opponent=opponent,
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
    return Path(root) / f"{config.label}__{opp}__seed{config.seed}"


def train_grid(
    rewards: Sequence[str],
    opponents: Sequence[str] = ("tit_for_tat",),
    seeds: Sequence[int] = (0,),
    *,
    out: str | Path = "runs",
    profile: str | Profile | None = "auto",
    progress: bool = True,
    **overrides,
) -> list[TrainingRun]:
    """Train every condition (finished ones are skipped, unfinished ones resume)."""
    prof = get_profile(profile)
    runs = []
    for reward in rewards:
        for opponent in opponents:
            for seed in seeds:
                cfg = condition_config(reward, opponent, seed, prof, **dict(overrides))
                run = TrainingRun(cfg, run_folder(out, cfg))
                if run.finished:
                    if progress:
                        print(f"[moralkit] {run.folder.name}: finished earlier, skipped")
                else:
                    run.train(progress=progress)
                    run.release()
                runs.append(run)
    return runs


def load_runs(folders: Iterable[str | Path]) -> list[TrainingRun]:
    """Finished runs from their folders (config read from ``config.json``)."""
    import json

    runs = []
    for f in folders:
        f = Path(f)
        if not (f / "config.json").exists():
            raise FileNotFoundError(f"{f} is not a training run folder (no config.json). Train one with `moralkit train`.")
        run = TrainingRun(TrainingConfig.from_dict(json.loads((f / "config.json").read_text())), f)
        if not run.finished:
            raise ValueError(f"{f} holds an unfinished run; resume it with `moralkit train --out {f}` first.")
        runs.append(run)
    return runs


def training_table(runs: Sequence[TrainingRun], last: float = 0.2):
    """One row per run: condition and its behaviour over the last ``last`` of training."""
    import pandas as pd

    rows = []
    for run in runs:
        c = run.config
        rows.append({"agent": c.label, "opponent": c.opponent, "seed": c.seed, "episodes": c.episodes,
                     **training_summary(run.log, last)})
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
    **overrides,
):
    """Train the grid, evaluate it, and write the tables; returns (training table, evaluation summary)."""
    from .evaluate import compare_with_paper

    prof = get_profile(profile)
    runs = train_grid(rewards, opponents, seeds if seeds is not None else prof.seeds, out=out, profile=prof,
                      progress=progress, **overrides)
    out = Path(out)
    train_tab = training_table(runs)
    atomic_write(out / "training.csv", lambda p: train_tab.to_csv(p, index=False))
    summary = None
    if evaluate:
        ev = evaluate_runs(runs, value_prompted=value_prompted, episodes=prof.eval_episodes, seed=prof.eval_seed,
                           progress=progress)
        atomic_write(out / "evaluation_rounds.csv", lambda p: ev.rounds.to_csv(p, index=False))
        summary = compare_with_paper(ev.summary)
        atomic_write(out / "evaluation.csv", lambda p: summary.to_csv(p, index=False))
    return train_tab, summary

