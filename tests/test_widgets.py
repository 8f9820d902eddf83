"""The ipywidgets front-ends build and update headless (no browser, no kernel)."""

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

from moralkit.widgets import payoff_editor, reward_explorer  # noqa: E402


def test_payoff_editor_starts_from_a_game():
    editor = payoff_editor("prisoners_dilemma")
    assert editor.game.payoff(1, 0) == (4.0, 0.0)
    assert bytes(editor.image.value).startswith(b"\x89PNG")
    assert "prisoner" in editor.facts.value and editor.error is None


def test_payoff_editor_reclassifies_when_a_value_changes():
    editor = payoff_editor("prisoners_dilemma")
    before, picture = editor.updates, editor.image.value
    # lower the temptation T below R in both players' cells: no longer a dilemma
    editor.inputs["DC"][0].value = 2.0
    editor.inputs["CD"][1].value = 2.0
    assert editor.updates == before + 2
    assert editor.game.payoff(1, 0) == (2.0, 0.0)
    assert editor.game.classify() != "prisoner's dilemma"
    assert "no ✗" in editor.facts.value
    assert bytes(editor.image.value) != bytes(picture)


def test_payoff_editor_shows_a_message_not_a_traceback_for_invalid_payoffs():
    editor = payoff_editor("stag_hunt")
    editor.inputs["CD"][1].value = math.nan
    assert editor.game is None
    assert "O's payoff in cell (C, D)" in editor.error
    assert "✗" in editor.message.value and editor.facts.value == ""
    editor.inputs["CD"][1].value = 3.0  # fixing it brings the game back
    assert editor.game is not None and editor.message.value == ""


def test_payoff_editor_loads_a_preset_with_one_redraw():
    editor = payoff_editor()
    before = editor.updates
    editor.preset.value = "defective_coordination"
    assert editor.updates == before + 1
    assert editor.game.payoff(1, 1) == (4.0, 4.0)
    assert (editor.payoffs == editor.game.payoffs).all()


def test_reward_explorer_redraws_when_xi_changes():
    explorer = reward_explorer(["deontological"], "stag_hunt", xi=3)
    picture = explorer.image.value
    explorer.xi.value = 6
    assert explorer.updates == 2 and bytes(explorer.image.value) != bytes(picture)
    explorer.game.value = "chicken"
    assert explorer.updates == 3 and explorer.message.value == ""


def test_payoff_editor_never_calls_a_game_a_prisoners_dilemma_that_is_no_social_dilemma():
    editor = payoff_editor("prisoners_dilemma")
    editor.inputs["DC"][0].value = 7.0  # T = 7: T > R > P > S, but 2R < T + S
    editor.inputs["CD"][1].value = 7.0
    assert not editor.game.is_social_dilemma()
    assert "no ✗" in editor.facts.value
    assert "prisoner&#x27;s dilemma" not in editor.facts.value and "prisoner's dilemma" not in editor.facts.value
    assert "not a social dilemma" in editor.facts.value
