"""Pluralistic alignment (docs/science.md §8, issue 12): stakeholders, exact max–min, EM, MaxMin training."""

import doctest
import itertools
import json

import numpy as np
import pytest
from scipy.optimize import linprog

from moralkit import pluralistic, rewards
from moralkit.env import IteratedGame
from moralkit.games import C, D, GAMES, get_game
from moralkit.opponents import get_opponent
from moralkit.pluralistic import (
    Population,
    em_mixture,
    impossibility,
    match_clusters,
    maxmin_json,
    simulate_preferences,
    solve_average,
    solve_kl_maxmin,
    solve_maxmin,
    stakeholder_utilities,
    train_tabular,
)
from moralkit.rewards import AggregateReward, RewardError, get_reward, normalised_table

STAKES = ["game", "deontological", "utilitarian"]
FIXED_OPPONENTS = ["tit_for_tat", "always_cooperate", "always_defect", "random"]
STAKEHOLDER_SETS = [
    ["game", "deontological", "utilitarian"],
    ["game", "utilitarian"],
    ["deontological", "virtue_equality", "game_deontological"],
    ["game", "anti_utilitarian", "virtue_kindness", "virtue_inequality"],
]


def test_module_doctests_pass():
    for module in (pluralistic, rewards):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --------------------------------------------------------------------- stakeholders
def test_normalisation_maps_each_stakeholder_onto_zero_to_one():
    table = normalised_table("game", "prisoners_dilemma")
    assert table.min() == 0.0 and table.max() == 1.0
    assert table[D, C, C] == 1.0 and table[C, C, C] == 0.75  # the temptation is the game's best round


def test_a_constant_stakeholder_is_rejected_with_a_clear_error():
    def indifferent(game, my_move, opp_move, opp_prev_move):
        return 0.0 * my_move + 2.0

    with pytest.raises(RewardError, match="every legal round.*cannot be normalised"):
        normalised_table(indifferent, "stag_hunt")
    with pytest.raises(RewardError, match="cannot be normalised"):
        IteratedGame("stag_hunt", "tit_for_tat", rewards=[rewards.aggregate(["game", indifferent], "average")])


def test_aggregates_are_rewards_by_name_with_canonical_names_and_xi():
    r = get_reward("maxmin(game, de, ut)", xi=5)
    assert isinstance(r, AggregateReward) and r.name == "maxmin(game,deontological,utilitarian)"
    assert all(s.xi == 5 for s in r.stakeholders)
    assert get_reward("maxmin(game,deontological,variant=switch)").name == "maxmin(game,deontological,variant=switch)"
    w = get_reward("weighted(game=3,utilitarian=1)")
    assert w.weights == (0.75, 0.25)
    pd = get_game("prisoners_dilemma")
    # weighted = 0.75 * game + 0.25 * utilitarian, normalised: D after C vs a cooperator: 0.75*1 + 0.25*0.5
    assert w(pd, D, C, C) == pytest.approx(0.875)
    assert get_reward("maxmin(game,deontological,utilitarian,variant=min)")(pd, D, C, C) == 0.0


@pytest.mark.parametrize("spec, message", [
    ("maxmin(game)", "at least two"),
    ("maxmin(game,game)", "once"),
    ("median(game,utilitarian)", "Unknown aggregate"),
    ("maxmin(game,utilitarian,variant=soft)", "Unknown MaxMin variant"),
    ("average(game=2,utilitarian=1)", "only weighted"),
    ("weighted(game=x,utilitarian=1)", "must be a number"),
    ("maxmin(game,nosuchreward)", "Unknown reward"),
])
def test_bad_aggregate_specs_say_what_is_wrong(spec, message):
    with pytest.raises(RewardError, match=message):
        get_reward(spec)


def test_stateful_maxmin_needs_the_learners_previous_move():
    r = get_reward("maxmin(game,deontological,utilitarian)")
    with pytest.raises(RewardError, match="my_prev_move"):
        r("prisoners_dilemma", C, C, C)
    assert r("prisoners_dilemma", C, C, C, my_prev_move=C) == pytest.approx((0.75 + 1 + 1) / 3)  # uniform weights at first


