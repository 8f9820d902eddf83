"""The ``moralkit`` command.

    moralkit workbook [--profile smoke|cpu|gpu|paper|auto] [--out outputs] [--only 01 02] [--notebooks DIR]
    moralkit site [--workbook outputs] [--out outputs/site]   # the executed workbook as a static site
    moralkit games                      # the catalogue with its game-theoretic facts
    moralkit rewards [--game NAME]      # every moral reward as a table
    moralkit q-learning --reward game --opponent tit_for_tat [--gamma 0.9]
    moralkit train --reward deontological --opponent tit_for_tat [--episodes 60] [--out runs/deont]
    moralkit evaluate runs/deont runs/game [--value-prompted utilitarian deontological]
    moralkit grid [--rewards game "game->deontological" ...] [--profile cpu]   # train + evaluate the paper's agents
    moralkit bench                      # rounds per second and peak memory of training
    moralkit maxmin --game G --opponent O --stakeholders A B C --xi X [--json]   # exact max-min per state
    moralkit maxmin-report RUN... [--out data/results/maxmin_llm_cpu.csv] [--weights W.csv]  # LLM runs vs the LP

Each verb is a function registered with :func:`command`. The sizes of a verb's work (episodes,
games per update, evaluation episodes, seeds …) default to the profile's (:mod:`moralkit.profiles`:
``--profile``, else ``$MORALKIT_PROFILE``, else ``auto``); ``moralkit VERB --help`` shows them.
Heavy libraries are imported inside each verb, so ``moralkit --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

__all__ = ["main", "COMMANDS", "build_parser"]


class FromProfile:
    """An argument's default read from the profile (a field name) when the parser is built."""

    def __init__(self, field: str, transform: Callable | None = None) -> None:
        self.field, self.transform = field, transform

    def value(self, profile):
        value = getattr(profile, self.field)
        value = self.transform(value) if self.transform else value
        return ProfileInt(value) if type(value) is int else value


class ProfileInt(int):
    """A whole number an option took from the profile, not from the command line (see :func:`_given`)."""


def _given(value):
    """``value`` if it was typed on the command line, None if it is the profile's default."""
    return None if isinstance(value, ProfileInt) else value


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default, except where there is none to show."""

    def _get_help_string(self, action):
        no_value = action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0  # flags
        if no_value or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _catalogue() -> dict[str, list[str]]:
    """The names a command line accepts: games, rewards, opponents and profiles (for help and checks)."""
    from .games import GAMES
    from .opponents import opponent_names
    from .profiles import PROFILES
    from .rewards import reward_names

    return {"games": list(GAMES), "rewards": list(reward_names()), "opponents": list(opponent_names()) + ["learner"],
            "profiles": [*PROFILES, "auto"]}


def _penalty(text: str) -> float:
    """``--xi``: a finite number >= 0 (the norm-violation penalty is a size; the rewards subtract it)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give the penalty as e.g. 3") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"the norm-violation penalty must be a finite number >= 0, got {text}: it is a "
                                         "size (the rewards subtract it themselves); try 3")
    return value


COMMANDS: dict[str, tuple[Callable[..., None], Callable[[argparse.Namespace], int], str]] = {}

_PROFILE_HELP = ("smoke, cpu, gpu, paper or auto (default: auto: gpu with CUDA, else cpu; the environment variable "
                 "$MORALKIT_PROFILE, when set, overrides this option)")
_PROFILES = ("smoke", "cpu", "gpu", "paper", "auto")
_OPPONENT_HELP = ("tit_for_tat, always_cooperate, always_defect, random, axelrod:<StrategyName> (needs moralkit[axelrod]), "
                  "or learner (a second LLM learning too)")
_REWARD_HELP = ("a reward name ({rewards}), a schedule such as 'game->deontological' or 'game:30,deontological:30', "
                "or an aggregate such as 'maxmin(game,deontological)'")


def command(name: str, help: str):
    """Register a verb: the decorated function receives the parsed arguments."""

    def deco(fn):
        def add_args(p, profile=None):
            for args, kwargs in getattr(fn, "_args", []):
                if "{" in kwargs.get("help", ""):  # valid names, e.g. "one of {games}"
                    kwargs = {**kwargs, "help": kwargs["help"].format(**{k: ", ".join(v) for k, v in _catalogue().items()})}
                default = kwargs.get("default")
                if isinstance(default, FromProfile):
                    kwargs = {**kwargs, "default": default.value(profile) if profile is not None else None}
                p.add_argument(*args, **kwargs)

        add_args.sized = any(isinstance(kw.get("default"), FromProfile) for _, kw in getattr(fn, "_args", []))
        COMMANDS[name] = (add_args, fn, help)
        return fn

    return deco


def arg(*args, **kwargs):
    def deco(fn):
        fn._args = [(args, kwargs)] + getattr(fn, "_args", [])
        return fn

    return deco


