"""Figures (and small display tables) for the workbook's chapters.

Every function here draws; none decides anything a test needs. Each one either returns a new
:class:`matplotlib.figure.Figure` or draws into an ``ax`` (or ``axes``) you pass, and then
returns that axes' figure, so notebooks can save what they show::

    fig = plots.payoff_heatmaps(["prisoners_dilemma", "stag_hunt"])
    wb.save_figure(fig, "payoffs")

Action types are always drawn in the same colours (:data:`ACTION_TYPE_COLOURS`), so the
Q-learning plots of chapter 2 and the LLM training plots of later chapters can be compared at
a glance: cool colours for cooperating (green = mutual cooperation, blue = forgiving), warm
colours for defecting (red = exploiting, orange = retaliating), grey for an illegal answer.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.patches import Rectangle

from .env import ACTION_TYPE_MEANING, ACTION_TYPES
from .games import C, D, MatrixGame, get_game
from .rewards import accepts_xi

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .rewards import Reward
    from .tabular import QLearningResult

__all__ = [
    "ACTION_TYPE_COLOURS",
    "PLAYER_COLOURS",
    "SIX_GAMES",
    "action_type_area",
    "action_type_legend",
    "q_learning_dynamics",
    "dynamics_grid",
    "payoff_heatmap",
    "payoff_heatmaps",
    "reward_heatmaps",
    "policy_heatmap",
    "outcome_metrics_plot",
    "discounted_values_plot",
    "game_facts",
    "game_facts_table",
    "POLICY_CMAP",
    "PAYOFF_CMAP",
    "pretty_name",
]

ACTION_TYPE_COLOURS: dict[str, str] = {
    "C|C": "#009E73",  # mutual cooperation: green
    "C|D": "#56B4E9",  # forgiving: sky blue
    "D|C": "#D55E00",  # exploiting: vermillion
    "D|D": "#E69F00",  # retaliating: orange
    "illegal": "#BBBBBB",  # illegal answer: grey
}
"""One fixed colour per action type (Okabe–Ito, colour-blind safe), shared by every chapter."""

PLAYER_COLOURS: dict[str, str] = {"M": "#0B3C8C", "O": "#8C2D04"}
"""Text colours of the two players' payoffs: M (row player, dark blue), O (column player, dark brown)."""

POLICY_CMAP = LinearSegmentedColormap.from_list(
    "moralkit_policy", [ACTION_TYPE_COLOURS["C|C"], "#F7F7F7", ACTION_TYPE_COLOURS["D|C"]]
)
"""Colour map for P(D): green = cooperates, white = indifferent, red = defects."""

PAYOFF_CMAP = LinearSegmentedColormap.from_list("moralkit_payoff", ["#FFFFFF", "#AFC8E4"])
"""Light shades for the collective payoff behind the payoff numbers (dark text stays readable)."""

SIX_GAMES: tuple[str, ...] = (
    "prisoners_dilemma",
    "stag_hunt",
    "chicken",
    "bach_or_stravinsky",
    "defective_coordination",
    "volunteers_dilemma",
)
"""The six games of SPEC §1, in the order the chapters show them."""


# --------------------------------------------------------------------- helpers
def pretty_name(reward_name: str) -> str:
    """A reward name for titles: ``game_deontological`` -> ``game + deontological``."""
    name = str(reward_name)
    if name.startswith("game_") and name != "game_":
        name = "game + " + name[len("game_"):]
    return name.replace("_", " ")


def _fmt(x: float) -> str:
    """A payoff as short text: ``3`` rather than ``3.0``, ``2.5`` stays ``2.5``."""
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.3g}"


def _new_axes(n: int, ncols: int | None = None, *, size: tuple[float, float] = (3.2, 3.0), **kwargs):
    """A figure with ``n`` axes on a grid (extra axes switched off); returns (fig, flat axes)."""
    ncols = ncols or n
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kwargs)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def _action_types_for(frame: "pandas.DataFrame") -> "pandas.Series":
    if "action_type" not in frame.columns:
        raise KeyError(
            "The table needs an 'action_type' column (C|C, C|D, D|C, D|D or illegal): "
            "moralkit.env.action_types(my_moves, opp_prev_moves) makes one."
        )
    return frame["action_type"]