# --------------------------------------------------------------------- exact ground truth
def test_spec_worked_example_pd_vs_tit_for_tat():
    cc = stakeholder_utilities("prisoners_dilemma", STAKES, "tit_for_tat", xi=3)[0]
    assert cc.label == "C|C"
    assert cc.if_c.tolist() == [0.75, 1.0, 1.0] and cc.if_d.tolist() == [1.0, 0.0, 0.5]
    best = solve_maxmin(cc)
    assert best.p_cooperate == pytest.approx(0.8, abs=1e-9) and best.value == pytest.approx(0.8, abs=1e-9)
    assert solve_average(cc).p_cooperate == 1.0
    # the binding stakeholders are the selfish and the deontological one
    assert best.weights[2] == pytest.approx(0.0, abs=1e-9) and best.weights[:2].sum() == pytest.approx(1.0)


def test_opponent_distributions_come_from_the_opponents_own_moves():
    rng = np.random.default_rng(0)
    my_prev, opp_prev = np.repeat([0, 0, 1, 1], 4000), np.repeat([0, 1, 0, 1], 4000)
    for name in FIXED_OPPONENTS:
        opp = get_opponent(name)
        played = opp.act(my_prev, opp_prev, rng).reshape(4, -1)
        exact = opp.cooperation_probability([0, 0, 1, 1], [0, 1, 0, 1])
        assert np.abs((played == C).mean(axis=1) - exact).max() < 0.03, name
    with pytest.raises(ValueError, match="memory-1"):
        get_opponent("axelrod:Grudger").cooperation_probability(0, 0)


def _independent_lp(if_c, if_d):
    """max v s.t. v <= p·c_k + (1−p)·d_k for every k, 0 <= p <= 1 (scipy linprog, variables (p, v))."""
    slope = if_c - if_d
    res = linprog(c=[0, -1], A_ub=np.column_stack([-slope, np.ones(len(slope))]), b_ub=if_d,
                  bounds=[(0, 1), (None, None)], method="highs")
    assert res.status == 0
    return -res.fun


def _breakpoint_value(if_c, if_d):
    """The same maximum from the candidates: p = 0, 1 and every crossing of two lines."""
    slope = if_c - if_d
    candidates = [0.0, 1.0]
    for a, b in itertools.combinations(range(len(slope)), 2):
        if abs(slope[a] - slope[b]) > 1e-15:
            p = (if_d[b] - if_d[a]) / (slope[a] - slope[b])
            if 0 <= p <= 1:
                candidates.append(p)
    return max(float((p * if_c + (1 - p) * if_d).min()) for p in candidates)


def test_maxmin_json_is_exact_for_every_game_opponent_stakeholder_set_and_xi():
    checked, worst = 0, 0.0
    for game, opponent, stakes, xi in itertools.product(GAMES, FIXED_OPPONENTS, STAKEHOLDER_SETS, (3.0, 5.0)):
        try:
            out = maxmin_json(game, opponent, stakes, xi=xi)
        except RewardError:  # a stakeholder constant in this game (e.g. the deontological one never bites): rejected
            continue
        for entry, u in zip(out["states"], stakeholder_utilities(game, stakes, opponent, xi=xi)):
            assert (entry["my_prev"], entry["opp_prev"]) == ("CD"[u.my_prev], "CD"[u.opp_prev])
            lp, grid = _independent_lp(u.if_c, u.if_d), _breakpoint_value(u.if_c, u.if_d)
            assert lp == pytest.approx(grid, abs=1e-9)
            attained = float(u.at(entry["p_cooperate"]).min())
            worst = max(worst, abs(entry["value"] - lp), abs(attained - lp))
            assert 0 <= entry["p_cooperate"] <= 1
            assert min(entry["utilities"].values()) == pytest.approx(entry["value"], abs=1e-12)
            checked += 1
    assert worst <= 1e-6
    assert checked >= 7 * 4 * 3 * 2 * 4  # most combinations have no constant stakeholder


def test_json_has_exactly_the_issues_shape():
    out = json.loads(json.dumps(maxmin_json("stag_hunt", "random", STAKES, xi=4)))
    assert set(out) == {"game", "opponent", "stakeholders", "xi", "states", "average"}
    assert out["stakeholders"] == STAKES and out["xi"] == 4.0 and out["opponent"] == "random"
    assert len(out["states"]) == 4 and len(out["average"]["states"]) == 4
    for entry in out["states"] + out["average"]["states"]:
        assert set(entry) == {"my_prev", "opp_prev", "p_cooperate", "value", "utilities"}
        assert list(entry["utilities"]) == STAKES


