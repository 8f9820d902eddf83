"""The moralkit command."""

import argparse
import subprocess
import sys

import pytest

from moralkit.cli import main


def test_games_and_rewards_verbs(capsys):
    assert main(["games"]) == 0
    assert "prisoners_dilemma" in capsys.readouterr().out
    assert main(["rewards", "--game", "stag_hunt", "--xi", "5"]) == 0
    out = capsys.readouterr().out
    assert "== deontological ==" in out and "-5.0" in out


def test_q_learning_verb(capsys):
    assert main(["q-learning", "--reward", "utilitarian", "--gamma", "0", "--iterations", "2000", "--runs", "3"]) == 0
    assert "P(D) a (utilitarian)" in capsys.readouterr().out


def test_bad_names_exit_2_with_the_valid_choices(capsys):
    assert main(["rewards", "--game", "monopoly"]) == 2
    err = capsys.readouterr().err
    assert "Unknown game 'monopoly'" in err and "stag_hunt" in err
    assert main(["q-learning", "--reward", "kantian"]) == 2
    assert "Valid names" in capsys.readouterr().err


def test_verbs_take_their_defaults_from_the_profile_and_show_them(capsys, monkeypatch):
    from moralkit.cli import build_parser
    from moralkit.profiles import get_profile
    from moralkit.training import TrainingConfig, condition_config

    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)
    for name in ("smoke", "paper"):
        prof = get_profile(name)
        ns = build_parser(["train", "--profile", name]).parse_args(["train", "--profile", name])
        assert (ns.episodes, ns.games_per_update, ns.preset, ns.checkpoint_every) == (
            prof.train_episodes, prof.games_per_update, prof.ppo_preset, prof.checkpoint_every)
        grid = build_parser(["grid", "--profile", name]).parse_args(["grid", "--profile", name])
        assert grid.seeds == list(prof.seeds) and grid.rewards == list(prof.agents)
        q = build_parser(["q-learning", f"--profile={name}"]).parse_args(["q-learning", f"--profile={name}"])
        assert (q.iterations, q.runs) == (prof.q_iterations, prof.q_runs)
        ev = build_parser(["evaluate", "--profile", name]).parse_args(["evaluate", "--profile", name])
        assert (ev.episodes, ev.seed, ev.games) == (prof.eval_episodes, prof.eval_seed, list(prof.eval_games))
    with pytest.raises(SystemExit):
        main(["train", "--profile", "smoke", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--episodes EPISODES PPO updates (paper: 1000); a schedule with its own lengths (game:30,deontological:30) sets them itself (default: 2)" in shown and "PPO preset: paper, cpu or smoke (default: smoke)" in shown
    assert "Sizes default to the 'smoke' profile's" in shown
    # the CLI's config is condition_config's, and TrainingConfig's own defaults are the cpu profile's
    ns = build_parser(["train", "--profile", "cpu"]).parse_args(["train", "--profile", "cpu"])
    from moralkit.cli import _train_config

    assert _train_config(ns) == condition_config("game", "tit_for_tat", 0, "cpu") == TrainingConfig()


def test_help_is_instant_and_lists_verbs():
    out = subprocess.run([sys.executable, "-m", "moralkit.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "workbook" in out and "q-learning" in out


@pytest.mark.slow
def test_grid_verb_trains_evaluates_and_skips_finished_conditions(tmp_path, capsys, monkeypatch):
    """`moralkit grid` end to end on the embedded model (smoke profile): every table of chapters 4-6."""
    import pandas as pd

    from moralkit.profiles import get_profile

    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)
    out = tmp_path / "grid"
    args = ["--threads", "1", "grid", "--profile", "smoke", "--rewards", "game->deontological", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "Prediction (docs/science.md section 5) met by" in printed and "Unlearning" in printed and "Generalisation" in printed
    for name in ("training.csv", "training_over_seeds.csv", "unlearning.csv", "evaluation_rounds.csv", "generalisation.csv",
                 "generalisation_over_seeds.csv"):
        assert (out / name).exists(), name
    table = pd.read_csv(out / "generalisation.csv")
    agents = {"game_then_deontological", "no_finetuning", "prompted_utilitarian", "prompted_deontological"}
    assert set(table["agent"]) == agents
    assert set(table["game"]) == set(get_profile("smoke").eval_games)  # the profile sizes the evaluation too
    assert table.loc[table["agent"] == "no_finetuning", "paper_deont_regret"].notna().all()  # the paper beside ours
    assert pd.read_csv(out / "unlearning.csv")["agent"].tolist() == ["game_then_deontological"]
    run_dir = out / "game_then_deontological__tit_for_tat__seed0"
    for figure in (run_dir / "figures" / "action_types.png", run_dir / "figures" / "ppo.png",
                   out / "figures" / "training.png", out / "figures" / "regrets_vs_paper.png"):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        assert str(figure) in printed

    logs = {p: p.stat().st_mtime_ns for p in out.glob("*/rounds.csv")}
    assert len(logs) == 1
    assert main(args[:-2] + ["--no-evaluate", "--out", str(out)]) == 0  # finished conditions are skipped
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/rounds.csv")} == logs


@pytest.mark.slow
def test_train_and_evaluate_print_no_library_warnings(tmp_path):
    """What a student sees from the command line (a real process, Python's default warning filters)."""
    import os
    import re

    env = {**os.environ, "MORALKIT_THREADS": "1"}
    env.pop("MORALKIT_PROFILE", None)
    run = tmp_path / "run"
    printed = ""
    for args in (["train", "--profile", "smoke", "--reward", "game", "--episodes", "2", "--out", str(run)],
                 ["evaluate", str(run), "--games", "prisoners_dilemma", "--episodes", "1", "--out", str(tmp_path / "eval")]):
        done = subprocess.run([sys.executable, "-m", "moralkit.cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:]
        printed += done.stdout + done.stderr
    assert (run / "adapter").is_dir() and (tmp_path / "eval" / "evaluation.csv").is_file()
    noise = [line for line in printed.splitlines() if re.search(r"FutureWarning|DeprecationWarning|is deprecated", line)]
    assert not noise, "\n".join(noise[:10])


def test_help_lists_the_valid_names_and_every_subcommand_shows_its_defaults(capsys):
    from moralkit.cli import COMMANDS, build_parser
    from moralkit.games import GAMES
    from moralkit.profiles import PROFILES
    from moralkit.rewards import reward_names

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for name in [*GAMES, *reward_names(), "tit_for_tat", "always_defect", "learner", *PROFILES, "auto"]:
        assert name in shown, f"moralkit --help does not name {name}"
    for verb in COMMANDS:
        sub = build_parser([verb])._subparsers._group_actions[0].choices[verb]
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.option_strings and action.nargs != 0 and action.default is not argparse.SUPPRESS:
                shown_help = formatter._expand_help(action) if action.help else ""
                assert "default" in shown_help, f"moralkit {verb} --help hides the default of {action.option_strings[-1]}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train = " ".join(capsys.readouterr().out.split())
    assert "stag_hunt" in train and "deontological" in train and "always_cooperate" in train  # games, rewards, opponents


def test_games_shows_each_games_payoffs(capsys):
    from moralkit.games import GAMES

    assert main(["games"]) == 0
    out = capsys.readouterr().out
    for name, game in GAMES.items():
        block = out.split(f"== {name}:")[1].split("\n== ")[0]
        assert game.to_frame().to_string() in block, f"moralkit games does not show the payoffs of {name}"
    assert "anti-coordination" in out.split("== volunteers_dilemma:")[1].split("\n")[0]


@pytest.mark.parametrize("verb", [["rewards"], ["q-learning", "--iterations", "10"], ["maxmin"]])
def test_a_negative_xi_is_refused_before_anything_runs(verb, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*verb, "--xi", "-1"])
    captured = capsys.readouterr()
    assert exit_.value.code == 2 and captured.out == ""
    assert "--xi" in captured.err and ">= 0" in captured.err
    with pytest.raises(SystemExit):
        main([*verb, "--xi", "lots"])
    assert "not a number" in capsys.readouterr().err


def test_a_negative_xi_is_refused_by_the_library_too():
    from moralkit.rewards import RewardError, get_reward
    from moralkit.tabular import train_q_learning
    from moralkit.training import TrainingConfig

    for make in (lambda: get_reward("deontological", xi=-1), lambda: TrainingConfig(xi=-0.5),
                 lambda: train_q_learning("prisoners_dilemma", "deontological", "tit_for_tat", iterations=10, xi=-1)):
        with pytest.raises(RewardError, match="must be a finite number >= 0"):
            make()


def test_ppo_option_changes_single_preset_fields_and_refuses_unknown_ones(capsys, monkeypatch):
    """`--ppo FIELD=VALUE` reaches the run's PPOConfig; a wrong field or value stops before anything runs."""
    from moralkit.cli import _train_config, build_parser

    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)
    argv = ["train", "--profile", "smoke", "--ppo", "max_grad_norm=0.5", "ppo_epochs=2"]
    cfg = _train_config(build_parser(argv).parse_args(argv))
    assert cfg.ppo_overrides == {"max_grad_norm": 0.5, "ppo_epochs": 2}
    ppo = cfg.ppo_config()
    assert (ppo.max_grad_norm, ppo.ppo_epochs, ppo.name) == (0.5, 2, "smoke")
    assert cfg.to_dict()["ppo_overrides"] == {"max_grad_norm": 0.5, "ppo_epochs": 2}  # recorded in config.json

    for bad, why in ((["clip=0.1"], "unknown PPOConfig field 'clip'. Fields: adam_betas"),
                     (["max_grad_norm=lots"], "takes float | None"),
                     (["ppo_epochs=0"], "ppo_epochs must be >= 1"),
                     (["lora_r=2.5"], "whole number")):
        assert main(["train", "--profile", "smoke", "--out", "never-made", "--ppo", *bad]) == 2
        assert why in capsys.readouterr().err
    assert main(["grid", "--profile", "smoke", "--out", "never-made", "--ppo", "seed=3"]) == 2
    assert "unknown PPOConfig field 'seed'" in capsys.readouterr().err


def test_only_commands_with_sizes_say_where_their_sizes_come_from(capsys):
    from moralkit.cli import main

    for verb, sized in (("train", True), ("games", False), ("maxmin", False)):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        assert ("Sizes default to" in capsys.readouterr().out) is sized


def test_episodes_from_the_profile_give_way_to_a_schedule_s_own_lengths_and_a_typed_number_must_agree(monkeypatch):
    """`--reward game:3,deontological:9` trains 12 episodes; typing `--episodes 40` beside it is a contradiction."""
    from moralkit.cli import _train_config, build_parser
    from moralkit.profiles import get_profile

    monkeypatch.delenv("MORALKIT_PROFILE", raising=False)

    def config(*extra):
        argv = ["train", "--profile", "cpu", *extra]
        return _train_config(build_parser(argv).parse_args(argv))

    assert config().episodes == get_profile("cpu").train_episodes
    assert config("--episodes", "7").episodes == 7
    assert config("--reward", "game:3,deontological:9").schedule == (("game", 3), ("deontological", 9))
    assert config("--reward", "game:3,deontological:9", "--episodes", "12").episodes == 12  # they agree
    assert config("--reward", "game->deontological", "--episodes", "10").schedule == (("game", 2), ("deontological", 8))
    with pytest.raises(ValueError, match=r"'game:3,deontological:9' sets its own length \(12 episodes\), but 40"):
        config("--reward", "game:3,deontological:9", "--episodes", "40")
