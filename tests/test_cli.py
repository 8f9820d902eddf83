"""The moralkit command."""

import subprocess
import sys

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


def test_help_is_instant_and_lists_verbs():
    out = subprocess.run([sys.executable, "-m", "moralkit.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "workbook" in out and "q-learning" in out