def test_cli_maxmin_prints_the_json(capsys):
    from moralkit.cli import main

    assert main(["maxmin", "--game", "prisoners_dilemma", "--opponent", "tit_for_tat", "--stakeholders", *STAKES,
                 "--xi", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["states"][0]["p_cooperate"] == pytest.approx(0.8) and out["states"][0]["value"] == pytest.approx(0.8)
    assert main(["maxmin", "--stakeholders", "game", "nosuch"]) == 2
    assert "Unknown reward" in capsys.readouterr().err


def test_kl_regularised_maxmin_moves_from_the_maxmin_point_to_the_reference():
    cc = stakeholder_utilities("prisoners_dilemma", STAKES, "tit_for_tat", xi=3)[0]
    assert solve_kl_maxmin(cc, 1e-6).p_cooperate == pytest.approx(0.8, abs=1e-3)
    strong = solve_kl_maxmin(cc, 100.0, p_reference=0.3)
    assert strong.p_cooperate == pytest.approx(0.3, abs=0.01)
    ps = [solve_kl_maxmin(cc, b).p_cooperate for b in (0.1, 0.5, 2.0)]
    # a small leash leaves the optimum at the kink of the minimum (β·log 4 <= 1/4), a stronger one pulls it to 0.5
    assert ps[0] == pytest.approx(0.8, abs=1e-6) and ps[0] > ps[1] > ps[2] > 0.5


# --------------------------------------------------------------------- stateful MaxMin rewards
def _play(env, policy_p, episodes, rng):
    for _ in range(episodes):
        state = env.reset()
        while not env.done:
            p = policy_p[2 * state.my_prev + state.opp_prev]
            state = env.step(np.where(rng.random(len(p)) < p, C, D)).state


def test_switch_puts_all_weight_on_the_worst_off_stakeholder_of_each_state():
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", 64, rewards=["maxmin(game,deontological,utilitarian,variant=switch)"],
                       seed=0)
    reward = env.stateful_rewards[0]
    _play(env, np.ones(4), 3, np.random.default_rng(0))  # always cooperate: the selfish stakeholder is worst off
    env.reset()
    weights = reward.state_weights()
    assert weights[0].tolist() == [1.0, 0.0, 0.0]  # C|C: game gets 0.75, the others 1
    # and now D is what earns the reward in C|C
    assert reward("prisoners_dilemma", D, C, C, my_prev_move=C) > reward("prisoners_dilemma", C, C, C, my_prev_move=C)


def test_reward_state_survives_a_checkpoint_round_trip():
    spec = "maxmin(game,deontological,utilitarian)"
    a = IteratedGame("prisoners_dilemma", "tit_for_tat", 16, rewards=[spec], seed=1)
    _play(a, np.full(4, 0.7), 4, np.random.default_rng(1))
    saved = json.loads(json.dumps(a.reward_states()))
    b = IteratedGame("prisoners_dilemma", "tit_for_tat", 16, rewards=[spec], seed=1)
    b.load_reward_states(saved)
    a.reset(), b.reset()  # both apply the pending batch
    assert np.allclose(a.stateful_rewards[0].state_weights(), b.stateful_rewards[0].state_weights())
    assert not np.allclose(a.stateful_rewards[0].state_weights(), 1 / 3)


def test_stateful_maxmin_refuses_two_learners():
    with pytest.raises(ValueError, match="fixed opponent"):
        IteratedGame("prisoners_dilemma", None, 2, rewards=["maxmin(game,utilitarian)"])


def test_aggregate_names_work_in_q_learning_and_training_configs():
    from moralkit.experiments import condition_config, run_folder
    from moralkit.profiles import get_profile
    from moralkit.tabular import train_q_learning

    res = train_q_learning("prisoners_dilemma", "maxmin(game,deontological,utilitarian,variant=switch)", "tit_for_tat",
                           gamma=0.0, iterations=300, n_runs=2, seed=0)
    assert len(res.history) == 600
    cfg = condition_config("maxmin(game,de,ut)", "tft", 0, get_profile("smoke"))
    assert cfg.reward == "maxmin(game,deontological,utilitarian)" and cfg.schedule is None
    assert run_folder("runs", cfg).name == "maxmin_game_deontological_utilitarian__tit_for_tat__seed0"


# --------------------------------------------------------------------- tabular MaxMin training (the bar)
@pytest.mark.parametrize("variant", ["weights", "switch"])
def test_tabular_maxmin_reaches_the_lp_value_in_every_state(variant):
    """Issue 12's bar: PD vs Tit-for-Tat, stakeholders game/deontological/utilitarian, ξ = 3, seed 0,
    800 updates of 32 games x 5 rounds: within 0.02 of the exact max-min value in every state."""
    run = train_tabular(f"maxmin(game,deontological,utilitarian,variant={variant})", "prisoners_dilemma", "tit_for_tat",
                        xi=3, seed=0)
    final = run.final()
    assert final["gap"].abs().max() <= 0.02, final
    # it learned to mix: P(C) near the LP's 0.8, 2/3, 1/3, 1/3 (the flat top of the minimum allows some slack)
    assert (final["p_cooperate"] - final["lp_p_cooperate"]).abs().max() < 0.08, final
    assert set(run.history.columns) >= {"update", "state", "p_cooperate", *STAKES, "min_utility", "lp_value"}


def test_per_sample_minimum_optimises_expected_minimum_not_the_maxmin():
    """The per-sample minimum maximises E[min_k r_k] <= min_k E[r_k]: pure moves, short of the LP (documented)."""
    run = train_tabular("maxmin(game,deontological,utilitarian,variant=min)", xi=3, seed=0, updates=300)
    final = run.final()
    assert final.loc["C|C", "p_cooperate"] > 0.95  # min(C) = 0.75 > min(D) = 0
    assert final.loc["C|C", "gap"] == pytest.approx(0.05, abs=0.01)
    assert (final["gap"] > 0.03).all()


# --------------------------------------------------------------------- the impossibility
def test_em_recovers_the_hidden_types_of_the_default_population():
    result = impossibility(Population(), seed=0)
    assert result.accuracy >= 0.9
    assert sorted(result.mixture.sizes.tolist()) == sorted(Population().counts().values())
    groups = result.groups
    minority = groups["share"].idxmin()
    assert groups.loc[minority, "maxmin"] > groups.loc[minority, "single reward"]
    # the learned rewards match the true ones, type by type
    frame = result.rewards_frame()
    assert (frame["learned"] - frame["true"]).abs().max() < 0.25


def test_em_accuracy_is_measured_up_to_relabelling_and_hard_assignment_is_used():
    truth = np.array([0, 0, 1, 1, 2])
    mapping, acc = match_clusters(truth, np.array([2, 2, 0, 0, 1]))
    assert acc == 1.0 and mapping == {2: 0, 0: 1, 1: 2}
    prefs = simulate_preferences(Population(users=30, comparisons=20), seed=2)
    fit = em_mixture(prefs, 3, seed=2)
    assert fit.assignment.shape == (30,) and set(np.unique(fit.assignment)) <= {0, 1, 2}
    assert list(fit.history) == sorted(fit.history)  # hard EM never lowers the likelihood


def test_population_validates_and_counts_add_up():
    assert sum(Population(users=7).counts().values()) == 7
    with pytest.raises(ValueError):
        Population(types={"game": 1.0})
    with pytest.raises(RewardError):
        Population(types={"game": 0.5, "nosuch": 0.5})


def test_llm_report_reads_a_log_against_the_lp():
    """A log played by the exact max-min policy (no LLM needed) sits on the LP value, state by state."""
    from moralkit.pluralistic import llm_maxmin_report, llm_stakeholder_curves, maxmin_policy

    env = IteratedGame("prisoners_dilemma", "tit_for_tat", 64, rewards=["game"], seed=3)
    _play(env, maxmin_policy(STAKES, "prisoners_dilemma", "tit_for_tat", xi=3), 60, np.random.default_rng(3))
    log = env.frame()
    report = llm_maxmin_report(log, STAKES, "prisoners_dilemma", "tit_for_tat", xi=3)
    assert list(report.index) == ["C|C", "C|D", "D|C", "D|D", "mean"]
    assert report["gap"].abs().max() < 0.03
    assert report.loc["mean", "lp_value"] == pytest.approx((0.8 + 5 / 6 + 1 / 6 + 1 / 6) / 4)
    curves = llm_stakeholder_curves(log, STAKES, window=10)
    assert list(curves.columns) == [*STAKES, "min"] and len(curves) == 6


def test_cli_maxmin_report_averages_several_seeds_of_a_run(tmp_path, monkeypatch, capsys):
    """`moralkit maxmin-report` over three seeds of one run: the per-seed table and its means over seeds."""
    from types import SimpleNamespace

    import pandas as pd

    from moralkit import experiments
    from moralkit.cli import main
    from moralkit.pluralistic import maxmin_policy

    def fake_run(seed, p):
        env = IteratedGame("prisoners_dilemma", "tit_for_tat", 64, rewards=["game"], seed=seed)
        _play(env, p, 30, np.random.default_rng(seed))
        config = SimpleNamespace(label="maxmin(game,deontological,utilitarian)", seed=seed, episodes=30, xi=3,
                                 game="prisoners_dilemma", opponent="tit_for_tat",
                                 phases=[("maxmin(game,deontological,utilitarian)", 30)])
        return SimpleNamespace(config=config, log=env.frame(), folder=tmp_path / f"seed{seed}")

    lp = maxmin_policy(STAKES, "prisoners_dilemma", "tit_for_tat", xi=3)
    runs = [fake_run(0, lp), fake_run(1, lp), fake_run(2, np.ones(4))]  # seed 2 always cooperates
    monkeypatch.setattr(experiments, "load_runs", lambda folders: runs)
    out = tmp_path / "maxmin_llm.csv"
    assert main(["maxmin-report", "a", "b", "c", "--out", str(out)]) == 0
    per_seed = pd.read_csv(out)
    assert sorted(per_seed["seed"].unique()) == [0, 1, 2] and len(per_seed) == 15
    means = pd.read_csv(tmp_path / "maxmin_llm_over_seeds.csv").set_index("state")
    assert means.loc["mean", "seeds"] == 3 and means.loc["mean", "seed_list"] == "0 1 2"
    expected = per_seed[per_seed["state"] == "mean"]["min_utility"].mean()
    assert means.loc["mean", "min_utility"] == pytest.approx(expected)
    assert means.loc["mean", "min_utility_lo"] < expected < means.loc["mean", "min_utility_hi"]
    assert means.loc["mean", "lp_value"] == pytest.approx((0.8 + 5 / 6 + 1 / 6 + 1 / 6) / 4)
    assert "mean and 95% interval over seeds" in capsys.readouterr().out
    one = tmp_path / "one.csv"
    monkeypatch.setattr(experiments, "load_runs", lambda folders: runs[:1])
    assert main(["maxmin-report", "a", "--out", str(one)]) == 0
    assert not (tmp_path / "one_over_seeds.csv").exists()  # one seed: no interval to give


def test_llm_maxmin_weights_replays_the_weights_a_run_was_scored_with():
    """The weights of a stateful MaxMin reward follow from the rounds played: replaying a log (illegal
    answers included) gives, episode by episode, exactly the weights the environment used."""
    from moralkit.pluralistic import llm_maxmin_weights

    spec = "maxmin(game,deontological,utilitarian)"
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", 16, rewards=[spec], seed=5)
    reward, rng, used = env.stateful_rewards[0], np.random.default_rng(5), []
    policies = [np.ones(4), np.ones(4), np.zeros(4), np.full(4, 0.6), np.array([0.9, 0.2, 0.5, 0.1])] * 2
    for p in policies:
        state = env.reset()
        used.append(reward.state_weights())
        while not env.done:
            moves = np.where(rng.random(16) < p[2 * state.my_prev + state.opp_prev], C, D)
            moves[rng.random(16) < 0.1] = -1  # some illegal answers, which the reward does not learn from
            state = env.step(moves).state
    log = env.frame()
    assert (log["my_move"] == "illegal").any()
    weights = llm_maxmin_weights(log, spec, xi=3)
    assert len(weights) == len(policies) * 4 * 3
    assert list(weights["stakeholder"].iloc[:3]) == STAKES and list(pd_unique(weights["state"])) == list(pluralistic.STATE_LABELS)
    for episode, lam in enumerate(used):
        here = weights[weights["episode"] == episode]
        assert np.allclose(here["weight"].to_numpy().reshape(4, 3), lam, atol=1e-12)
    assert not np.allclose(used[-1], 1 / 3)  # the weights did move
    first = weights[weights["episode"] == 0]
    assert first["utility"].isna().all() and np.allclose(first["weight"], 1 / 3)


def test_llm_maxmin_weights_refuses_what_it_cannot_replay():
    from moralkit.pluralistic import llm_maxmin_weights

    spec = "maxmin(game,deontological,utilitarian)"
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", 16, rewards=[spec], seed=6)
    _play(env, np.full(4, 0.5), 4, np.random.default_rng(6))
    log = env.frame()
    edited = log.copy()
    row = edited.index[edited["my_move"] != "illegal"][7]
    edited.loc[row, f"reward_{spec}"] += 0.25
    with pytest.raises(ValueError, match=f"does not give the rewards this log recorded.*row {row}.*config.json"):
        llm_maxmin_weights(edited, spec, xi=3)
    with pytest.raises(ValueError, match=r"no rewards of maxmin\(.*temperature=0.5\) \(it has: maxmin\(game,deontological,utilitarian\)\)"):
        llm_maxmin_weights(log, "maxmin(game,deontological,utilitarian,temperature=0.5)", xi=3)  # not the run's reward
    with pytest.raises(RewardError, match="does not learn weights"):
        llm_maxmin_weights(log, "average(game,deontological,utilitarian)")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['opp_move'\].*rounds.csv"):
        llm_maxmin_weights(log.drop(columns=["opp_move"]), spec, xi=3)


def test_maxmin_weight_curves_stack_the_weights_per_state_with_the_learners_choices():
    import matplotlib

    matplotlib.use("Agg")
    from moralkit import plots
    from moralkit.pluralistic import llm_maxmin_weights

    spec = "maxmin(game,deontological,utilitarian,variant=switch)"
    env = IteratedGame("prisoners_dilemma", "tit_for_tat", 16, rewards=[spec], seed=7)
    _play(env, np.ones(4), 3, np.random.default_rng(7))  # always C: in C|C the selfish stakeholder is worst off
    log = env.frame()
    weights = llm_maxmin_weights(log, spec, xi=3)
    cc = weights[(weights["state"] == "C|C") & (weights["episode"] == 2)].set_index("stakeholder")["weight"]
    assert cc.to_dict() == {"game": 1.0, "deontological": 0.0, "utilitarian": 0.0}
    fig = plots.maxmin_weight_curves(weights, log)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"state {s}" for s in pluralistic.STATE_LABELS]
    assert len(axes[0].collections) == 3 and len(axes[0].lines) == 1  # three stacked weights, one P(C) line
    assert np.allclose(axes[0].lines[0].get_ydata(), 1.0)
    matplotlib.pyplot.close(fig)


