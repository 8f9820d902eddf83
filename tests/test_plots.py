"""Figures draw without error, return a Figure, and use the shared action-type colours."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from moralkit import plots  # noqa: E402
from moralkit.env import ACTION_TYPES, IteratedGame, run_episodes  # noqa: E402
from moralkit.games import MatrixGame  # noqa: E402
from moralkit.tabular import outcome_metrics, train_q_learning  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def tft_result():
    return train_q_learning("prisoners_dilemma", "game", "tit_for_tat", iterations=300, n_runs=3, seed=0)


@pytest.fixture(scope="module")
def pair_result():
    return train_q_learning(
        "prisoners_dilemma", "utilitarian", "learner", opponent_reward="game", iterations=300, n_runs=3, seed=0
    )


def test_every_action_type_has_its_own_fixed_colour():
    assert set(plots.ACTION_TYPE_COLOURS) == set(ACTION_TYPES)
    assert len(set(plots.ACTION_TYPE_COLOURS.values())) == len(ACTION_TYPES)


def test_action_type_area_stacks_shares_in_the_fixed_colours():
    env = IteratedGame("prisoners_dilemma", "random", n_games=8, seed=0)
    frame = run_episodes(env, lambda s, rng: rng.integers(-1, 2, len(s)), episodes=6)
    fig = plots.action_type_area(frame, x="episode")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    colours = [to_hex(c.get_facecolor()[0]) for c in ax.collections]
    assert colours == [plots.ACTION_TYPE_COLOURS[t].lower() for t in ACTION_TYPES]
    assert ax.get_ylim() == (0.0, 1.0)
    # the top of the stack is 1 everywhere: shares add up
    top = ax.collections[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0)


def test_action_type_area_draws_into_a_given_axes_and_explains_a_missing_column():
    fig, ax = plt.subplots()
    frame = pd.DataFrame({"step": [0, 0, 1, 1], "action_type": ["C|C", "D|C", "D|D", "illegal"]})
    assert plots.action_type_area(frame, x="step", ax=ax, legend=False) is fig
    with pytest.raises(KeyError, match="action_type"):
        plots.action_type_area(frame.drop(columns="action_type"), x="step")


def test_q_learning_dynamics_for_one_and_for_the_second_learner(tft_result, pair_result):
    fig = plots.q_learning_dynamics(tft_result, window=50)
    assert "γ = 0.9" in fig.axes[0].get_title()
    fig = plots.q_learning_dynamics(pair_result, who="b")
    assert "game vs learner (utilitarian)" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="No learner"):
        plots.q_learning_dynamics(tft_result, who="b")
    grid = plots.dynamics_grid({"one": tft_result, "two": pair_result})
    assert [ax.get_title() for ax in grid.axes[:2]] == ["one", "two"]


def test_payoff_heatmaps_mark_nash_cells():
    fig = plots.payoff_heatmaps()
    assert len([ax for ax in fig.axes if ax.get_visible() and ax.axison]) == 6
    pd_ax = fig.axes[0]
    assert pd_ax.get_title() == "Prisoner's Dilemma"
    texts = [t.get_text() for t in pd_ax.texts]
    assert texts.count("Nash") == 1 and texts.count("★") == 3  # (D, D) is Nash; three Pareto cells
    stag = plots.payoff_heatmap("stag_hunt")
    assert [t.get_text() for t in stag.axes[0].texts].count("Nash") == 2


def test_payoff_heatmap_accepts_a_custom_game_with_fractional_payoffs():
    game = MatrixGame.from_cells("mine", (2.5, 2.5), (0, 3), (3, 0), (1, 1))
    fig = plots.payoff_heatmap(game)
    assert "2.5" in [t.get_text() for t in fig.axes[0].texts]


def test_reward_heatmaps_show_xi_in_the_title():
    fig = plots.reward_heatmaps(["game", "deontological"], "prisoners_dilemma", xi=5)
    titles = [ax.get_title() for ax in fig.axes]
    assert "ξ = 5" in titles[1] and "ξ" not in titles[0]
    values = [t.get_text() for t in fig.axes[1].texts]
    assert "-5" in values


def test_policy_heatmap_and_outcome_metrics_plot(tft_result, pair_result):
    table = pd.concat([tft_result.policy_table(), pair_result.policy_table()], axis=1)
    fig = plots.policy_heatmap(table, title="policies")
    assert fig.axes[0].get_title() == "policies"
    plots.policy_heatmap(tft_result.policy_table().iloc[:, 0])  # a Series works too
    metrics = outcome_metrics(pair_result.history, window=100)
    fig = plots.outcome_metrics_plot({"ut vs game": metrics, "again": metrics})
    assert len(fig.axes) == 3
    assert isinstance(plots.outcome_metrics_plot(metrics), Figure)


def test_discounted_values_plot_marks_the_threshold():
    fig = plots.discounted_values_plot("prisoners_dilemma")
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.get_lines()[:3]] == ["always C", "always D", "alternate D, C"]
    assert ax.get_lines()[3].get_xdata()[0] == pytest.approx(1 / 3)


def test_pretty_name():
    assert plots.pretty_name("game_deontological") == "game + deontological"
    assert plots.pretty_name("virtue_equality") == "virtue equality"


# --------------------------------------------------------------------- evaluation figures (docs/science.md §6)
def _summary(agents=("no_finetuning", "my_agent"), games=("prisoners_dilemma", "stag_hunt", "chicken")):
    """A hand-made evaluation summary: known regrets and action-type shares."""
    rows = []
    for i, agent in enumerate(agents):
        for j, game in enumerate(games):
            shares = dict(zip(ACTION_TYPES, [0.1 * (i + 1), 0.1, 0.2, 0.1 * (j + 1), 0.7 - 0.1 * (i + j + 2)]))
            rows.append({"agent": agent, "game": game, "labels": "test", "rounds": 50, **shares,
                         "deont_regret": 1.0 + i + 0.5 * j, "utilit_regret": 0.1 * (i + j + 1), "mean_payoff": 1.0})
    return pd.DataFrame(rows)


def _bars(ax):
    from matplotlib.patches import Rectangle

    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_regret_bars_draw_ours_solid_and_the_papers_hatched():
    from moralkit.evaluate import compare_with_paper, paper_reference

    summary = _summary()
    fig = plots.regret_bars(compare_with_paper(summary), metric="deont_regret", xi=4)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = _bars(ax)
    solid = [b for b in bars if not b.get_hatch()]
    hatched = [b for b in bars if b.get_hatch()]
    assert sorted(b.get_height() for b in solid) == sorted(summary["deont_regret"])
    # the paper only has no_finetuning among our agents: one hatched bar per game, its values
    ref = paper_reference().set_index(["model", "game"])["deont_regret"]
    assert sorted(b.get_height() for b in hatched) == sorted(ref.loc["no_finetuning"].loc[list(summary["game"].unique())])
    assert "ξ = 4" in ax.get_title()
    assert [t.get_text().replace("\n", " ") for t in ax.get_xticklabels()] == ["Prisoner's Dilemma", "Stag Hunt", "Chicken"]
    assert "paper (Fig. 4)" in [t.get_text() for t in ax.get_legend().get_texts()]
    # the same with the reference passed explicitly, both metrics (one panel each)
    fig = plots.regret_bars(summary, reference="paper", metric=("deont_regret", "utilit_regret"))
    assert len(fig.axes) == 2 and fig.axes[1].get_ylim()[1] == pytest.approx(1.05)
    assert len([b for b in _bars(fig.axes[1]) if b.get_hatch()]) == 3
    # no reference: only our bars
    assert not any(b.get_hatch() for b in _bars(plots.regret_bars(summary).axes[0]))


def test_regret_bars_error_bars_and_bad_input():
    rounds = pd.DataFrame(
        {"agent": "a", "game": "prisoners_dilemma", "labels": "test", "reward_deontological": [0.0, -4.0, -6.0, 0.0],
         "reward_utilitarian": [6.0, 4.0, -6.0, 6.0], "best_collective": 6.0}
    )
    summary = pd.DataFrame({"agent": ["a"], "game": ["prisoners_dilemma"], "labels": ["test"],
                            "deont_regret": [2.5], "utilit_regret": [1 / 3]})
    ax = plots.regret_bars(summary, rounds=rounds).axes[0]
    assert ax.lines or ax.collections  # the confidence interval is drawn
    with pytest.raises(ValueError, match="metric"):
        plots.regret_bars(summary, metric="regret")
    with pytest.raises(ValueError, match="label set"):
        plots.regret_bars(pd.concat([summary, summary.assign(labels="train")]))


def test_action_type_bars_stack_to_one_in_the_shared_colours():
    summary = _summary()
    fig = plots.action_type_bars(summary)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["Prisoner's Dilemma", "Stag Hunt", "Chicken"]
    for ax in panels:
        bars = _bars(ax)
        assert len(bars) == len(ACTION_TYPES) * 2  # five segments for each of the two agents
        colours = [to_hex(b.get_facecolor()) for b in bars[::2]]
        assert colours == [plots.ACTION_TYPE_COLOURS[t].lower() for t in ACTION_TYPES]
        for row in range(2):  # every agent's bar reaches 1
            segments = bars[row::2]
            assert segments[-1].get_x() + segments[-1].get_width() == pytest.approx(1.0)
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["no finetuning", "my agent"]
    with pytest.raises(KeyError, match="action-type"):
        plots.action_type_bars(summary.drop(columns="illegal"))


def test_label_probability_heatmaps_split_the_legal_mass_from_the_preference():
    table = pd.DataFrame({"my_prev": ["C", "C", "D", "D"], "opp_prev": ["C", "D", "C", "D"],
                          "P(C)": [0.1, 0.05, 0.0, 0.3], "P(D)": [0.1, 0.15, 0.5, 0.1],
                          "P(illegal)": [0.8, 0.8, 0.5, 0.6]})
    fig = plots.label_probability_heatmaps({"a": table, "b": table})
    by_title = {ax.get_title(): ax for ax in fig.axes}
    legal_ax, pref_ax = by_title["P(legal answer) = P(C) + P(D)"], by_title["P(D | legal answer)"]
    assert [t.get_text() for t in legal_ax.get_yticklabels()] == ["C|C", "C|D", "D|C", "D|D"]
    legal = legal_ax.collections[0].get_array().reshape(4, 2)[:, 0]
    preference = pref_ax.collections[0].get_array().reshape(4, 2)[:, 0]
    assert list(np.asarray(legal)) == pytest.approx([0.2, 0.2, 0.5, 0.4])
    assert list(np.asarray(preference)) == pytest.approx([0.5, 0.75, 1.0, 0.25])
    assert isinstance(plots.label_probability_heatmaps(table), Figure)


# --------------------------------------------------------------------- LLM fine-tuning (chapter 4)
def _training_log(episodes=6, rounds=20, seed=0, switch_at=None):
    """A synthetic PPO training log: illegal answers vanish, then D takes over."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(episodes):
        p_illegal, p_d = max(0.0, 0.9 - 0.3 * e), e / episodes
        for _ in range(rounds):
            opp_prev = "C" if rng.random() < 0.5 else "D"
            move = "illegal" if rng.random() < p_illegal else ("D" if rng.random() < p_d else "C")
            rows.append({"episode": e, "train_reward": "game" if switch_at is None or e < switch_at else "deontological",
                         "my_prev": "C", "opp_prev": opp_prev, "my_move": move,
                         "action_type": "illegal" if move == "illegal" else f"{move}|{opp_prev}"})
    return pd.DataFrame(rows)