@command("workbook", "run every notebook headless; executed copies, figures and tables go to --out")
@arg("--profile", default=None, choices=_PROFILES, help=_PROFILE_HELP)
@arg("--out", default="outputs", help="output folder")
@arg("--only", nargs="+", default=None, help="run only notebooks whose name contains one of these, e.g. 01 04 (default: all of them)")
@arg("--notebooks", default=None, metavar="DIR",
     help="folder holding the notebooks (default: the repository's notebooks/, else ./notebooks)")
def _workbook(ns) -> int:
    from .workbook import run_workbook

    paths = run_workbook(ns.out, profile=ns.profile, notebooks=ns.only, notebooks_dir=ns.notebooks)
    print(f"[moralkit] executed {len(paths)} notebook(s); outputs in {ns.out}/ (notebooks/, figures/, tables/)")
    return 0


@command("site", "build the static site: executed chapters with their figures, docs/, an API reference, Colab badges")
@arg("--workbook", default="outputs", metavar="DIR",
     help="what `moralkit workbook --out` wrote (its notebooks/ holds the executed chapters)")
@arg("--out", default="outputs/site", metavar="DIR", help="the site's folder (replaced as a whole; open DIR/index.html)")
@arg("--no-api", action="store_true", help="leave out the API reference (it imports every module)")
def _site(ns) -> int:
    from .site import build_site

    build_site(ns.workbook, ns.out, api=not ns.no_api)
    return 0


@command("games", "list the game catalogue: each game's payoffs, kind, equilibria and dilemma checks")
def _games(ns) -> int:
    from .games import GAMES, game_facts

    for name, game in GAMES.items():
        facts = game_facts(game)
        print(f"== {name}: {game.title} ({facts['kind']}) ==")
        print(game.to_frame().to_string())  # each cell: M's payoff, O's payoff
        for key in ("social dilemma", "pure Nash", "all Nash (payoffs M, O)", "Pareto-optimal", "best collective"):
            print(f"  {key}: {facts[key]}")
        print()
    return 0


@command("rewards", "show every moral reward as a table for one game")
@arg("--game", default="prisoners_dilemma", help="one of {games}")
@arg("--xi", type=_penalty, default=3.0, help="norm-violation penalty ξ (a number >= 0)")
def _rewards(ns) -> int:
    from .games import get_game
    from .rewards import get_reward, reward_names, reward_table

    get_game(ns.game)
    for name in reward_names():
        print(f"\n== {name} ==")
        print(reward_table(get_reward(name, xi=ns.xi), ns.game))
    return 0


@command("q-learning", "train tabular Q-learners (the pure-RL prelude) and print their policies")
@arg("--game", default="prisoners_dilemma", help="one of {games}")
@arg("--reward", default="game", help="one of {rewards}")
@arg("--opponent", default="tit_for_tat", help="one of {opponents} ('learner': two Q-learners)")
@arg("--opponent-reward", default=None, help="the second learner's reward, needed with --opponent learner (default: none)")
@arg("--gamma", type=float, default=0.9, help="discount factor in [0, 1)")
@arg("--alpha", type=float, default=0.01, help="learning rate in (0, 1]")
@arg("--iterations", type=int, default=FromProfile("q_iterations"), help="iterations per run")
@arg("--runs", type=int, default=FromProfile("q_runs"), help="independent runs")
@arg("--xi", type=_penalty, default=3.0, help="norm-violation penalty ξ (a number >= 0)")
@arg("--seed", type=int, default=0, help="random seed")
@arg("--profile", default=None, choices=_PROFILES, help=_PROFILE_HELP)
def _q_learning(ns) -> int:
    from .tabular import train_q_learning

    for flag in ("iterations", "runs"):
        if getattr(ns, flag) < 1:
            raise ValueError(f"--{flag} must be at least 1, got {getattr(ns, flag)}.")

    res = train_q_learning(
        ns.game, ns.reward, ns.opponent, opponent_reward=ns.opponent_reward, iterations=ns.iterations,
        n_runs=ns.runs, alpha=ns.alpha, gamma=ns.gamma, xi=ns.xi, seed=ns.seed,
    )
    print(res)
    print(res.policy_table().round(2))
    print("\naction types, last 20% of iterations:")
    print(res.final_behaviour().round(3).to_string())
    return 0


def _profile_name(profile: str | None) -> str:
    """The profile a command ran under (``--profile``, else ``$MORALKIT_PROFILE``, else auto's choice)."""
    from .profiles import get_profile

    return get_profile(profile).name


_LABELS_HELP = ("labels the player trains with: train (action1/action2, the paper's), another label set, or pool "
                "(each update draws a pair from moralkit.llm.prompts.LABEL_POOL, disjoint from the evaluation "
                "labels, with random meanings: the policy must read the payoff table)")


def _train_config(ns):
    from .training import condition_config

    overrides = {k: v for k, v in {
        "episodes": _given(ns.episodes), "games_per_update": ns.games_per_update, "rounds": ns.rounds,
        "preset": ns.preset, "model": ns.model, "game": ns.game, "checkpoint_every": ns.checkpoint_every,
        "labels": ns.labels,
    }.items() if v is not None}
    overrides.update(_algorithm_overrides(ns))
    overrides.update(_ppo_overrides(ns, ns.preset))
    return condition_config(ns.reward, ns.opponent, ns.seed, ns.profile, **overrides)


