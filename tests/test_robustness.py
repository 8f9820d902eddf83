"""Runs never lose or corrupt data: the faults of issue 13, each replayed.

1. two processes training into one folder; 2. a run killed between the two renames of a checkpoint
save, or with training_state.json missing; 3. answers such as NA, None, null, nan surviving a
resume; 4. an output folder holding someone else's files; 5. a game catalogue with two games of one
name; 6. damaged files and bad inputs. Plus the preset-edit demonstration: a run refuses to resume
under other PPO settings than it started with.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest

from moralkit.storage import DamagedFileError, FolderLockedError, ForeignFolderError
from moralkit.training import RunDamagedError, RunMismatchError, TrainingConfig, TrainingRun
from test_training import TINY, tiny_model


class Stop(Exception):
    """Raised by a training callback: the process 'dies' there (nothing after it runs)."""


def stop_at(episode):
    def callback(run, rounds):
        if run.episode == episode:
            raise Stop

    return callback


def interrupted(folder, at=3, **kw):
    """A run stopped after episode ``at - 1``: checkpoint at episode 2, episodes 0-2 logged."""
    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**{**TINY, **kw}), folder, model=model, tokenizer=tok)
    with pytest.raises(Stop):
        run.train(progress=False, callback=stop_at(at))
    run.release()
    return run


def resume(folder, **kw):
    """Resume (or start) the TINY run in ``folder``; returns (run, episodes at which each update ended)."""
    model, tok = tiny_model()
    seen = []
    run = TrainingRun(TrainingConfig(**{**TINY, **kw}), folder, model=model, tokenizer=tok)
    run.train(progress=False, callback=lambda r, rounds: seen.append(r.episode))
    return run, seen


def rows_text(path, episodes):
    """The raw CSV lines of the given episodes (the episode is the first column of rounds.csv)."""
    lines = path.read_text().splitlines()
    return [line for line in lines[1:] if int(line.split(",", 1)[0]) in episodes]


# --------------------------------------------------------------------- fault 1: two processes, one folder
HOLDER = textwrap.dedent(
    """
    import pathlib, sys, time, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from test_training import TINY, tiny_model
    from moralkit.training import TrainingConfig, TrainingRun

    def wait_after_third(run, rounds):
        if run.episode == 3:   # checkpoint after episode 2 written, episode 3 not trained yet
            pathlib.Path({ready!r}).write_text("ready")
            time.sleep(300)

    model, tok = tiny_model()
    TrainingRun(TrainingConfig(**TINY), {folder!r}, model=model, tokenizer=tok).train(progress=False, callback=wait_after_third)
    """
)


def test_fault_1_a_second_process_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    folder, ready = tmp_path / "run", tmp_path / "ready"
    script = HOLDER.format(tests=os.path.dirname(__file__), folder=str(folder), ready=str(ready))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() < deadline, "the first process never got going"
            time.sleep(0.5)
        logged = (folder / "rounds.csv").read_text()
        with pytest.raises(FolderLockedError) as refused:
            resume(folder)
        message = str(refused.value)
        assert f"process {proc.pid} on host {socket.gethostname()!r}" in message and str(folder / ".lock") in message
        assert "log every episode twice" in message and "delete" in message
        assert (folder / "rounds.csv").read_text() == logged  # the second process wrote nothing
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the first process is gone but its lock file is still there: stale, so the run resumes
    assert (folder / ".lock").exists()
    run, seen = resume(folder)
    assert seen == [3, 4]  # from the checkpoint at episode 2
    log = run.log
    assert sorted(log["episode"].unique()) == [0, 1, 2, 3]
    assert not log.duplicated(["episode", "game_id", "round"]).any()  # every episode logged once
    assert not (folder / ".lock").exists()  # released at the end


# --------------------------------------------------------------------- fault 2: crashes inside a checkpoint save
def test_fault_2_a_run_killed_between_the_two_renames_resumes_from_the_old_checkpoint(tmp_path):
    folder = tmp_path / "run"
    interrupted(folder)
    before = rows_text(folder / "rounds.csv", {0, 1})
    # the state a kill between "checkpoint -> .checkpoint.old" and ".checkpoint.tmp -> checkpoint" leaves
    os.replace(folder / "checkpoint", folder / ".checkpoint.old")
    (folder / f".checkpoint.tmp-{os.getpid()}" / "learner").mkdir(parents=True)  # an unfinished new one
    with pytest.warns(UserWarning, match="resuming from the previous checkpoint"):
        run, seen = resume(folder)
    assert seen == [3, 4]  # resumed at episode 2 instead of restarting at 0
    assert rows_text(folder / "rounds.csv", {0, 1}) == before  # logs kept
    assert run.finished and not (folder / ".checkpoint.old").exists()


def test_fault_2_a_missing_training_state_falls_back_to_the_old_checkpoint_or_stops(tmp_path):
    folder = tmp_path / "run"
    interrupted(folder)
    shutil.copytree(folder / "checkpoint", folder / ".checkpoint.old")
    (folder / "checkpoint" / "training_state.json").unlink()
    with pytest.warns(UserWarning, match="training_state.json is missing"):
        _, seen = resume(folder)
    assert seen == [3, 4]

    other = tmp_path / "other"
    interrupted(other)
    (other / "checkpoint" / "training_state.json").unlink()
    logged = (other / "rounds.csv").read_text()
    with pytest.raises(RunDamagedError, match=r"training_state.json is missing. Yet rounds.csv holds 3 episode") as err:
        resume(other)
    assert "Nothing was changed" in str(err.value) and f"delete {other}" in str(err.value)
    assert (other / "rounds.csv").read_text() == logged  # not restarted, nothing deleted


# --------------------------------------------------------------------- fault 3: logs round-trip exactly
def test_fault_3_answers_that_look_like_missing_values_survive_a_resume(tmp_path):
    folder = tmp_path / "run"
    interrupted(folder)
    log = pd.read_csv(folder / "rounds.csv", dtype=str, keep_default_na=False)
    words = ["NA", "None", "null", "nan", "N/A", "007", "a, b", 'say "hi"\nthen go', "#N/A", "NaN"]
    early = log["episode"].astype(int) < 2
    log.loc[early, "answer"] = [words[i % len(words)] for i in range(int(early.sum()))]
    log.to_csv(folder / "rounds.csv", index=False)
    written = (folder / "rounds.csv").read_text()
    written = written[: written.index("\n2,")]  # the header and episodes 0-1, as text
    run, seen = resume(folder)
    assert seen == [3, 4]
    answers = run.log.loc[run.log["episode"] < 2, "answer"].tolist()
    assert answers == [words[i % len(words)] for i in range(int(early.sum()))]  # exactly as written
    from moralkit.storage import read_table

    assert read_table(folder / "rounds.csv").loc[0, "answer"] == "NA"
    assert (folder / "rounds.csv").read_text().startswith(written)  # byte for byte


# --------------------------------------------------------------------- fault 4: foreign folders
def test_fault_4_a_folder_with_someone_elses_files_is_never_written(tmp_path, capsys):
    from moralkit.cli import main
    from moralkit.experiments import run_grid

    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "rounds.csv").write_text("my,own,data\n1,2,3\n")
    with pytest.raises(ForeignFolderError, match=r"thesis is not empty and is not a training run folder .*holds rounds.csv"):
        TrainingRun(TrainingConfig(**TINY), thesis)
    assert main(["train", "--profile", "smoke", "--out", str(thesis)]) == 2
    assert "not a training run folder" in capsys.readouterr().err
    with pytest.raises(ForeignFolderError, match="grid folder"):
        run_grid(["game"], out=thesis, profile="smoke", evaluate=False, progress=False)
    assert (thesis / "rounds.csv").read_text() == "my,own,data\n1,2,3\n" and sorted(os.listdir(thesis)) == ["rounds.csv"]
    # an empty folder, or one holding only a lock file, is fine
    (tmp_path / "empty").mkdir()
    TrainingRun(TrainingConfig(**TINY), tmp_path / "empty")


# --------------------------------------------------------------------- fault 5: two games of one name
def test_fault_5_a_catalogue_with_two_games_of_one_name_is_refused(tmp_path):
    from moralkit.games import GameError, load_games

    game = {"name": "pd", "cells": {"CC": [3, 3], "CD": [0, 4], "DC": [4, 0], "DD": [1, 1]}}
    path = tmp_path / "games.json"
    path.write_text(json.dumps({"games": [game, {**game, "cells": {**game["cells"], "DD": [2, 2]}}]}))
    with pytest.raises(GameError, match=rf"{re.escape(str(path))} defines the game 'pd' twice"):
        load_games(path)
    path.write_text('{"games": [')
    with pytest.raises(DamagedFileError, match=rf"{re.escape(str(path))} is damaged: not valid JSON"):
        load_games(path)


# --------------------------------------------------------------------- fault 6: damaged files, bad inputs
def test_fault_6_a_truncated_checkpoint_adapter_names_the_file(tmp_path):
    folder = tmp_path / "run"
    interrupted(folder)
    weights = folder / "checkpoint" / "learner" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    logged = (folder / "rounds.csv").read_text()
    with pytest.raises(RunDamagedError) as err:
        resume(folder)
    message = str(err.value)
    assert f"{weights} is damaged" in message and "cannot resume from its checkpoint (episode 2)" in message
    assert f"delete {folder}" in message and (folder / "rounds.csv").read_text() == logged


def test_fault_6_truncated_json_files_name_the_file_and_what_to_do(tmp_path):
    from moralkit.experiments import load_runs

    folder = tmp_path / "run"
    interrupted(folder)
    state = folder / "checkpoint" / "training_state.json"
    state.write_text(state.read_text()[:40])
    with pytest.raises(RunDamagedError, match=rf"{re.escape(str(state))} is damaged: not valid JSON \(it looks cut short"):
        resume(folder)
    config = folder / "config.json"
    config.write_text(config.read_text()[:25])
    with pytest.raises(DamagedFileError, match=rf"{re.escape(str(config))} is damaged: not valid JSON.*delete {re.escape(str(folder))}"):
        TrainingRun(TrainingConfig(**TINY), folder)
    with pytest.raises(DamagedFileError, match=re.escape(str(config))):
        load_runs(folder)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["train", "--profile", "smoke", "--reward", "game:abc"], "the length after ':' must be a whole number"),
        (["train", "--profile", "smoke", "--reward", "game->", "--episodes", "4"], "has an empty part"),
        (["train", "--profile", "smoke", "--reward", "game->deontological", "--episodes", "1"], "needs at least 2 episodes, got 1"),
        (["q-learning", "--iterations", "-5"], "--iterations must be at least 1, got -5"),
        (["q-learning", "--iterations", "0"], "--iterations must be at least 1, got 0"),
        (["q-learning", "--runs", "0"], "--runs must be at least 1, got 0"),
        (["q-learning", "--xi", "nan", "--iterations", "10", "--runs", "1"], "must be a finite number >= 0, got nan"),
        (["rewards", "--xi", "nan"], "must be a finite number >= 0, got nan"),
        (["rewards", "--xi", "-3"], "must be a finite number >= 0, got -3"),
        (["train", "--profile", "smoke", "--episodes", "0"], "episodes must be at least 1, got 0"),
        (["grid", "--profile", "smoke", "--workers", "0", "--no-evaluate"], "workers must be at least 1"),
        (["grid", "--profile", "smoke", "--seeds", "0", "0", "--no-evaluate"], "names one condition twice (game__tit_for_tat__seed0"),
        (["grid", "--profile", "smoke", "--opponents", "tft", "tit_for_tat", "--no-evaluate"], "names one condition twice"),
        (["grid", "--profile", "smoke", "--seeds", "-1", "--no-evaluate"], "seed must be 0 or more"),
        (["train", "--profile", "smoke", "--seed", "-1"], "seed must be 0 or more"),
        (["evaluate", "--profile", "smoke", "--labels", "nope"], "Unknown label set 'nope'"),
        (["evaluate", "--profile", "smoke", "--games", "nope"], "nope"),
        (["workbook", "--only"], "expected at least one argument"),
        (["evaluate", "--profile", "smoke", "--out", "a_file"], "--out a_file is a file; give a folder"),
        (["bench", "--profile", "smoke", "--save", "."], "--save . is a folder; give the path of a CSV file"),
        (["maxmin-report", "run", "--out", "."], "--out . is a folder"),
        (["train", "--profile", "smoke", "--ppo", "cliprange=-1"], "cliprange must be a number > 0, got -1"),
        (["train", "--profile", "smoke", "--ppo", "adam_betas=0.9"], "adam_betas takes two numbers in [0, 1)"),
        (["train", "--profile", "smoke", "--ppo", "lora_r=4", "lora_r=8"], "--ppo sets lora_r twice (lora_r=4 lora_r=8)"),
        (["maxmin-report", "a_run", "./a_run/"], "The run in a_run is given twice (a grid folder stands for every run in it)"),
        (["maxmin-report", "a_grid", "a_grid/r1"], "The run in a_grid/r1 is given twice"),
        (["train", "--profile", "smoke", "--ppo", "lora_dropout=1.0"], "lora_dropout must be in [0, 1), got 1.0"),
    ],
)
def test_fault_6_bad_inputs_get_a_clear_error(argv, expected, capsys, tmp_path, monkeypatch):
    from moralkit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "a_grid" / "r1").mkdir(parents=True)
    (tmp_path / "a_grid" / "r1" / "config.json").write_text("{}")
    try:
        code = main(argv)
    except SystemExit as stop:  # refused by the argument parser itself (e.g. --xi), before anything runs
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err


def test_fault_6_negative_xi_is_refused_wherever_rewards_are_made():
    from moralkit.rewards import RewardError, get_reward, make_reward

    for make in (lambda: get_reward("deontological", xi=-1), lambda: get_reward("maxmin(game,deontological)", xi=-1),
                 lambda: make_reward(lambda g, m, o, p: 0.0, xi=float("inf")), lambda: TrainingConfig(xi=-3)):
        with pytest.raises(RewardError, match="xi"):
            make()


def test_fault_6_the_no_resume_error_names_an_option_that_exists(tmp_path):
    from moralkit.cli import build_parser

    folder = tmp_path / "run"
    folder.mkdir()
    config = TrainingConfig(**TINY)
    (folder / "config.json").write_text(json.dumps(config.settings()))
    with pytest.raises(RunMismatchError) as err:
        TrainingRun(config, folder, resume=False)
    options = {o for action in build_parser(["train"])._subparsers._group_actions[0].choices["train"]._actions
               for o in action.option_strings}
    named = set(re.findall(r"--[a-z][a-z-]*", str(err.value)))
    assert named and named <= options, named - options
    assert "Leave out --no-resume" in str(err.value)


# --------------------------------------------------------------------- the preset-edit demonstration
def test_resuming_after_a_preset_was_edited_is_refused_with_the_difference(tmp_path, monkeypatch):
    from moralkit import ppo

    folder = tmp_path / "run"
    interrupted(folder)
    recorded = json.loads((folder / "config.json").read_text())
    assert recorded["ppo"]["ppo_epochs"] == 1 and recorded["format"] == 2  # the resolved settings are in the folder
    monkeypatch.setitem(ppo._PRESETS, "smoke", {**ppo._PRESETS["smoke"], "ppo_epochs": 3})  # someone edits the preset
    with pytest.raises(RunMismatchError) as err:
        TrainingRun(TrainingConfig(**TINY), folder)
    message = str(err.value)
    assert "ppo.ppo_epochs: 1 in the run folder, 3 now" in message
    assert "preset 'smoke' has changed" in message and "Restore those settings" in message and "another folder" in message
    # a folder written before the settings were recorded: its checkpoint's copy of the PPO settings is compared
    del recorded["ppo"], recorded["format"]
    (folder / "config.json").write_text(json.dumps(recorded))
    with pytest.raises(RunMismatchError, match="ppo.ppo_epochs: 1 in the run folder, 3 now"):
        TrainingRun(TrainingConfig(**TINY), folder)
    monkeypatch.undo()  # the edit undone: the run resumes
    _, seen = resume(folder)
    assert seen == [3, 4] and json.loads((folder / "config.json").read_text())["format"] == 2  # recorded now


def test_a_finished_run_stays_readable_after_a_preset_was_edited(tmp_path, monkeypatch):
    from moralkit import ppo
    from test_training import train

    run = train(tmp_path / "done", episodes=2)
    monkeypatch.setitem(ppo._PRESETS, "smoke", {**ppo._PRESETS["smoke"], "ppo_epochs": 3})
    again = TrainingRun(run.config, run.folder)  # no refusal: nothing will be trained
    assert again.finished and again.ppo_changes() == [("ppo.ppo_epochs", 1, 3)]
    assert len(again.log) == len(run.log)


def test_an_old_run_folder_still_loads_and_resumes(tmp_path):
    """A folder of the format before issue 13: no PPO settings in config.json, batch_size in the checkpoint."""
    import torch

    from moralkit.experiments import load_runs

    folder = tmp_path / "old"
    interrupted(folder)
    settings = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in settings.items() if k not in ("ppo", "format")}))
    copy = folder / "checkpoint" / "learner" / "ppo_config.json"
    copy.write_text(json.dumps({**json.loads(copy.read_text()), "batch_size": 8}))
    state_file = folder / "checkpoint" / "learner" / "trainer_state.pt"
    state = torch.load(state_file, weights_only=True)
    state["config"]["batch_size"] = 8
    torch.save(state, state_file)
    run, seen = resume(folder)
    assert seen == [3, 4] and run.finished
    assert load_runs(folder)[0].config == TrainingConfig(**TINY)
    (copy.parent.parent.parent / "config.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "ppo"}))
    assert load_runs(folder)[0].finished  # a finished old run is read for evaluation whatever its settings


def test_a_failed_checkpoint_save_keeps_the_previous_one(tmp_path, monkeypatch):
    import errno

    import torch

    from moralkit.storage import OutputError

    folder = tmp_path / "run"
    interrupted(folder)
    model, tok = tiny_model()
    run = TrainingRun(TrainingConfig(**TINY), folder, model=model, tokenizer=tok).setup()  # at episode 2, locked
    assert run.episode == 2 and (folder / ".lock").exists()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OutputError, match="previous checkpoint is intact"):
        run.save_checkpoint()

    def full_disk_as_torch_says(*args, **kwargs):  # what torch.save raised on a full tmpfs
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 110208 vs 110096")

    monkeypatch.setattr(torch, "save", full_disk_as_torch_says)
    with pytest.raises(OutputError, match="is the disk full.*previous checkpoint is intact"):
        run.save_checkpoint()

    def a_bug(*args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(torch, "save", a_bug)
    with pytest.raises(RuntimeError, match="something else"):  # not called a full disk
        run.save_checkpoint()
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir() if "checkpoint" in p.name) == ["checkpoint"]  # no debris
    assert json.loads((folder / "checkpoint" / "training_state.json").read_text())["episode"] == 2
    run.release()
    assert not (folder / ".lock").exists()


def test_fault_6_a_foreign_log_is_refused_and_kept(tmp_path):
    """A run whose rounds.csv is not a moralkit log: resuming says so and changes nothing (it once
    deleted the file); a finished run missing its log or adapter is refused where results are read."""
    from moralkit.experiments import load_runs

    folder = tmp_path / "run"
    interrupted(folder)
    rounds = folder / "rounds.csv"
    updates_before = (folder / "updates.csv").read_text()
    rounds.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(RunDamagedError, match=r"rounds.csv is not a moralkit training log \(no 'episode' column; its columns: a, b, c\)\. Nothing was changed"):
        resume(folder)
    assert rounds.read_text() == "a,b,c\n1,2,3\n" and (folder / "updates.csv").read_text() == updates_before

    finished = tmp_path / "finished"
    resume(finished)[0].release()
    assert load_runs(finished)[0].problems() == []
    shutil.rmtree(finished / "adapter")
    assert load_runs(finished)[0].problems(adapters=False) == []  # its log is enough for the training tables
    log = pd.read_csv(finished / "rounds.csv")
    log[log["episode"] < 2].to_csv(finished / "rounds.csv", index=False)
    problems = TrainingRun(TrainingConfig(**TINY), finished).problems()
    assert len(problems) == 2 and "adapter" in problems[0] and "lacks 2 of its 4 episodes (from episode 2)" in problems[1]
    with pytest.raises(RunDamagedError, match="lacks 2 of its 4 episodes"):
        load_runs(finished)
    (finished / "rounds.csv").unlink()
    assert "rounds.csv is missing or empty" in TrainingRun(TrainingConfig(**TINY), finished).problems()[1]


def test_fault_6_a_run_folder_swallowed_by_an_option_list_is_named(tmp_path, capsys, monkeypatch):
    """``moralkit evaluate --value-prompted utilitarian RUN``: argparse gives RUN to the option; say so."""
    from moralkit.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "config.json").write_text("{}")
    for option in ("--value-prompted", "--labels"):
        assert main(["evaluate", "--profile", "smoke", option, "test", "run1"]) == 2
        err = capsys.readouterr().err
        assert f"'run1' was read as a value of {option}, but it is a run folder" in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()  # refused before anything ran or was written


def test_fault_6_a_foreign_or_newer_config_json_is_refused_where_runs_are_read(tmp_path, capsys):
    """A model folder's config.json is not a run; a newer run-folder format is not guessed at."""
    from moralkit.cli import main
    from moralkit.experiments import load_runs

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    for read in (lambda: load_runs(folder), lambda: TrainingRun(TrainingConfig(**TINY), folder)):
        with pytest.raises(ForeignFolderError, match="is not a moralkit training run.*lacks the keys reward.*model_type"):
            read()
    assert main(["train", "--profile", "smoke", "--out", str(folder)]) == 2
    assert "is not a moralkit training run" in capsys.readouterr().err
    assert os.listdir(folder) == ["config.json"]  # nothing written beside it

    run = tmp_path / "run"
    interrupted(run)
    settings = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**settings, "format": 99}))
    for read in (lambda: load_runs(run), lambda: resume(run)):
        with pytest.raises(RunMismatchError, match="written by a newer moralkit \\(run-folder format 99; this one reads "
                                                   "formats 1 to 2\\)"):
            read()
    (run / "config.json").write_text(json.dumps({**settings, "format": "two"}))
    with pytest.raises(DamagedFileError, match="its run-folder format is 'two'"):
        resume(run)
    (run / "config.json").write_text(json.dumps({**settings, "reward": "nonsense"}))
    with pytest.raises(DamagedFileError, match="config.json holds settings this moralkit cannot .*Unknown reward 'nonsense'"):
        load_runs(run)