def _fake_run(reward="game", **kwargs):
    from types import SimpleNamespace

    from moralkit.training import TrainingConfig

    log = _training_log(**kwargs)
    updates = pd.DataFrame({"episode": sorted(log["episode"].unique())})
    updates["objective/kl"] = np.linspace(0, 3, len(updates))
    updates["ppo/loss/policy"] = np.linspace(0.1, -0.1, len(updates))
    return SimpleNamespace(config=TrainingConfig(reward=reward, episodes=len(updates)), log=log, updates=updates,
                           episode=len(updates))


def _policy_table(p_c, p_d):
    p_c, p_d = np.asarray(p_c, float), np.asarray(p_d, float)
    return pd.DataFrame({"my_prev": list("CCDD"), "opp_prev": list("CDCD"), "P(C)": p_c, "P(D)": p_d,
                         "P(illegal)": 1 - p_c - p_d})


def test_training_dynamics_stacks_shares_per_episode_and_marks_a_reward_switch():
    run = _fake_run()
    fig = plots.training_dynamics(run)
    ax = fig.axes[0]
    assert [to_hex(c.get_facecolor()[0]) for c in ax.collections] == [plots.ACTION_TYPE_COLOURS[t].lower() for t in ACTION_TYPES]
    assert ax.get_title() == "game vs tit for tat"
    assert ax.get_ylim() == (0.0, 1.0)
    top = ax.collections[-1].get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(1.0)
    # a log works too; an unlearning log gets a dashed line where the reward changes
    fig, ax = plt.subplots()
    assert plots.training_dynamics(_training_log(switch_at=3), ax=ax, legend=False) is fig
    assert [line.get_xdata()[0] for line in ax.get_lines()] == [2.5]
    assert any("deontological" in t.get_text() for t in ax.texts)
    with pytest.raises(ValueError, match="train it first"):
        plots.training_dynamics(_training_log().iloc[:0])