_PPO_HELP = ("change single fields of the PPO preset, e.g. --ppo max_grad_norm=1.0 ppo_epochs=1 (fields: see "
             "moralkit.ppo.PPOConfig); train such runs into their own --out folder (default: none, the preset as it is)")


def _ppo_overrides(ns, preset: str | None) -> dict:
    """``{"ppo_overrides": {...}}`` from ``--ppo FIELD=VALUE ...``, checked against the preset (or nothing)."""
    if not getattr(ns, "ppo", None):
        return {}
    from .ppo import parse_ppo_overrides
    from .profiles import get_profile

    return {"ppo_overrides": parse_ppo_overrides(ns.ppo, preset or get_profile(ns.profile).ppo_preset)}


def _algorithm_overrides(ns) -> dict:
    """``algorithm`` and the GRPO settings given on the command line (checks that TRL is installed for GRPO)."""
    if getattr(ns, "algorithm", "ppo") != "grpo":
        return {}
    from .grpo import GRPOSettings, require_trl

    require_trl()
    defaults = GRPOSettings()
    grpo = {k: v for k, v in {"num_generations": ns.num_generations, "beta": ns.beta}.items()
            if v is not None and v != getattr(defaults, k)}
    return {"algorithm": "grpo", **({"grpo_overrides": grpo} if grpo else {})}


def _grpo_args(fn):
    """The options that choose the algorithm and size GRPO (shared by train and compare-algorithms)."""
    fn = arg("--beta", type=float, default=0.04, help="GRPO: weight of the KL to the base model (TRL's own, 0, "
             "would not anchor the policy)")(fn)
    fn = arg("--num-generations", type=int, default=4, help="GRPO: answers sampled per state (the group)")(fn)
    return fn


def _figures_every(n: int, profile=None):
    """A training callback that redraws the run's figures every ``n`` episodes (watch them headless)."""

    def callback(run, rounds) -> None:
        from .plots import save_run_figures

        if run.episode % max(1, n) == 0:
            save_run_figures(run, profile=profile)

    return callback


def _compile_mode(text: str):
    """``--compile``'s MODE: ``off``/``false`` -> False (eager), anything else as it is."""
    return False if text.lower() in ("off", "false", "no", "eager") else text


def _check_output(path, option: str, *, folder: bool) -> None:
    """Refuse at once (not after a long run) an output path of the wrong kind: a file where a folder goes, or the reverse."""
    from pathlib import Path

    if path is None:
        return
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; give a folder for the results (it is made if missing).")
    if not folder and path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give the path of a CSV file, e.g. {path / 'results.csv'}.")