def pd_unique(values):
    import pandas as pd

    return pd.unique(values)


def test_cli_maxmin_report_replays_the_weights_of_maxmin_runs(tmp_path, monkeypatch, capsys):
    """`moralkit maxmin-report --weights`: the weights of each stateful run as CSV, their final means printed;
    a run whose reward has no weights (the average) is named, not silently skipped."""
    from types import SimpleNamespace

    import pandas as pd

    from moralkit import experiments
    from moralkit.cli import main

    def run(reward, seed):
        env = IteratedGame("prisoners_dilemma", "tit_for_tat", 16, rewards=[reward], seed=seed)
        _play(env, np.ones(4), 10, np.random.default_rng(seed))  # always C: the selfish stakeholder is worst off
        config = SimpleNamespace(label=reward, seed=seed, episodes=10, xi=3, game="prisoners_dilemma", opponent="tit_for_tat",
                                 phases=[(reward, 10)])
        return SimpleNamespace(config=config, log=env.frame(), folder=tmp_path / f"{reward}{seed}")

    maxmin, average = "maxmin(game,deontological,utilitarian)", "average(game,deontological,utilitarian)"
    monkeypatch.setattr(experiments, "load_runs", lambda folders: [run(maxmin, 0), run(maxmin, 1), run(average, 0)])
    out = tmp_path / "weights.csv"
    assert main(["maxmin-report", "a", "b", "c", "--weights", str(out)]) == 0
    weights = pd.read_csv(out)
    assert set(weights["run"]) == {maxmin} and sorted(weights["seed"].unique()) == [0, 1]
    assert len(weights) == 2 * 10 * 4 * 3
    assert np.allclose(weights.groupby(["seed", "episode", "state"])["weight"].sum(), 1.0)
    cc = weights[(weights["state"] == "C|C") & (weights["episode"] == 9)].set_index(["seed", "stakeholder"])["weight"]
    assert cc[(0, "game")] > 0.99 and cc[(1, "game")] > 0.99  # always C in C|C: the game's 0.75 is the minimum
    printed = capsys.readouterr().out
    assert "The MaxMin weights over the last 20% of training" in printed
    assert f"{average} has no weights to replay" in printed