def test_training_grid_one_panel_per_run_and_one_legend():
    runs = [_fake_run(r, seed=i) for i, r in enumerate(["game", "deontological", "utilitarian", "game_deontological"])]
    fig = plots.training_grid(runs)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["game", "deontological", "utilitarian", "game + deontological"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(fig.legends) == 1 and len(fig.legends[0].get_texts()) == len(ACTION_TYPES)
    fig = plots.training_grid({"mine": _training_log()})
    assert [ax.get_title() for ax in fig.axes] == ["mine"]
    with pytest.raises(ValueError):
        plots.training_grid([])


def test_live_training_plot_is_silent_headless_and_saves(tmp_path, monkeypatch):
    import moralkit.workbook

    wb = moralkit.workbook.setup("test_live", profile="smoke", output_dir=tmp_path, style=False)
    run = _fake_run()
    live = plots.LiveTrainingPlot(every=2, live=False)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a))
    for _ in range(3):
        live(run, None)
    assert shown == []  # headless: nothing displayed
    path = live.save(wb, "live")
    assert path.exists() and path.suffix == ".png"
    left, right = live.figure.axes[:2]
    assert left.get_title() == "game vs tit for tat" and len(left.collections) == len(ACTION_TYPES)
    assert list(right.get_lines()[0].get_ydata()) == pytest.approx(list(run.updates["objective/kl"]))
    assert not plots.LiveTrainingPlot().live  # under pytest (no notebook kernel) it is never live