def _tf32_mode(text: str):
    """``--tf32``'s (and ``--merged``'s) value: ``auto``, ``on`` (True) or ``off`` (False)."""
    modes = {"auto": "auto", "on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
    if text.lower() not in modes:
        raise argparse.ArgumentTypeError(f"takes auto, on or off, not {text!r}")
    return modes[text.lower()]


@command("train", "fine-tune the LLM player with LoRA-PPO (or GRPO) on a moral reward (resumable)")
@arg("--reward", default="game", help=_REWARD_HELP)
@arg("--opponent", default="tit_for_tat", help=_OPPONENT_HELP)
@arg("--game", default="prisoners_dilemma", help="training game: one of {games}")
@arg("--episodes", type=int, default=FromProfile("train_episodes"),
     help="PPO updates (paper: 1000); a schedule with its own lengths (game:30,deontological:30) sets them itself")
@arg("--games-per-update", type=int, default=FromProfile("games_per_update"), help="games played in parallel per update (paper: 1)")
@arg("--rounds", type=int, default=None, help="rounds per game (default: the profile's, at most its learner_rounds "
     "against a learner; paper: 5, and 3 against a learner)")
@arg("--preset", default=FromProfile("ppo_preset"), help="PPO preset: paper, cpu or smoke")
@arg("--model", default=FromProfile("model"), help="'embedded', a local folder, a hub id or random:<shape>")
@arg("--checkpoint-every", type=int, default=FromProfile("checkpoint_every"), help="episodes between checkpoints")
@arg("--labels", default="train", help=_LABELS_HELP)
@arg("--ppo", nargs="+", default=None, metavar="FIELD=VALUE", help=_PPO_HELP)
@arg("--profile", default=None, choices=_PROFILES, help=_PROFILE_HELP)
@arg("--seed", type=int, default=FromProfile("seeds", lambda seeds: seeds[0]), help="training seed")
@arg("--out", default=None, help="run folder (default: runs/<reward>__<opponent>__seed<k>); new, empty, or "
     "holding this run")
@arg("--no-resume", dest="resume", action="store_false", help="refuse to continue a run already in --out")
@arg("--algorithm", choices=["ppo", "grpo"], default="ppo", help="ppo: moralkit's own LoRA-PPO; grpo: TRL's "
     'GRPOTrainer (pip install "moralkit[grpo]"), same adapter, prompts and rewards')
@_grpo_args
def _train(ns) -> int:
    from .experiments import run_folder
    from .plots import save_run_figures
    from .analysis import training_summary
    from .training import TrainingRun

    cfg = _train_config(ns)
    folder = ns.out or run_folder("runs", cfg)
    run = TrainingRun(cfg, folder, resume=ns.resume)
    if run.finished:
        run.check_intact()
        print(f"[moralkit] {folder} holds a finished run; nothing to do.")
    else:
        run.train(callback=_figures_every(cfg.checkpoint_every, _profile_name(ns.profile)))
    figures = save_run_figures(run, profile=_profile_name(ns.profile))
    summary = training_summary(run.log)
    print(f"\n[moralkit] {run}")
    print(f"  adapter (peft format): {run.adapter_dir}")
    print(f"  per-round log:         {run.folder / 'rounds.csv'}")
    print(f"  per-update log:        {run.folder / 'updates.csv'}")
    print(f"  figures:               {', '.join(str(p) for p in figures)}")
    print("  last 20% of training:  " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


@command("compare-algorithms", "PPO vs GRPO on the same task, one run at a time on this machine (resumable)")
@arg("--rewards", nargs="+", default=["game", "deontological", "utilitarian", "game_deontological"], help="rewards")
@arg("--algorithms", nargs="+", choices=["ppo", "grpo"], default=["ppo", "grpo"], help="algorithms")
@arg("--opponent", default="tit_for_tat", help="opponent of every run")
@arg("--episodes", type=int, default=FromProfile("train_episodes"), help="updates per run")
@arg("--games-per-update", type=int, default=FromProfile("games_per_update"), help="games played in parallel per update")
@arg("--model", default=FromProfile("model"), help="'embedded', a folder, a hub id or random:<shape>")
@arg("--seeds", "--seed", nargs="+", type=int, default=[0],
     help="training seeds: every reward and algorithm is trained once per seed")
@arg("--profile", default=None, help=_PROFILE_HELP)
@arg("--out", default="runs/ppo_vs_grpo", help="comparison folder: new, empty, or an earlier comparison's")
@arg("--table", default=None, help="also write the table here, e.g. outputs/ppo_vs_grpo_cpu.csv (default: only OUT/ppo_vs_grpo.csv)")
@_grpo_args
def _compare_algorithms(ns) -> int:
    import pandas as pd

    from .experiments import compare_algorithms
    from .storage import atomic_write

    ns.algorithm = "grpo" if "grpo" in ns.algorithms else "ppo"
    grpo = _algorithm_overrides(ns).get("grpo_overrides")
    overrides = {k: v for k, v in {"episodes": _given(ns.episodes), "games_per_update": ns.games_per_update,
                                   "model": ns.model}.items() if v is not None}
    table = compare_algorithms(ns.rewards, ns.algorithms, out=ns.out, opponent=ns.opponent, seeds=ns.seeds,
                               profile=ns.profile, grpo_overrides_for_grpo=grpo, **overrides)
    if ns.table:
        atomic_write(ns.table, lambda p: table.to_csv(p, index=False))
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table)
    print(f"[moralkit] table in {ns.out}/ppo_vs_grpo.csv" + (f" and {ns.table}" if ns.table else "")
          + f"; means over seeds in {ns.out}/ppo_vs_grpo_over_seeds.csv")
    return 0


@command("evaluate", "evaluate finished runs with the paper's protocol (paired with the base model)")
@arg("runs", nargs="*", help="run folders (none: evaluate the untuned base model only)")
@arg("--games", nargs="+", default=FromProfile("eval_games", list), help="games, from {games}")
@arg("--labels", nargs="+", default=["test"], help="label sets: train, swapped, test (action3/action4, the paper's new "
     "labels), test_swapped, or another name of moralkit.llm.prompts.LABEL_SETS")
@arg("--episodes", type=int, default=FromProfile("eval_episodes"), help="episodes of 5 rounds per game (paper: 10)")
@arg("--value-prompted", nargs="+", default=[], help="also evaluate the base model told these values in words: "
     "utilitarian, deontological, or a sentence of your own in quotes")
@arg("--seed", type=int, default=FromProfile("eval_seed"), help="evaluation seed (the paper: 100)")
@arg("--profile", default=None, choices=_PROFILES, help=_PROFILE_HELP)
@arg("--add-to", nargs="+", default=[], metavar="FOLDER",
     help="earlier evaluation folders (their evaluation_rounds.csv) to combine with this one, e.g. a seed trained "
          "later; a run evaluated again replaces its earlier rows")
@arg("--out", default="outputs/evaluation",
     help="folder for evaluation.csv, evaluation_rounds.csv, generalisation_over_seeds.csv and figures/")
def _evaluate(ns) -> int:
    from pathlib import Path

    import pandas as pd

    from .analysis import generalisation_over_seeds
    from .evaluate import EVAL_XI, Evaluation, combine_evaluations, compare_with_paper
    from .rewards import R_ILLEGAL
    from .experiments import evaluate_runs, load_runs
    from .storage import atomic_write, read_table

    from .games import get_game
    from .llm.prompts import get_label_set

    _check_output(ns.out, "--out", folder=True)
    for option, values in (("--labels", ns.labels), ("--value-prompted", ns.value_prompted), ("--games", ns.games)):
        for value in values:  # an option's list swallows the run folders written after it
            if (Path(value) / "config.json").exists():
                raise ValueError(f"{value!r} was read as a value of {option}, but it is a run folder: write the run "
                                 f"folders first (moralkit evaluate RUN... {option} ...) or end {option}'s list with --.")
    for name in ns.labels:  # before any model loads
        try:
            get_label_set(name)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
    for name in ns.games:
        get_game(name)
    earlier = []
    for folder in ns.add_to:  # read before the (long) evaluation, so a wrong folder fails at once
        path = Path(folder) / "evaluation_rounds.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; --add-to takes folders written by moralkit evaluate or "
                                    "moralkit grid.")
        earlier.append(Evaluation(read_table(path), EVAL_XI, R_ILLEGAL))
    if earlier:
        combine_evaluations(*earlier)  # foreign or mismatched tables fail here, before the evaluation
    ev = evaluate_runs(load_runs(ns.runs), value_prompted=ns.value_prompted, games=ns.games,
                       label_sets=ns.labels, episodes=ns.episodes, seed=ns.seed)
    if earlier:
        ev = combine_evaluations(*earlier, ev)
    table = compare_with_paper(ev.summary)
    out = Path(ns.out)
    atomic_write(out / "evaluation_rounds.csv", lambda p: ev.rounds.to_csv(p, index=False))
    atomic_write(out / "evaluation.csv", lambda p: table.to_csv(p, index=False))
    means = generalisation_over_seeds(ev) if "seed" in ev.rounds else None
    if means is not None:
        atomic_write(out / "generalisation_over_seeds.csv", lambda p: means.to_csv(p, index=False))
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print(table)
        if means is not None and (means["seeds"] > 1).any():
            shown = ["agent", "seeds", "seed_list", "games"] + [f"{v}{end}" for v in ("deont_regret", "utilit_regret", "illegal")
                                                              for end in ("", "_lo", "_hi")]
            print("\nMeans over the games, mean and 95% interval over training seeds:")
            print(means[shown].to_string(index=False))
    print(f"[moralkit] tables in {out}/")
    if "test" in set(ev.rounds["labels"]):  # the paper's Figure 4 was measured with the test labels
        from . import plots
        from .analysis import generalisation_table

        test = generalisation_table(ev)
        fig = plots.regret_bars(test[test["labels"] == "test"], metric=("deont_regret", "utilit_regret"),
                                rounds=ev.rounds[ev.rounds["labels"] == "test"], xi=ev.xi, r_illegal=ev.r_illegal)
        print(f"[moralkit] figure: {plots.save_figure(fig, out / 'figures' / 'regrets_vs_paper.png', profile=_profile_name(ns.profile))}")
    return 0


