"""Games: the catalogue of docs/science.md §1, validation, and game-theoretic facts."""

import numpy as np
import pytest

from moralkit.games import C, D, EVALUATION_GAMES, GAMES, GameError, MatrixGame, get_game, games_table, load_games

CATALOGUE_CELLS = {  # docs/science.md §1: CC, CD, DC, DD as (M, O), and the best collective payoff
    "prisoners_dilemma": ((3, 3), (0, 4), (4, 0), (1, 1), 6),
    "stag_hunt": ((4, 4), (0, 3), (3, 0), (1, 1), 8),
    "chicken": ((2, 2), (1, 4), (4, 1), (0, 0), 5),
    "bach_or_stravinsky": ((3, 2), (0, 0), (0, 0), (2, 3), 5),
    "defective_coordination": ((1, 1), (0, 0), (0, 0), (4, 4), 8),
    "volunteers_dilemma": ((3, 3), (1, 4), (4, 1), (0, 0), 6),
}


@pytest.mark.parametrize("name", list(CATALOGUE_CELLS))
def test_catalogue_matches_spec(name):
    cc, cd, dc, dd, best = CATALOGUE_CELLS[name]
    g = get_game(name)
    assert g.payoff(C, C) == cc and g.payoff(C, D) == cd and g.payoff(D, C) == dc and g.payoff(D, D) == dd
    assert g.best_collective == best


def test_ijcai_variant_and_evaluation_games():
    assert get_game("prisoners_dilemma_ijcai23").letters() == {"R": 3, "S": 1, "T": 4, "P": 2}
    assert set(EVALUATION_GAMES) <= set(GAMES)
    assert "volunteers_dilemma" not in EVALUATION_GAMES


def test_lookup_is_forgiving_but_unknown_names_list_the_choices():
    assert get_game("Stag Hunt") is GAMES["stag_hunt"]
    assert get_game("prisoners-dilemma") is GAMES["prisoners_dilemma"]
    with pytest.raises(GameError, match="Valid names: prisoners_dilemma, stag_hunt"):
        get_game("prisoner")


@pytest.mark.parametrize(
    "payoffs, message",
    [
        ([[1, 2], [3, 4]], "shape \\(2, 2, 2\\)"),
        ([[[1, 1], [0, 4]], [[4, 0], [np.nan, 1]]], "finite"),
        ([[[1, 1], [0, 4]], [[4, 0], [np.inf, 1]]], "finite"),
        ([[["a", 1], [0, 4]], [[4, 0], [1, 1]]], "numbers"),
    ],
)
def test_invalid_payoffs_are_rejected_with_a_reason(payoffs, message):
    with pytest.raises(GameError, match=message):
        MatrixGame("bad", payoffs)


def test_invalid_actions_and_names():
    ok = [[[3, 3], [0, 4]], [[4, 0], [1, 1]]]
    with pytest.raises(GameError, match="differ"):
        MatrixGame("g", ok, actions=("X", "X"))
    with pytest.raises(GameError, match="two"):
        MatrixGame("g", ok, actions=("X",))
    with pytest.raises(GameError, match="name"):
        MatrixGame("", ok)


def test_games_are_immutable_and_hashable():
    g = get_game("prisoners_dilemma")
    with pytest.raises(ValueError):
        g.payoffs[0, 0, 0] = 10
    with pytest.raises(AttributeError):
        g.name = "other"
    assert g == MatrixGame.from_cells("prisoners_dilemma", (3, 3), (0, 4), (4, 0), (1, 1))
    assert len({g, get_game("prisoners_dilemma")}) == 1


def test_swap_players_is_the_column_players_view():
    bos = get_game("bach_or_stravinsky")
    s = bos.swap_players()
    for a in (C, D):
        for b in (C, D):
            assert s.payoff(b, a) == tuple(reversed(bos.payoff(a, b)))
    assert s.swap_players() == bos


def test_vectorised_payoffs_mark_illegal_rounds_nan():
    g = get_game("prisoners_dilemma")
    r_m, r_o = g.payoffs_for([C, D, -1], [D, C, C])
    assert r_m[:2].tolist() == [0, 4] and r_o[:2].tolist() == [4, 0]
    assert np.isnan(r_m[2]) and np.isnan(r_o[2])


def test_dilemma_and_classification():
    assert get_game("prisoners_dilemma").is_social_dilemma()
    assert get_game("prisoners_dilemma_ijcai23").is_social_dilemma()
    for name in ("stag_hunt", "chicken", "bach_or_stravinsky", "defective_coordination"):
        assert not get_game(name).is_social_dilemma()
    assert get_game("stag_hunt").classify() == "stag hunt"
    assert get_game("chicken").classify() == "chicken"
    # T > R > P > S but 2R <= T + S: alternating exploitation beats cooperation
    weak = MatrixGame.symmetric("weak", R=3, S=0, T=7, P=1)
    assert not weak.is_social_dilemma() and weak.classify().startswith("not a social dilemma")
    assert "prisoner's dilemma" not in weak.classify()  # the payoff editor must not call it one next to "social dilemma? no"
    # the Volunteer's Dilemma is ordered like Chicken, but is captioned for what it is
    assert get_game("volunteers_dilemma").classify() == "chicken"
    assert "chicken" not in get_game("volunteers_dilemma").kind_caption().split(" (")[0]
    assert get_game("chicken").kind_caption() == "chicken"
    assert get_game("volunteers_dilemma").summary()["kind"] == get_game("volunteers_dilemma").kind_caption()


def test_equilibria_and_pareto_cells():
    pd = get_game("prisoners_dilemma")
    assert pd.pure_nash_equilibria() == [("D", "D")]
    assert ("D", "D") not in pd.pareto_optimal_cells() and ("C", "C") in pd.pareto_optimal_cells()
    (s_m, s_o), = pd.nash_equilibria()
    assert s_m.tolist() == [0, 1] and s_o.tolist() == [0, 1]
    # Stag hunt: two pure equilibria and one mixed (p(C) = 1/2 for these payoffs)
    eqs = get_game("stag_hunt").nash_equilibria()
    assert len(eqs) == 3
    mixed = [e for e in eqs if 0 < e[0][0] < 1]
    assert len(mixed) == 1 and mixed[0][0][0] == pytest.approx(0.5)
    assert get_game("defective_coordination").pareto_optimal_cells() == [("D", "D")]


def test_round_trip_through_dict_and_json(tmp_path):
    import json

    games = [get_game(n) for n in CATALOGUE_CELLS]
    (tmp_path / "g.json").write_text(json.dumps({"games": [g.to_dict() for g in games]}))
    loaded = load_games(tmp_path / "g.json")
    assert list(loaded.values()) == games
    with pytest.raises(GameError, match="cells"):
        MatrixGame.from_dict({"name": "x"})


def test_repr_and_table():
    assert repr(get_game("chicken")) == "MatrixGame('chicken': CC=(2,2), CD=(1,4), DC=(4,1), DD=(0,0))"
    assert get_game("chicken").to_frame().loc["M: D", "O: C"] == "4, 1"
    table = games_table()
    assert table.loc["prisoners_dilemma", "social dilemma"]


def test_games_table_lists_pure_and_mixed_equilibria():
    from moralkit.games import SIX_GAMES

    table = games_table(SIX_GAMES)
    assert list(table.index) == list(SIX_GAMES)
    assert table.loc["prisoners_dilemma", "pure Nash"] == "(D, D)"
    assert "mixed" in table.loc["stag_hunt", "all Nash (payoffs M, O)"]
    assert table.loc["defective_coordination", "Pareto-optimal"] == "(D, D)"