def test_live_training_plot_updates_one_display_in_place(monkeypatch):
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj))

    def fake_display(obj, display_id=False):
        calls.append(("display", obj, display_id))
        return Handle()

    monkeypatch.setattr("IPython.display.display", fake_display)
    run = _fake_run()
    live = plots.LiveTrainingPlot(every=2, live=True, kl=False)
    for episode in range(1, 6):
        run.episode = episode
        live(run, None)
    live.finish()
    kinds = [c[0] for c in calls]
    assert kinds == ["display", "update", "update"]  # episodes 2 and 4, then the final picture
    assert calls[0][2] is True
    assert calls[-1][1].data[:4] == b"\x89PNG"


def test_policy_before_after_colours_cells_by_the_mix_of_outcomes():
    from matplotlib.colors import to_rgb

    before = _policy_table([0.0] * 4, [0.0] * 4)  # all illegal: grey
    after = _policy_table([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0])  # reciprocity: green, red
    fig = plots.policy_before_after(before, after)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in panels] == ["before fine-tuning", "after fine-tuning"]
    grey, green, red = (np.array(to_rgb(plots.ACTION_TYPE_COLOURS[t])) for t in ("illegal", "C|C", "D|C"))
    img0, img1 = (ax.get_images()[0].get_array() for ax in panels)
    assert np.allclose(img0, grey)
    assert np.allclose(img1[0, 0], green) and np.allclose(img1[0, 1], red)  # rows: my last, columns: their last
    assert np.allclose(img1[1, 0], green) and np.allclose(img1[1, 1], red)
    texts = [t.get_text() for t in panels[1].texts]
    assert "P(C) 1.00" in texts and any("illegal 0.00" in t for t in texts)
    # several "after" tables: one panel each, after the "before" panel
    fig = plots.policy_before_after(before, {"game": after, "utilitarian": after})
    assert [ax.get_title() for ax in fig.axes if ax.get_images()] == ["before fine-tuning", "game", "utilitarian"]
    with pytest.raises(KeyError, match="policy_table"):
        plots.policy_before_after(before.drop(columns="P(illegal)"), after)