@command("grid", "train and evaluate a grid of conditions (rewards x opponents x seeds); finished runs are skipped")
@arg("--rewards", nargs="+", default=FromProfile("agents", list),
     help="rewards ({rewards}) or schedules ('game->deontological'); the profile's agents are the paper's six "
          "(in the smoke profile two of them)")
@arg("--opponents", nargs="+", default=["tit_for_tat"], help="training opponents: " + _OPPONENT_HELP)
@arg("--seeds", nargs="+", type=int, default=FromProfile("seeds", list), help="training seeds")
@arg("--profile", default=None, choices=_PROFILES, help=_PROFILE_HELP)
@arg("--episodes", type=int, default=FromProfile("train_episodes"),
     help="PPO updates per run (a schedule with its own lengths, game:30,deontological:30, sets them itself)")
@arg("--workers", type=int, default=1, help="train this many conditions at once, each in its own process "
     "(on a GPU: several runs share it, ~3-7 GB each; on an H100 four or more fill it, see docs/performance.md; "
     "on a CPU: they share the cores)")
@arg("--side-by-side", type=int, default=1, metavar="R",
     help="train up to R conditions in one process on one copy of the model, their PPO updates in shared passes "
          "(on a GPU one set of kernels for all R runs; our PPO against fixed opponents; each run keeps its own "
          "folder and resumes on its own); with --workers N, N such groups at once")