# --------------------------------------------------------------------- action types
def action_type_area(
    frame: "pandas.DataFrame",
    x: str = "episode",
    ax: "Axes | None" = None,
    *,
    window: int | None = None,
    title: str | None = None,
    legend: bool = True,
    xlabel: str | None = None,
) -> "Figure":
    """Stacked areas of the action-type shares (C|C, C|D, D|C, D|D, illegal) along ``x``.

    Works on any tidy table of rounds with an ``action_type`` column: the rounds of
    :meth:`moralkit.env.IteratedGame.frame`, a Q-learning history (``x="iteration"``), or a
    PPO training log (``x="episode"``). Rows sharing the same ``x`` (or the same bin of
    ``window`` consecutive ``x`` values) are pooled; the shares in each bin add up to 1.

    ``window`` defaults to a bin width giving about 100 points when ``x`` has many values.
    """
    import pandas as pd

    types = _action_types_for(frame)
    xs = frame[x].to_numpy()
    if window is None:
        n_unique = len(np.unique(xs))
        window = max(1, math.ceil(n_unique / 100)) if n_unique > 200 else 1
    window = max(1, int(window))
    binned = (xs // window) * window if window > 1 else xs
    shares = pd.crosstab(pd.Series(binned, name=x), types.to_numpy(), normalize="index")
    shares = shares.reindex(columns=list(ACTION_TYPES), fill_value=0.0).sort_index()

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    labels = [ACTION_TYPE_MEANING[t] if t == "illegal" else f"{t}  {ACTION_TYPE_MEANING[t]}" for t in ACTION_TYPES]
    ax.stackplot(
        shares.index.to_numpy(dtype=float),
        shares.to_numpy().T,
        labels=labels,
        colors=[ACTION_TYPE_COLOURS[t] for t in ACTION_TYPES],
        alpha=0.95,
        linewidth=0,
    )
    ax.set_ylim(0, 1)
    if len(shares) > 1:
        ax.set_xlim(shares.index.min(), shares.index.max())
    ax.set_ylabel("share of rounds")
    ax.set_xlabel(xlabel or (x if window == 1 else f"{x} (bins of {window})"))
    ax.grid(False)
    if title:
        ax.set_title(title)
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title="my move | their last move")
    return ax.figure


def _history_for(result: "QLearningResult", who: str) -> "pandas.DataFrame":
    """A Q-learning history with ``action_type`` seen from learner ``who`` (``"a"`` or ``"b"``)."""
    if who == "a":
        return result.history
    if who not in result.learners:
        raise ValueError(f"No learner {who!r} in this result; learners: {', '.join(result.learners)}.")
    from .env import action_types

    h = result.history
    to_int = {"C": C, "D": D}
    types = action_types(h["b"].map(to_int).to_numpy(), h["a_prev"].map(to_int).to_numpy())
    return h.assign(action_type=types)


def q_learning_dynamics(
    result: "QLearningResult",
    window: int | None = None,
    ax: "Axes | None" = None,
    *,
    who: str = "a",
    title: str | None = None,
    legend: bool = True,
) -> "Figure":
    """How a Q-learner's behaviour emerges: action-type shares over iterations, pooled over runs.

    The paper's Figure 2 style: each band is the share of rounds in which the learner played
    C or D given its opponent's previous move. ``window`` is the number of iterations per
    point (default: about 100 points). ``who="b"`` shows the second learner of a pair.
    """
    learner = result.learners[who] if who in result.learners else None
    if title is None and learner is not None:
        opponent = result.opponent if who == "a" else f"learner ({result.learners['a'].reward.name})"
        title = f"{learner.reward.name} vs {opponent}, γ = {learner.gamma:g}"
    return action_type_area(
        _history_for(result, who), x="iteration", ax=ax, window=window, title=title, legend=legend
    )


def dynamics_grid(
    results: Mapping[str, "QLearningResult"],
    window: int | None = None,
    *,
    ncols: int | None = None,
    who: str = "a",
    suptitle: str | None = None,
) -> "Figure":
    """:func:`q_learning_dynamics` for several results side by side, titled by their keys."""
    n = len(results)
    if n == 0:
        raise ValueError("dynamics_grid needs at least one result.")
    ncols = ncols or min(n, 4)
    fig, axes = _new_axes(n, ncols, size=(3.4, 2.9), sharey=True)
    for i, (ax, (label, res)) in enumerate(zip(axes, results.items())):
        q_learning_dynamics(res, window, ax=ax, who=who, title=label, legend=False)
        if i % ncols:
            ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    return action_type_legend(fig)