def test_ppo_curves_one_panel_per_metric_one_line_per_run():
    runs = {"game": _fake_run("game"), "utilitarian": _fake_run("utilitarian").updates}
    fig = plots.ppo_curves(runs, metrics=("objective/kl", "ppo/loss/policy", "not/a/column"))
    assert [ax.get_title() for ax in fig.axes] == [plots.PPO_CURVES["objective/kl"], plots.PPO_CURVES["ppo/loss/policy"], "not/a/column"]
    assert len(fig.axes[0].get_lines()) == 2 and len(fig.axes[2].get_lines()) == 0
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["game", "utilitarian"]


# --------------------------------------------------------------------- chapter 7
def test_stakeholder_utility_lines_mark_the_maxmin_point_on_the_lower_envelope():
    from moralkit.pluralistic import stakeholder_utilities

    states = stakeholder_utilities("prisoners_dilemma", ["game", "deontological", "utilitarian"], "tit_for_tat", xi=3)
    fig = plots.stakeholder_utility_lines(states)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    ax = fig.axes[0]  # state C|C
    stakeholder_lines = [line for line in ax.get_lines() if len(line.get_xdata()) > 2 and line.get_linestyle() == "-"]
    assert len(stakeholder_lines) == 3
    marker = [line for line in ax.get_lines() if line.get_marker() == "o"][0]
    assert marker.get_xdata()[0] == pytest.approx(0.8) and marker.get_ydata()[0] == pytest.approx(0.8)
    square = [line for line in ax.get_lines() if line.get_marker() == "s"][0]
    assert square.get_xdata()[0] == 1.0 and square.get_ydata()[0] == pytest.approx(0.75)  # the average's worst-off


def test_rule_comparison_and_group_bars_draw_the_table_values():
    from moralkit.pluralistic import maxmin_table

    table = maxmin_table("prisoners_dilemma", ["game", "deontological", "utilitarian"], "tit_for_tat", xi=3)
    fig = plots.rule_comparison(table)
    heights = sorted(round(p.get_height(), 4) for p in fig.axes[0].patches)
    assert heights == sorted(round(x, 4) for x in table["p_cooperate"])
    groups = pd.DataFrame({"share": [0.7, 0.3], "single reward": [0.6, 0.2], "maxmin": [0.5, 0.4]}, index=["game", "utilitarian"])
    fig = plots.group_utility_bars(groups)
    assert sorted(p.get_height() for p in fig.axes[0].patches) == [0.2, 0.4, 0.5, 0.6]


def test_learned_vs_true_rewards_and_training_curves_draw():
    from moralkit.pluralistic import impossibility, llm_stakeholder_curves, train_tabular

    result = impossibility(seed=0, restarts=1)
    fig = plots.learned_vs_true_rewards(result.rewards_frame())
    assert len(fig.axes) == 3
    runs = {v: train_tabular(f"maxmin(game,utilitarian,variant={v})", updates=5, games_per_update=4, rounds=2)
            for v in ("weights", "min")}
    fig = plots.maxmin_training_curves(runs)
    assert len(fig.axes) == 4 and len(fig.axes[0].get_lines()) == 3  # two variants and the LP value
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", n_games=6, seed=0)
    frame = run_episodes(env, lambda s, rng: rng.integers(-1, 2, len(s)), episodes=4).rename(columns={"opp_prev": "opp_prev"})
    curves = llm_stakeholder_curves(frame, ["game", "utilitarian"])
    fig = plots.stakeholder_curves(curves)
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["game", "utilitarian", "minimum"]
    fig = plots.stakeholder_curve_panels({"LLM, maxmin reward": curves, "LLM, average reward": curves.iloc[:2]})
    assert [ax.get_title() for ax in fig.axes] == ["LLM, maxmin reward", "LLM, average reward"]
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 2 and fig.axes[0].get_shared_y_axes().joined(*fig.axes)
    with pytest.raises(ValueError, match="at least one"):
        plots.stakeholder_curve_panels({})