@arg("--model", default=FromProfile("model"), help="'embedded', a folder, a hub id or random:<shape>")
@arg("--labels", default="train", help=_LABELS_HELP)
@arg("--ppo", nargs="+", default=None, metavar="FIELD=VALUE", help=_PPO_HELP)
@arg("--no-evaluate", dest="evaluate", action="store_false", help="train only; print the training table")
@arg("--out", default="runs/grid", help="grid folder: new, empty, or an earlier grid's")
def _grid(ns) -> int:
    from pathlib import Path

    import pandas as pd

    from .experiments import run_grid
    from .storage import read_table

    overrides = {k: v for k, v in {"episodes": _given(ns.episodes), "model": ns.model, "labels": ns.labels}.items()
                 if v is not None}
    overrides.update(_ppo_overrides(ns, None))
    train_tab, summary = run_grid(ns.rewards, ns.opponents, ns.seeds, out=ns.out, profile=ns.profile,
                                  evaluate=ns.evaluate, workers=ns.workers, side_by_side=ns.side_by_side, **overrides)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 3):
        print("\nBehaviour over the last 20% of training rounds:")
        print(train_tab.to_string(index=False))
        judged = train_tab["meets"].dropna() if "meets" in train_tab else []
        if len(judged):
            print(f"Prediction (docs/science.md section 5) met by {int(judged.astype(bool).sum())} of {len(judged)} "
                  "run(s) against Tit-for-Tat (columns 'predicted', 'meets').")
        by_seed = Path(ns.out) / "training_over_seeds.csv"
        if by_seed.exists() and train_tab["seed"].nunique() > 1:
            table = read_table(by_seed)
            shown = ["agent", "opponent", "seeds"] + [c for c in ("D", "C", "legal", "C_after_C", "D_after_D")
                                                       for c in (c, f"{c}_lo", f"{c}_hi")] + ["meets_seeds"]
            print("\nOver seeds: mean and 95% interval over seeds (Student t):")
            print(table[[c for c in shown if c in table]].to_string(index=False))
        unlearning = Path(ns.out) / "unlearning.csv"
        if unlearning.exists():
            print("\nUnlearning: C|C and D|C shares just before the reward switch and over the last 20%:")
            print(read_table(unlearning).to_string(index=False))
        if summary is not None:
            print("\nGeneralisation (labels action3/action4 vs Random, docs/science.md section 6), paper's Figure 4 beside ours:")
            columns = ["agent", "game", "deont_regret", "paper_deont_regret", "utilit_regret", "paper_utilit_regret",
                       "illegal", "C_among_legal"]
            print(summary[columns].to_string(index=False))
            means = Path(ns.out) / "generalisation_over_seeds.csv"
            if means.exists() and train_tab["seed"].nunique() > 1:
                table = read_table(means)
                shown = ["agent", "seeds", "games"] + [f"{v}{end}" for v in ("deont_regret", "utilit_regret", "illegal")
                                                      for end in ("", "_lo", "_hi")]
                print("\nGeneralisation means over the games, mean and 95% interval over seeds:")
                print(table[shown].to_string(index=False))
    written = sorted(p.name for p in Path(ns.out).glob("*.csv"))
    print(f"\n[moralkit] tables in {ns.out}/: {', '.join(written)}")
    figures = _grid_figures(Path(ns.out), train_tab, summary, profile=_profile_name(ns.profile))
    print(f"[moralkit] figures: {', '.join(str(p) for p in figures)}")
    return 0


def _grid_figures(out, trained, generalisation, profile=None) -> list:
    """This grid's figures: each run's own (in its folder), its runs side by side, and the regrets.

    ``trained`` is the grid's training table: runs of other grids in the same folder are left out.
    """
    from . import plots
    from .evaluate import EVAL_XI
    from .experiments import load_runs
    from .storage import read_table

    conditions = set(zip(trained["agent"], trained["opponent"], trained["seed"]))
    runs = [run for run in load_runs(out)
            if (run.config.label, run.config.opponent, run.config.seed) in conditions and len(run.log)]
    paths = [p for run in runs for p in plots.save_run_figures(run, profile=profile)]
    if runs:
        paths.append(plots.save_figure(plots.training_grid(runs, suptitle="Behaviour during training"),
                                       out / "figures" / "training.png", profile=profile))
    rounds_file = out / "evaluation_rounds.csv"
    if generalisation is not None and rounds_file.exists():
        test = generalisation[generalisation["labels"] == "test"]
        rounds = read_table(rounds_file)
        fig = plots.regret_bars(test, metric=("deont_regret", "utilit_regret"), rounds=rounds[rounds["labels"] == "test"],
                                 xi=EVAL_XI)
        paths.append(plots.save_figure(fig, out / "figures" / "regrets_vs_paper.png", profile=profile))
    return paths


@command("bench", "measure training speed: seconds per update and where they go, rounds/s, peak memory")
@arg("--profile", default=None, choices=_PROFILES, help=_PROFILE_HELP)
@arg("--model", default=FromProfile("model"), help="'embedded', a folder, a hub id, or random:<shape> (smollm2-135m, "
     "smollm2-135m-narrow, gemma-2-2b: random weights that time like the real model)")
@arg("--preset", default=FromProfile("ppo_preset"), help="PPO preset: paper, cpu or smoke")
@arg("--games-per-update", type=int, default=FromProfile("games_per_update"), help="games played in parallel per update (paper: 1)")
@arg("--rounds", type=int, default=FromProfile("rounds"), help="rounds per game")
@arg("--updates", type=int, default=3, help="timed updates (after one warm-up)")
@arg("--compile", nargs="?", const=True, default="auto", metavar="MODE", type=_compile_mode,
     help="how the PPO updates run: 'auto' (CUDA graphs on an Ampere-or-newer GPU, else eager), 'graphs', 'off' (eager), "
          "or torch.compile (no MODE, or a mode such as reduce-overhead)")