def action_type_legend(fig: "Figure", *, bottom_margin: float = 0.07) -> "Figure":
    """One shared legend of the action types under a figure (after ``tight_layout``).

    Use it when several action-type plots sit side by side, each drawn with ``legend=False``.
    """
    from matplotlib.patches import Patch

    handles = [Patch(color=ACTION_TYPE_COLOURS[t]) for t in ACTION_TYPES]
    labels = [ACTION_TYPE_MEANING[t] if t == "illegal" else f"{t}  {ACTION_TYPE_MEANING[t]}" for t in ACTION_TYPES]
    fig.tight_layout(rect=(0, bottom_margin, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


# --------------------------------------------------------------------- payoff matrices
def payoff_heatmap(
    game: MatrixGame | str,
    ax: "Axes | None" = None,
    *,
    show_nash: bool = True,
    show_pareto: bool = True,
    cmap=None,
    vmax: float | None = None,
    title: str | None = None,
) -> "Figure":
    """One game as an annotated 2×2 heatmap.

    Each cell shows ``M's payoff, O's payoff`` (M in dark blue, O in dark brown); the shade is
    the collective payoff (their sum). A thick black frame marks a pure Nash equilibrium and a
    ★ a Pareto-optimal cell.
    """
    game = get_game(game)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.4, 3.2))
    total = game.collective
    lo = min(0.0, float(total.min()))
    hi = vmax if vmax is not None else max(float(total.max()), lo + 1e-9)
    ax.imshow(total, cmap=cmap or PAYOFF_CMAP, vmin=lo, vmax=hi)
    nash = set(game.pure_nash_equilibria()) if show_nash else set()
    pareto = set(game.pareto_optimal_cells()) if show_pareto else set()
    for a in (C, D):
        for b in (C, D):
            m, o = game.payoffs[a, b]
            ax.text(b - 0.06, a, _fmt(m), ha="right", va="center", fontsize=15, fontweight="bold", color=PLAYER_COLOURS["M"])
            ax.text(b, a, ",", ha="center", va="center", fontsize=15, color="#333333")
            ax.text(b + 0.06, a, _fmt(o), ha="left", va="center", fontsize=15, fontweight="bold", color=PLAYER_COLOURS["O"])
            cell = (game.actions[a], game.actions[b])
            if cell in nash:
                ax.add_patch(Rectangle((b - 0.47, a - 0.47), 0.94, 0.94, fill=False, lw=3.2, ec="black"))
                ax.text(b - 0.42, a - 0.40, "Nash", ha="left", va="top", fontsize=8.5, color="black")
            if cell in pareto:
                ax.text(b + 0.42, a + 0.40, "★", ha="right", va="bottom", fontsize=12, color="#444444")
    ax.set_xticks([0, 1], [f"O: {game.actions[0]}", f"O: {game.actions[1]}"])
    ax.set_yticks([0, 1], [f"M: {game.actions[0]}", f"M: {game.actions[1]}"])
    ax.xaxis.tick_top()
    ax.tick_params(length=0, labelsize=11)
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(1.5, -0.5)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title if title is not None else game.title, pad=12, fontsize=12)
    return ax.figure