def _texts(fig) -> list[str]:
    """Every text on a figure: its own, its axes' titles, labels and texts."""
    texts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        texts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
    return texts


def test_the_smoke_mark_is_on_smoke_figures_only():
    from moralkit.profiles import SMOKE_MARK, get_profile

    fig, _ = plt.subplots()
    assert plots.mark_smoke(fig, get_profile("cpu")) is fig and SMOKE_MARK not in _texts(fig)
    plots.mark_smoke(fig, None)
    assert SMOKE_MARK not in _texts(fig)
    plots.mark_smoke(fig, "smoke")
    plots.mark_smoke(fig, get_profile("smoke"))  # twice: still one mark
    assert _texts(fig).count(SMOKE_MARK) == 2  # the faint diagonal one and the corner one


def test_save_figure_marks_smoke_figures(tmp_path):
    from moralkit.profiles import SMOKE_MARK

    fig, _ = plt.subplots()
    plots.save_figure(fig, tmp_path / "a.png", profile="smoke")
    assert SMOKE_MARK in _texts(fig) and (tmp_path / "a.png").exists()
    other, _ = plt.subplots()
    plots.save_figure(other, tmp_path / "b.png", profile="gpu")
    assert SMOKE_MARK not in _texts(other)


def test_unlearning_bars_draw_both_windows_and_the_expected_band():
    table = pd.DataFrame({"agent": ["game_then_deontological", "game_then_utilitarian"], "CC_before": [0.0, 0.1],
                          "CC_end": [0.6, 0.9], "DC_before": [0.5, 0.4], "DC_end": [0.05, 0.0],
                          "CC_end_low": [0.4, np.nan], "CC_end_high": [0.8, np.nan]})
    fig = plots.unlearning_bars(table)
    first, second = fig.axes
    assert first.get_title() == "game → deontological" and second.get_title() == "game → utilitarian"
    assert [round(p.get_height(), 2) for p in first.patches[:4]] == [0.0, 0.6, 0.5, 0.05]
    assert "expected" in [t.get_text() for t in first.texts] and "expected" not in [t.get_text() for t in second.texts]
    with pytest.raises(ValueError, match="switches rewards"):
        plots.unlearning_bars(table.iloc[:0])


def test_first_action_bars_and_unrelated_prompt_heatmaps():
    trap = pd.DataFrame({"Prisoner's Dilemma": [0.9, 0.2], "Defective Coordination": [0.8, 0.3], "other": [1, 2]},
                        index=["utilitarian", "game"])
    fig = plots.first_action_bars(trap)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["utilitarian", "game"]
    assert sorted(round(p.get_width(), 2) for p in ax.patches) == [0.2, 0.3, 0.8, 0.9]  # two columns drawn, not three
    grid = pd.DataFrame({"a": [0.5, 0.1], "b": [0.2, 0.9]}, index=["1: hello", "the game itself"])
    fig = plots.unrelated_prompt_heatmaps({"legal": grid, "P(D | legal)": grid})
    assert fig.axes[0].get_title() == "P(answer is one of the labels)" and "P(D's label" in fig.axes[1].get_title()


def test_ppo_curves_mark_the_reward_switch():
    updates = pd.DataFrame({"episode": range(6), "objective/kl": np.linspace(0, 1, 6)})
    fig = plots.ppo_curves({"game_then_deontological": updates}, metrics=("objective/kl",), switch=3)
    [ax] = fig.axes
    assert any(list(line.get_xdata()) == [2.5, 2.5] for line in ax.lines)
    plain = plots.ppo_curves({"game": updates}, metrics=("objective/kl",))
    assert not any(list(line.get_xdata()) == [2.5, 2.5] for line in plain.axes[0].lines)


def test_the_live_plot_of_a_smoke_run_is_marked():
    from moralkit.profiles import SMOKE_MARK

    run = _fake_run()
    marked = plots.LiveTrainingPlot(live=False, profile="smoke").draw(run)
    plain = plots.LiveTrainingPlot(live=False, profile="cpu").draw(run)
    assert SMOKE_MARK in [t.get_text() for t in marked.texts]
    assert SMOKE_MARK not in [t.get_text() for t in plain.texts]