@arg("--dtype", default=None, help="model dtype, e.g. float32 or bfloat16 (default: load_model's: bfloat16 for a model of a "
     "billion parameters or more on a GPU with bf16, else float32)")
@arg("--tf32", default="auto", type=_tf32_mode, metavar="{auto,on,off}",
     help="float32 matrix products in TF32, as in training (PPOConfig.tf32): auto = on a CUDA GPU of the Ampere generation or newer")
@arg("--merged", default="auto", type=_tf32_mode, metavar="{auto,on,off}",
     help="sample through a copy of the weights with the adapter merged in, as in training (PPOConfig.merged_sampling): "
          "auto = on a CUDA GPU, for models under a billion parameters")
@arg("--side-by-side", type=int, default=1, metavar="R",
     help="time R runs (seeds 0..R-1) trained at once in shared passes, as grid --side-by-side R does; the seconds "
          "are then one run's share")
@arg("--json", action="store_true", help="print one JSON object instead of a table")
@arg("--save", default=None, metavar="CSV", help="also append the figures to this CSV file, e.g. data/results/bench.csv (default: none)")
def _bench(ns) -> int:
    import json

    from .bench import benchmark_training, save_benchmark

    _check_output(ns.save, "--save", folder=False)
    result = benchmark_training(profile=ns.profile, preset=ns.preset, games_per_update=ns.games_per_update,
                                rounds=ns.rounds, updates=ns.updates, model=ns.model, compile=ns.compile, dtype=ns.dtype,
                                tf32=ns.tf32, merged=ns.merged, side_by_side=ns.side_by_side)
    if ns.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>28}: {v}")
    if ns.save:
        print(f"[moralkit] appended to {save_benchmark(result, ns.save)}", file=sys.stderr)
    return 0


@command("maxmin", "the exact egalitarian (max-min) policy over moral stakeholders in each state, by linear programming")
@arg("--game", default="prisoners_dilemma", help="one of {games}")
@arg("--opponent", default="tit_for_tat", help="tit_for_tat, always_cooperate, always_defect or random")
@arg("--stakeholders", nargs="+", default=["game", "deontological", "utilitarian"],
     help="reward names, at least two, from {rewards}")
@arg("--xi", type=_penalty, default=3.0, help="norm-violation penalty ξ (a number >= 0)")
@arg("--json", action="store_true", help="print JSON (one entry per state, plus the utilitarian average's)")
def _maxmin(ns) -> int:
    import json

    from .pluralistic import maxmin_json, maxmin_table

    if ns.json:
        print(json.dumps(maxmin_json(ns.game, ns.opponent, ns.stakeholders, xi=ns.xi), indent=2))
        return 0
    import pandas as pd

    table = maxmin_table(ns.game, ns.stakeholders, ns.opponent, xi=ns.xi)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(f"Stakeholders' normalised utilities against {ns.opponent} in {ns.game} (xi = {ns.xi:g}), state = my last|their last:")
        print(table.to_string(index=False))
    return 0


@command("maxmin-report", "how close trained LLM runs ended to the exact max-min policy, state by state")
@arg("runs", nargs="+", help="run folders (moralkit train / grid)")
@arg("--stakeholders", nargs="+", default=None, help="default: the stakeholders of each run's aggregate reward")
@arg("--last", type=float, default=0.2, help="share of the training episodes at the end to read (0 < LAST <= 1)")
@arg("--out", default=None, help="also write the table as CSV here, e.g. data/results/maxmin_llm_cpu.csv, and with several seeds of a "
     "run their means and intervals to <name>_over_seeds.csv beside it (default: print it only)")
@arg("--weights", default=None, help="also replay the weights each stateful MaxMin run gave its stakeholders (per update and "
     "state) and write them as CSV here; prints their means over the last episodes (default: not replayed)")