def payoff_heatmaps(
    games: Iterable[MatrixGame | str] | Mapping[str, MatrixGame] | MatrixGame | str = SIX_GAMES,
    *,
    ncols: int = 3,
    subtitle: bool = True,
) -> "Figure":
    """A grid of :func:`payoff_heatmap`, one per game (default: the six games of SPEC §1).

    Under each heatmap: the kind of game (``MatrixGame.classify()``).
    """
    if isinstance(games, (str, MatrixGame)):
        games = [games]
    elif isinstance(games, Mapping):
        games = list(games.values())
    games = [get_game(g) for g in games]
    fig, axes = _new_axes(len(games), min(ncols, len(games)), size=(3.5, 3.5))
    for ax, game in zip(axes, games):
        payoff_heatmap(game, ax=ax)
        if subtitle:
            ax.set_xlabel(game.classify(), fontsize=10, color="#444444")
    fig.text(
        0.5,
        0.0,
        "Cell: M's payoff (blue), O's payoff (brown).  Shade: total payoff.  "
        "Black frame: pure Nash equilibrium.  ★: Pareto-optimal.",
        ha="center",
        va="top",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------- rewards
def _row_label(my: str, prev: str) -> str:
    return f"{my} after their {prev}"


def reward_heatmaps(
    rewards: Iterable["str | Reward"] | "str | Reward",
    game: MatrixGame | str = "prisoners_dilemma",
    *,
    xi: float | None = None,
    include_illegal: bool = False,
    ncols: int | None = None,
    axes: Sequence["Axes"] | None = None,
) -> "Figure":
    """Reward tables of several rewards on one game, side by side.

    Rows: my move after the opponent's previous move (the state I saw); columns: the
    opponent's move now. Red is negative, blue positive; each panel has its own scale.
    ``xi`` sets the norm-violation penalty ξ of every reward that uses one (shown in the title).
    """
    from .rewards import Reward, get_reward, reward_table

    if isinstance(rewards, (str, Reward)) or callable(rewards):
        rewards = [rewards]
    chosen = []
    for r in rewards:
        reward = get_reward(r)
        if xi is not None and accepts_xi(reward.fn):
            reward = reward.with_params(xi=float(xi))
        chosen.append(reward)
    game = get_game(game)
    if axes is None:
        ncols = ncols or min(len(chosen), 4)
        fig, axes = _new_axes(len(chosen), ncols, size=(3.3, 3.0))
    else:
        axes = list(axes)
        ncols = ncols or len(axes)
        fig = axes[0].figure
    for i, (ax, reward) in enumerate(zip(axes, chosen)):
        table = reward_table(reward, game)
        if not include_illegal:
            table = table.drop(index=("illegal", "any"))
        table.index = [_row_label(my, prev) if my != "illegal" else "illegal answer" for my, prev in table.index]
        table.columns = [f"they play {c}" for c in table.columns]
        table = table.where(table != 0, 0.0)  # no "-0" in the annotations
        bound = max(float(np.abs(table.to_numpy()).max()), 1e-9)
        sns.heatmap(
            table,
            ax=ax,
            annot=True,
            fmt="g",
            cmap="RdBu",
            vmin=-bound,
            vmax=bound,
            cbar=False,
            linewidths=1,
            linecolor="white",
            annot_kws={"fontsize": 12},
        )
        name = pretty_name(reward.name)
        ax.set_title(f"{name}\n(ξ = {reward.xi:g})" if accepts_xi(reward.fn) else f"{name}\n", fontsize=11)
        ax.xaxis.tick_top()
        ax.tick_params(length=0)
        ax.tick_params(axis="x", labelsize=10)
        ax.set_xlabel("")
        if i % ncols:
            ax.set_yticklabels([])
        else:
            ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    fig.suptitle(f"Rewards on the {game.title}", y=1.02)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------- policies and outcomes
def policy_heatmap(
    policy_table: "pandas.DataFrame | pandas.Series",
    ax: "Axes | None" = None,
    *,
    title: str | None = None,
    cbar: bool = True,
) -> "Figure":
    """A learned policy: P(D) per state (rows) for one or more learners (columns).

    Takes :meth:`moralkit.tabular.QLearningResult.policy_table` (or several of them joined
    side by side with ``pandas.concat(..., axis=1)``). 0 (green) = cooperates in that state,
    1 (red) = defects, 0.5 (white) = indifferent or the runs disagree.
    """
    import pandas as pd

    table = policy_table.to_frame() if isinstance(policy_table, pd.Series) else policy_table
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 1.25 * table.shape[1], 3.4))
    sns.heatmap(
        table.astype(float),
        ax=ax,
        vmin=0,
        vmax=1,
        cmap=POLICY_CMAP,
        annot=True,
        fmt=".2f",
        linewidths=1,
        linecolor="white",
        cbar=cbar,
        cbar_kws={"label": "P(D)"} if cbar else None,
        annot_kws={"fontsize": 11},
    )
    ax.set_ylabel(table.index.name or "state")
    ax.set_xlabel("")
    ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=30, ha="right")
    ax.tick_params(length=0)
    if title:
        ax.set_title(title)
    return ax.figure


_METRIC_LABELS = {
    "collective": "collective payoff\n(R_M + R_O per round)",
    "equality": "equality\n(1 − Gini; 1 = equal)",
    "worse_off": "worse-off player's payoff\n(min(R_M, R_O) per round)",
}


def outcome_metrics_plot(
    metrics: "pandas.DataFrame | Mapping[str, pandas.DataFrame]",
    *,
    hue: str = "pair",
    axes: Sequence["Axes"] | None = None,
) -> "Figure":
    """The outcome metrics of SPEC §7 over training: one panel per metric, one line per pair.

    ``metrics`` is :func:`moralkit.tabular.outcome_metrics` (indexed by ``window``), a dict of
    them keyed by a label (e.g. ``"game vs utilitarian"``), or one tidy table with a ``window``
    column and a ``hue`` column.
    """
    import pandas as pd

    if isinstance(metrics, Mapping):
        tidy = pd.concat([m.reset_index().assign(**{hue: label}) for label, m in metrics.items()], ignore_index=True)
    else:
        tidy = metrics.reset_index() if "window" not in metrics.columns else metrics.copy()
        if hue not in tidy.columns:
            tidy[hue] = "learners"
    names = [m for m in _METRIC_LABELS if m in tidy.columns]
    if axes is None:
        fig, axes = _new_axes(len(names), len(names), size=(4.2, 3.3))
    else:
        axes = list(axes)
        fig = axes[0].figure
    for i, (ax, metric) in enumerate(zip(axes, names)):
        sns.lineplot(data=tidy, x="window", y=metric, hue=hue, ax=ax, legend=(i == len(names) - 1), linewidth=2)
        ax.set_title(_METRIC_LABELS[metric], fontsize=11)
        ax.set_ylabel("")
        ax.set_xlabel("iteration")
    if metrics is not None and len(names):
        leg = axes[len(names) - 1].get_legend()
        if leg is not None:
            leg.set_bbox_to_anchor((1.02, 1.0))
            leg.set_loc("upper left")
            leg.set_frame_on(False)
    fig.tight_layout()
    return fig


def discounted_values_plot(
    game: MatrixGame | str = "prisoners_dilemma",
    gammas: Sequence[float] | None = None,
    ax: "Axes | None" = None,
) -> "Figure":
    """Against Tit-for-Tat: average payoff per round of three plans, as a function of γ.

    The plans start where Tit-for-Tat is about to cooperate: cooperate forever, defect forever,
    or alternate D, C, D, C. "Average per round" is (1 − γ) × the discounted sum, so the lines
    are on the payoff scale. A dashed line marks the γ above which cooperating is best.
    """
    from .tabular import cooperation_threshold, tft_discounted_values

    game = get_game(game)
    gammas = np.linspace(0.0, 0.99, 199) if gammas is None else np.asarray(gammas, dtype=float)
    values = tft_discounted_values(game, gammas)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.8))
    styles = {
        "always C": ACTION_TYPE_COLOURS["C|C"],
        "always D": ACTION_TYPE_COLOURS["D|D"],
        "alternate D, C": ACTION_TYPE_COLOURS["D|C"],
    }
    for plan, colour in styles.items():
        ax.plot(gammas, values[plan], label=plan, color=colour, lw=2.5)
    threshold = cooperation_threshold(game)
    ax.axvline(threshold, color="black", ls="--", lw=1.2)
    ax.text(threshold + 0.01, ax.get_ylim()[1], f" γ = {threshold:.2g}: cooperating\n becomes best", va="top", fontsize=10)
    ax.set_xlabel("discount factor γ (how much the learner cares about the next rounds)")
    ax.set_ylabel("average payoff per round\n(1 − γ) × discounted sum")
    ax.set_title(f"Against Tit-for-Tat in the {game.title}")
    ax.legend(frameon=False, loc="lower right")
    return ax.figure


# --------------------------------------------------------------------- display tables
def _strategy_text(sigma: np.ndarray, actions: tuple[str, str]) -> str:
    """A pure strategy's action name."""
    return actions[0] if sigma[0] >= sigma[1] else actions[1]


def game_facts(game: MatrixGame | str) -> dict:
    """What a course says about a game, as short text: kind, equilibria (pure and mixed), Pareto cells.

    Mixed equilibria come from nashpy (``MatrixGame.nash_equilibria``) and show each player's
    probability of playing the first action and the expected payoffs.
    """
    game = get_game(game)
    equilibria = []
    for s_m, s_o in game.nash_equilibria():
        pay_m = float(s_m @ game.row_matrix @ s_o)
        pay_o = float(s_m @ game.col_matrix @ s_o)
        pure = all(np.isclose(s.max(), 1.0) for s in (s_m, s_o))
        a = game.actions[0]
        where = (
            f"({_strategy_text(s_m, game.actions)}, {_strategy_text(s_o, game.actions)})"
            if pure
            else f"mixed: P(M plays {a}) = {s_m[0]:.2g}, P(O plays {a}) = {s_o[0]:.2g}"
        )
        equilibria.append(f"{where} → {_fmt(round(pay_m, 3))}, {_fmt(round(pay_o, 3))}")
    cells = lambda pairs: ", ".join(f"({a}, {b})" for a, b in pairs) or "none"  # noqa: E731
    return {
        "game": game.name,
        "title": game.title,
        "kind": game.classify(),
        "social dilemma": game.is_social_dilemma(),
        "pure Nash": cells(game.pure_nash_equilibria()),
        "all Nash (payoffs M, O)": "; ".join(equilibria),
        "Pareto-optimal": cells(game.pareto_optimal_cells()),
        "best collective": game.best_collective,
    }


def game_facts_table(games: Iterable[MatrixGame | str] = SIX_GAMES) -> "pandas.DataFrame":
    """:func:`game_facts` for several games, one row each (indexed by game name)."""
    import pandas as pd

    return pd.DataFrame([game_facts(g) for g in games]).set_index("game")