def _maxmin_report(ns) -> int:
    from pathlib import Path

    import pandas as pd

    from .analysis import over_seeds
    from .experiments import load_runs
    from .pluralistic import llm_maxmin_report, llm_maxmin_weights
    from .rewards import AggregateReward, get_reward, is_stateful
    from .storage import atomic_write

    _check_output(ns.out, "--out", folder=False)
    _check_output(ns.weights, "--weights", folder=False)
    frames, weights = [], []
    for run in load_runs(ns.runs):
        cfg = run.config
        reward = get_reward(cfg.phases[-1][0], xi=cfg.xi)
        stakeholders = ns.stakeholders or (list(reward.stakeholder_names) if isinstance(reward, AggregateReward) else None)
        if not stakeholders:
            raise ValueError(f"{run.folder} was trained with {reward.name}, not an aggregate: pass --stakeholders.")
        table = llm_maxmin_report(run.log, stakeholders, cfg.game, cfg.opponent, xi=cfg.xi, last=ns.last)
        frames.append(table.reset_index().assign(run=cfg.label, episodes=cfg.episodes, seed=cfg.seed))
        if ns.weights and is_stateful(reward) and len(cfg.phases) == 1:
            w = llm_maxmin_weights(run.log, reward, cfg.game, xi=cfg.xi)
            weights.append(w.assign(run=cfg.label, seed=cfg.seed)[["run", "seed", *w.columns]])
        elif ns.weights:
            print(f"[moralkit] {run.folder}: {cfg.label} has no weights to replay (only a maxmin reward of variant "
                  "weights or switch, trained from the start, learns them)")
    out = pd.concat(frames, ignore_index=True)
    out = out[["run", "episodes", "seed"] + [c for c in out.columns if c not in ("run", "episodes", "seed")]]
    several = out.groupby("run")["seed"].nunique().max() > 1
    means = over_seeds(out, ["run", "episodes", "state"]) if several else None  # every numeric column: rounds, P(C), utilities...
    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.precision", 3):
        print(out.to_string(index=False))
        if means is not None:
            shown = ["run", "seeds", "min_utility", "min_utility_lo", "min_utility_hi", "lp_value", "gap", "gap_lo", "gap_hi"]
            print("\nThe states' mean, mean and 95% interval over seeds:")
            print(means.loc[means["state"] == "mean", shown].to_string(index=False))
    if ns.out:
        atomic_write(ns.out, lambda p: out.to_csv(p, index=False))
        print(f"[moralkit] written {ns.out}")
        if means is not None:
            path = Path(ns.out).with_name(Path(ns.out).stem + "_over_seeds.csv")
            atomic_write(path, lambda p: means.to_csv(p, index=False))
            print(f"[moralkit] written {path} (mean over seeds, 95% t-interval _lo/_hi, spread _sd)")
    if weights:
        table = pd.concat(weights, ignore_index=True)
        episodes = table.groupby(["run", "seed"])["episode"].transform("max") + 1
        tail = table[table["episode"] >= (episodes * (1 - ns.last)).apply(int)]  # as llm_maxmin_report reads "the last"
        final = tail.pivot_table(index=["run", "seed", "state"], columns="stakeholder", values="weight", sort=False)
        with pd.option_context("display.width", 220, "display.precision", 3):
            print(f"\nThe MaxMin weights over the last {ns.last:.0%} of training (mean per state; rows sum to 1):")
            print(final.round(3).to_string())
        atomic_write(ns.weights, lambda p: table.to_csv(p, index=False))
        print(f"[moralkit] written {ns.weights} (weight and utility estimate per run, seed, update, state and stakeholder)")
    return 0


def _chosen(argv: list[str]) -> tuple[str | None, str | None]:
    """(the verb, the ``--profile`` value) of a command line, read before it is parsed."""
    verb, profile, it = None, None, iter(argv)
    for token in it:
        if verb is None:
            if token == "--threads":
                next(it, None)
            elif token in COMMANDS:
                verb = token
        elif token == "--profile":
            profile = next(it, None)
        elif token.startswith("--profile="):
            profile = token.split("=", 1)[1]
    return verb, profile


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``moralkit`` parser; the chosen verb's size defaults come from its profile (see ``--help``)."""
    verb, profile_name = _chosen(list(sys.argv[1:] if argv is None else argv))
    names = _catalogue()
    import textwrap

    epilog = "\n".join(textwrap.fill(f"{kind}: {', '.join(values)}", 90, subsequent_indent="  ")
                       for kind, values in names.items())
    parser = argparse.ArgumentParser(prog="moralkit", description="Moral alignment of LLM agents with intrinsic "
                                     "rewards: the workbook's command line.", formatter_class=_HelpFormatter,
                                     epilog="valid names (`moralkit COMMAND --help` shows each option's default):\n"
                                     + epilog)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: $MORALKIT_THREADS or torch's choice)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_args, _, help_text) in COMMANDS.items():
        profile = None
        if name == verb:
            from .profiles import get_profile

            try:
                profile = get_profile(profile_name)
            except ValueError as exc:
                parser.error(str(exc))
        sized = profile is not None and add_args.sized  # games, rewards, maxmin... have no sizes
        description = help_text + (f". Sizes default to the {profile.name!r} profile's." if sized else "")
        add_args(sub.add_parser(name, help=help_text, description=description, formatter_class=_HelpFormatter), profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ._warnings import quiet_third_party

    quiet_third_party()
    parser = build_parser(argv)
    ns = parser.parse_args(argv)
    if not ns.command:
        parser.print_help()
        return 1
    try:
        if ns.threads is not None or ns.command in ("train", "evaluate", "grid", "bench", "compare-algorithms"):
            from .profiles import configure_threads, get_profile

            fallback = get_profile(ns.profile).threads if hasattr(ns, "profile") else None  # smoke: 1 thread
            configure_threads(ns.threads, fallback=fallback)
        return COMMANDS[ns.command][1](ns) or 0
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        print(f"moralkit {ns.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
