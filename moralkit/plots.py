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
import textwrap
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.patches import Rectangle

from .env import ACTION_TYPE_MEANING, ACTION_TYPES
from .games import C, D, SIX_GAMES, MatrixGame, get_game
from .profiles import SMOKE_MARK, is_smoke
from .rewards import accepts_xi

if TYPE_CHECKING:  # pragma: no cover
    import pathlib

    import pandas
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .rewards import Reward
    from .tabular import QLearningResult

__all__ = [
    "ACTION_TYPE_COLOURS",
    "PLAYER_COLOURS",
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
    "POLICY_CMAP",
    "PAYOFF_CMAP",
    "pretty_name",
    "SMOKE_MARK",
    "mark_smoke",
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

# --------------------------------------------------------------------- helpers
def pretty_name(reward_name: str) -> str:
    """A reward name for titles: ``game_deontological`` -> ``game + deontological``,
    ``game_then_deontological`` (a schedule) -> ``game → deontological``."""
    name = str(reward_name)
    if "_then_" in name:
        return " → ".join(pretty_name(part) for part in name.split("_then_"))
    if name.startswith("game_") and name != "game_":
        name = "game + " + name[len("game_"):]
    return name.replace("_", " ")


def mark_smoke(fig: "Figure", profile="smoke") -> "Figure":
    """Stamp :data:`SMOKE_MARK` across ``fig`` when ``profile`` is the smoke profile (else leave it as it is).

    The ``smoke`` profile runs every code path in minutes and learns nothing: its figures must not
    be read as results. The mark is a large faint diagonal text over the whole figure plus a small
    red line in the bottom right corner; stamping twice changes nothing.
    """
    if not is_smoke(profile) or any(t.get_gid() == "moralkit-smoke" for t in fig.texts):
        return fig
    fig.text(0.5, 0.5, SMOKE_MARK, gid="moralkit-smoke", ha="center", va="center", rotation=20, fontsize=26,
             color="#C00000", alpha=0.22, weight="bold", zorder=1000)
    fig.text(0.998, 0.002, SMOKE_MARK, gid="moralkit-smoke-corner", ha="right", va="bottom", fontsize=8,
             color="#C00000", weight="bold", zorder=1000)
    return fig


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
    """A grid of :func:`payoff_heatmap`, one per game (default: the six games of docs/science.md §1).

    Under each heatmap: the kind of game (``MatrixGame.kind_caption()``).
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
            ax.set_xlabel(game.kind_caption(), fontsize=10, color="#444444")
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
    """The outcome metrics of docs/science.md §7 over training: one panel per metric, one line per pair.

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


# --------------------------------------------------------------------- evaluation (docs/science.md §6)
AGENT_COLOURS: dict[str, str] = {
    "no_finetuning": "#949494",
    "game": "#DE8F05",
    "deontological": "#0173B2",
    "utilitarian": "#029E73",
    "game_deontological": "#CC78BC",
    "game_then_deontological": "#CA9161",
    "game_then_utilitarian": "#FBAFE4",
    "prompted_utilitarian": "#56B4E9",
    "prompted_deontological": "#8C6BB1",
}
"""Fixed bar colours of the paper's agents (and our prompting baselines) in evaluation figures."""

_FALLBACK_AGENT_COLOURS = ("#0B3C8C", "#8C2D04", "#3C8C0B", "#8C0B6B", "#6B6B0B", "#0B8C8C")

REGRET_METRICS: dict[str, str] = {
    "deont_regret": "deontological regret",
    "utilit_regret": "utilitarian regret",
}
"""The two regrets of docs/science.md §6 (column name -> axis label); both are "lower is better"."""

_REGRET_RANGE = {"deont_regret": 6.0, "utilit_regret": 1.0}


def agent_colours(agents: Iterable[str]) -> dict[str, str]:
    """A colour per agent: :data:`AGENT_COLOURS` for known names, a fixed cycle for the others."""
    out, k = {}, 0
    for agent in agents:
        if agent in AGENT_COLOURS:
            out[agent] = AGENT_COLOURS[agent]
        else:
            out[agent] = _FALLBACK_AGENT_COLOURS[k % len(_FALLBACK_AGENT_COLOURS)]
            k += 1
    return out


def _game_order(games: Iterable[str]) -> list[str]:
    """Games in the paper's order (the five evaluation games first), others in order of appearance."""
    from .games import EVALUATION_GAMES

    seen = list(dict.fromkeys(games))
    known = [g for g in (*EVALUATION_GAMES, *SIX_GAMES) if g in seen]
    return list(dict.fromkeys(known + seen))


def _game_title(name: str) -> str:
    try:
        return get_game(name).title
    except Exception:  # a game not in the catalogue: its name is all we have
        return str(name).replace("_", " ")


def _one_label_set(summary: "pandas.DataFrame", what: str) -> "pandas.DataFrame":
    if "labels" in summary.columns and summary["labels"].nunique() > 1:
        sets = ", ".join(map(str, summary["labels"].unique()))
        raise ValueError(
            f"{what} draws one label set at a time; this table has several ({sets}). "
            "Select one, e.g. summary[summary['labels'] == 'test']."
        )
    return summary


def _paper_values(summary: "pandas.DataFrame", reference, metric: str) -> "pandas.Series | None":
    """The paper's value of ``metric`` for each row of ``summary`` (NaN where it has none), or None."""
    import pandas as pd

    column = f"paper_{metric}"
    if reference is None:
        return summary[column] if column in summary.columns else None
    if isinstance(reference, str) or reference is True:
        from .evaluate import paper_reference

        reference = paper_reference()
    ref = reference.rename(columns={"model": "agent"})
    if column not in ref.columns:
        ref = ref.rename(columns={metric: column})
    if column not in ref.columns or not {"agent", "game"} <= set(ref.columns):
        raise KeyError(f"The reference needs columns agent (or model), game and {metric} (or {column}).")
    ref = ref[["agent", "game", column]].drop_duplicates(["agent", "game"])
    merged = summary[["agent", "game"]].merge(ref, on=["agent", "game"], how="left")
    return pd.Series(merged[column].to_numpy(), index=summary.index, name=column)


def _regret_errors(rounds: "pandas.DataFrame", metric: str, r_illegal: float) -> "pandas.Series":
    """Half-width of a 95% confidence interval (1.96 standard errors) per (agent, game)."""
    if metric == "deont_regret":
        per_round = -rounds["reward_deontological"].astype(float)
    else:
        best = rounds["best_collective"].astype(float)
        per_round = (best - rounds["reward_utilitarian"].astype(float)) / (best - r_illegal)
    grouped = per_round.groupby([rounds["agent"], rounds["game"]])
    return 1.96 * grouped.std(ddof=1).fillna(0.0) / np.sqrt(grouped.count())


def regret_bars(
    summary: "pandas.DataFrame",
    reference: "pandas.DataFrame | str | None" = None,
    metric: str | Sequence[str] = "deont_regret",
    *,
    rounds: "pandas.DataFrame | None" = None,
    xi: float | None = None,
    r_illegal: float = -6.0,
    axes: "Axes | Sequence[Axes] | None" = None,
    title: str | None = None,
    legend: bool = True,
) -> "Figure":
    """Regrets per game and agent, with the paper's values beside ours (the paper's Figure 4 style).

    Parameters
    ----------
    summary:
        :func:`moralkit.evaluate.summarise` (``Evaluation.summary``) or
        :func:`moralkit.evaluate.compare_with_paper`: columns ``agent``, ``game`` and the
        regret(s), for one label set.
    reference:
        The paper's values to draw beside ours, as hatched bars: ``"paper"`` for
        :func:`moralkit.evaluate.paper_reference`, or a table with ``agent`` (or ``model``),
        ``game`` and the metric. ``None``: the ``paper_<metric>`` columns of a
        ``compare_with_paper`` table, if present. Agents the paper lacks get no hatched bar.
    metric:
        ``"deont_regret"`` (0 … 6), ``"utilit_regret"`` (0 … 1), or both (one panel each).
    rounds:
        The evaluation's rounds (``Evaluation.rounds``): adds 95% confidence intervals to our
        bars, so you can see whether a gap to the paper is more than sampling noise.
    xi:
        ξ of the deontological regret, shown in the axis label (the paper's evaluation used 4).
    axes:
        Axes to draw into (one per metric); by default a new figure.

    Solid bars are ours, hatched bars the paper's (read off its figure, ±0.05–0.1). Lower is
    better for both regrets.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    for m in metrics:
        if m not in REGRET_METRICS:
            raise ValueError(f"metric must be one of {', '.join(REGRET_METRICS)}, got {m!r}.")
    summary = _one_label_set(summary, "regret_bars")
    if axes is None:
        n_games = summary["game"].nunique()
        n_agents = summary["agent"].nunique()
        width = max(6.5, 2.5 + n_games * (0.6 + 0.4 * n_agents))
        fig, axes = _new_axes(len(metrics), 1, size=(width, 3.6))
    else:
        axes = [axes] if not isinstance(axes, (list, tuple, np.ndarray)) else list(axes)
        if len(axes) != len(metrics):
            raise ValueError(f"Pass one axes per metric ({len(metrics)}), got {len(axes)}.")
        fig = axes[0].figure
    games = _game_order(summary["game"])
    agents = list(dict.fromkeys(summary["agent"]))
    colours = agent_colours(agents)
    table = summary.set_index(["agent", "game"])
    from matplotlib.patches import Patch

    for ax, m in zip(axes, metrics):
        paper = _paper_values(summary, reference, m)
        paper = None if paper is None or paper.isna().all() else paper.set_axis(table.index)
        errors = None
        if rounds is not None:
            chosen = rounds
            if "labels" in summary.columns and "labels" in rounds.columns and len(summary):
                chosen = rounds[rounds["labels"] == summary["labels"].iloc[0]]
            errors = _regret_errors(chosen, m, r_illegal)
        # one slot per agent, two (ours, the paper's) for agents the paper has values for
        has_paper = {a: paper is not None and bool(paper.loc[[a]].notna().any()) for a in agents}
        starts = np.cumsum([0] + [1 + has_paper[a] for a in agents])
        width = 0.8 / starts[-1]
        for k, agent in enumerate(agents):
            for gi, game in enumerate(games):
                if (agent, game) not in table.index:
                    continue
                left = gi - 0.4 + width * starts[k]
                value = float(table.loc[(agent, game), m])
                err = float(errors.get((agent, game), 0.0)) if errors is not None else None
                ax.bar(left, value, width, align="edge", color=colours[agent], edgecolor="white", lw=0.5,
                       yerr=err, ecolor="#333333", capsize=2, error_kw={"lw": 1})
                if has_paper[agent]:
                    ref_value = paper.loc[(agent, game)]
                    if np.isfinite(ref_value):
                        ax.bar(left + width, float(ref_value), width, align="edge", facecolor="white",
                               edgecolor=colours[agent], hatch="///", lw=1.2)
        ax.set_xticks(range(len(games)), [textwrap.fill(_game_title(g), 13) for g in games])
        label = REGRET_METRICS[m]
        if m == "deont_regret" and xi is not None:
            label += f" (ξ = {xi:g})"
        ax.set_ylabel("regret (lower is better)")
        top = max(_REGRET_RANGE[m], float(np.nanmax(table[m].to_numpy(dtype=float))) if len(table) else 0.0)
        ax.set_ylim(0, top * 1.05)
        ax.set_xlim(-0.5, len(games) - 0.5)
        ax.grid(axis="x", visible=False)
        ax.set_title(title if title is not None else label)
        if legend and ax is axes[0]:
            handles = [Patch(facecolor=colours[a], label=pretty_name(a)) for a in agents]
            if paper is not None:
                handles.append(Patch(facecolor="white", edgecolor="#333333", hatch="///", label="paper (Fig. 4)"))
            ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def action_type_bars(
    summary: "pandas.DataFrame",
    *,
    games: Sequence[str] | None = None,
    agents: Sequence[str] | None = None,
    ncols: int | None = None,
    legend: bool = True,
    suptitle: str | None = None,
) -> "Figure":
    """What each agent did, per game: stacked shares of C|C, C|D, D|C, D|D and illegal answers.

    ``summary`` is :func:`moralkit.evaluate.summarise` (or ``compare_with_paper``), one label
    set. One panel per game; one horizontal bar per agent, its five segments in the shared
    action-type colours (each bar adds up to 1). Read a bar as: "in what share of rounds did
    the agent cooperate / defect, given what the opponent had just played?".
    """
    summary = _one_label_set(summary, "action_type_bars")
    missing = [t for t in ACTION_TYPES if t not in summary.columns]
    if missing:
        raise KeyError(f"The summary lacks the action-type column(s) {missing}; use moralkit.evaluate.summarise().")
    games = list(games) if games is not None else _game_order(summary["game"])
    agents = list(agents) if agents is not None else list(dict.fromkeys(summary["agent"]))
    table = summary.set_index(["agent", "game"])
    ncols = ncols or min(len(games), 5)
    height = 1.8 + 0.4 * len(agents)
    fig, axes = _new_axes(len(games), ncols, size=(max(3.0, 8.0 / ncols), height), sharey=True)
    for i, (ax, game) in enumerate(zip(axes, games)):
        left = np.zeros(len(agents))
        for t in ACTION_TYPES:
            shares = np.array([float(table.loc[(a, game), t]) if (a, game) in table.index else 0.0 for a in agents])
            ax.barh(range(len(agents)), shares, left=left, color=ACTION_TYPE_COLOURS[t], height=0.75,
                    edgecolor="white", lw=0.5, label=t)
            left += shares
        ax.set_yticks(range(len(agents)), [pretty_name(a) for a in agents])
        ax.set_ylim(len(agents) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.set_xlabel("share of rounds")
        ax.set_title(_game_title(game), fontsize=11)
        ax.grid(False)
    if suptitle:
        fig.suptitle(suptitle)
    if legend:
        rows = math.ceil(len(games) / ncols)
        return action_type_legend(fig, bottom_margin=min(0.3, 0.45 / (height * rows)))
    fig.tight_layout()
    return fig


__all__ += ["AGENT_COLOURS", "REGRET_METRICS", "agent_colours", "regret_bars", "action_type_bars"]


def _state_index(table: "pandas.DataFrame") -> list[str]:
    return [f"{m}|{o}" for m, o in zip(table["my_prev"], table["opp_prev"])]


def label_probability_heatmaps(
    tables: "Mapping[str, pandas.DataFrame] | pandas.DataFrame",
    *,
    title: str | None = None,
) -> "Figure":
    """What a language model would answer in each state: the legal mass and, within it, P(D).

    ``tables`` maps a column name (a model, a label set, a game ...) to
    :meth:`moralkit.llm.LLMPlayer.policy_table` (columns ``my_prev``, ``opp_prev``, ``P(C)``,
    ``P(D)``, ``P(illegal)``); a single table is drawn as one column. Two panels, states
    (my last | their last move) as rows:

    * **P(legal answer)** = P(C) + P(D), grey: how often the model answers in the format at all;
    * **P(D | legal)** = P(D) / (P(C) + P(D)), green (C) to red (D) as in
      :func:`policy_heatmap`: which label it prefers *when* it answers in format.
    """
    import pandas as pd

    if isinstance(tables, pd.DataFrame):
        tables = {"model": tables}
    if not tables:
        raise ValueError("label_probability_heatmaps needs at least one policy table.")
    legal, d_given_legal = {}, {}
    for name, table in tables.items():
        index = pd.Index(_state_index(table), name="state (my last|their last)")
        mass = (table["P(C)"] + table["P(D)"]).to_numpy(dtype=float)
        legal[name] = pd.Series(mass, index=index)
        with np.errstate(invalid="ignore", divide="ignore"):
            d_given_legal[name] = pd.Series(table["P(D)"].to_numpy(dtype=float) / mass, index=index)
    legal, d_given_legal = pd.DataFrame(legal), pd.DataFrame(d_given_legal)
    width = 1.6 + 1.1 * legal.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(2 * width + 1.0, 3.4))
    sns.heatmap(legal, ax=axes[0], vmin=0, vmax=1, cmap="Greys", annot=True, fmt=".2g", linewidths=1,
                linecolor="white", cbar_kws={"label": "P(legal answer)"}, annot_kws={"fontsize": 10})
    axes[0].set_title("P(legal answer) = P(C) + P(D)")
    axes[0].set_yticklabels(axes[0].get_yticklabels(), rotation=0)
    axes[0].set_xticklabels(axes[0].get_xticklabels(), rotation=30, ha="right")
    axes[0].set_xlabel("")
    axes[0].tick_params(length=0)
    policy_heatmap(d_given_legal, ax=axes[1], title="P(D | legal answer)")
    axes[1].collections[0].colorbar.set_label("P(D | legal)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


__all__ += ["label_probability_heatmaps"]


# --------------------------------------------------------------------- LLM fine-tuning (chapter 4)
from matplotlib.ticker import MaxNLocator  # noqa: E402  (integer episode ticks)


def _log_and_config(run_or_log) -> "tuple[pandas.DataFrame, object | None]":
    """(rounds table, training config or None) of a :class:`~moralkit.training.TrainingRun` or a log."""
    import pandas as pd

    if isinstance(run_or_log, pd.DataFrame):
        return run_or_log, None
    if hasattr(run_or_log, "log") and hasattr(run_or_log, "config"):
        return run_or_log.log, run_or_log.config
    raise TypeError(
        f"Expected a TrainingRun or its log (a DataFrame with 'episode' and 'action_type'), got {type(run_or_log).__name__}."
    )


def _run_title(config) -> str:
    return f"{pretty_name(config.label.replace('_then_', ' → '))} vs {pretty_name(config.opponent)}"


def _mark_reward_switches(ax: "Axes", log: "pandas.DataFrame") -> None:
    """A dashed line (and the new reward's name) where the training reward changes (unlearning)."""
    from .analysis import reward_switches

    per_episode = log.groupby("episode")["train_reward"].first() if "train_reward" in log.columns else {}
    for episode in reward_switches(log):
        reward = per_episode[episode]
        x = float(episode) - 0.5
        ax.axvline(x, color="black", lw=1.2, ls="--")
        ax.text(x, 0.98, f" → {pretty_name(reward)}", ha="left", va="top", fontsize=9, color="black")


def training_dynamics(
    run_or_log,
    ax: "Axes | None" = None,
    window: int = 1,
    *,
    title: str | None = None,
    legend: bool = True,
) -> "Figure":
    """How an LLM's behaviour changes during PPO fine-tuning (the paper's Figure 2 style).

    ``run_or_log`` is a :class:`~moralkit.training.TrainingRun` or its ``log`` (one row per
    training round, with ``episode`` and ``action_type``). Each band is the share of rounds in
    which the player answered C or D given the opponent's previous move (C|C, C|D, D|C, D|D) or
    answered out of format (grey); ``window`` episodes are pooled per point. Where the training
    reward changes (unlearning), a dashed line marks the switch.
    """
    log, config = _log_and_config(run_or_log)
    if len(log) == 0:
        raise ValueError("This run has no training rounds yet: train it first (run.train()).")
    if title is None and config is not None:
        title = _run_title(config)
    fig = action_type_area(log, x="episode", ax=ax, window=window, title=title, legend=legend,
                           xlabel="episode (PPO update)" if window == 1 else f"episode (PPO update, bins of {window})")
    ax = ax or fig.axes[0]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _mark_reward_switches(ax, log)
    if log["episode"].nunique() == 1:  # one episode: stackplot draws nothing visible
        ax.set_xlim(float(log["episode"].min()) - 0.5, float(log["episode"].max()) + 0.5)
    return fig


def training_grid(
    runs,
    window: int = 1,
    *,
    ncols: int | None = None,
    suptitle: str | None = None,
) -> "Figure":
    """:func:`training_dynamics` of several runs side by side, one panel per run, one shared legend.

    ``runs`` is a sequence of :class:`~moralkit.training.TrainingRun` (titled by their reward)
    or a mapping from a panel title to a run or its log.
    """
    if isinstance(runs, Mapping):
        items = list(runs.items())
    else:
        items = []
        for run in runs:
            _, config = _log_and_config(run)
            items.append((pretty_name(config.label.replace("_then_", " → ")) if config is not None else "", run))
    if not items:
        raise ValueError("training_grid needs at least one run.")
    ncols = ncols or min(len(items), 4)
    fig, axes = _new_axes(len(items), ncols, size=(3.6, 3.0), sharey=True)
    for i, (ax, (label, run)) in enumerate(zip(axes, items)):
        training_dynamics(run, ax=ax, window=window, title=label, legend=False)
        if i % ncols:
            ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    return action_type_legend(fig, bottom_margin=0.14 if len(axes) <= ncols else 0.08)


class LiveTrainingPlot:
    """A live training plot: pass it as ``TrainingRun.train(callback=...)``.

    Every ``every`` episodes it redraws the action-type shares so far (:func:`training_dynamics`)
    and, with ``kl=True``, the KL divergence to the base model per update. In a notebook the
    picture is replaced in place (one output that updates, no flicker); headless (papermill, CI,
    a script, or ``live=False``) nothing is shown and nothing is redrawn until you ask::

        live = plots.LiveTrainingPlot(every=2)
        run.train(callback=live)
        live.save(wb, "training_game")      # the final picture, also headless

    One object follows one run at a time; :meth:`draw` (re)draws it from any run's log, e.g. a
    finished run that ``train()`` skipped.
    """

    def __init__(self, every: int = 1, *, window: int = 1, kl: bool = True, live: bool | None = None,
                 title: str | None = None, dpi: int = 90, profile=None):
        from matplotlib.figure import Figure

        self.profile = profile  # the smoke profile's pictures carry the smoke mark

        self.every = max(1, int(every))
        self.window = window
        self.kl = kl
        self.live = _can_show_live() if live is None else bool(live)
        self.title = title
        self.dpi = dpi
        self.run = None
        self._handle = None
        # a Figure outside pyplot: the notebook never shows it by itself, only through our handle
        self.figure = Figure(figsize=(10.5, 3.9) if kl else (7.5, 3.9))
        if kl:
            self.figure.subplots(1, 2, gridspec_kw={"width_ratios": [2.4, 1]})
        else:
            self.figure.subplots()

    def __call__(self, run, rounds=None) -> None:
        self.run = run
        if self.live and run.episode % self.every == 0:
            self.draw()
            self.show()

    def draw(self, run=None) -> "Figure":
        """Redraw the figure from ``run`` (default: the run seen last) and return it."""
        run = run if run is not None else self.run
        if run is None:
            raise ValueError("No run to draw yet: pass one, or use this object as train(callback=...).")
        self.run = run
        log = run.log
        axes = self.figure.axes
        for ax in axes:
            ax.clear()
        if len(log) == 0:
            axes[0].text(0.5, 0.5, "no training rounds yet", ha="center", va="center", transform=axes[0].transAxes)
        else:
            training_dynamics(log, ax=axes[0], window=self.window, title=self.title or _run_title(run.config),
                              legend=False)
        if self.kl:
            ax = axes[1]
            updates = run.updates
            if len(updates) and "objective/kl" in updates.columns:
                ax.plot(updates["episode"], updates["objective/kl"], color="#333333", marker="o" if len(updates) < 30 else None, ms=3)
            ax.set_xlabel("episode (PPO update)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("KL to the base model (nats)")
            ax.set_title("distance from the base model")
        self.figure.legends.clear()
        mark_smoke(self.figure, self.profile)
        return action_type_legend(self.figure, bottom_margin=0.13)

    def show(self) -> None:
        """Show (or update in place) the current picture in the notebook; nothing headless."""
        if not self.live:
            return
        from IPython.display import Image, display

        image = Image(data=_png_bytes(self.figure, self.dpi), format="png")
        if self._handle is None:
            self._handle = display(image, display_id=True)
        else:
            self._handle.update(image)

    def finish(self, run=None) -> None:
        """Draw and show the final state (also when the last episode was not a multiple of ``every``).

        Returns nothing, so that a notebook cell ending with it does not show the picture twice;
        the figure is ``live.figure``.
        """
        self.draw(run)
        self.show()

    def save(self, wb, name: str) -> "pathlib.Path":
        """Draw the final state and save it with ``wb.save_figure`` (works headless too)."""
        self.draw()
        return wb.save_figure(self.figure, name)

    def _repr_png_(self) -> bytes:
        return _png_bytes(self.figure, self.dpi)


def _png_bytes(fig: "Figure", dpi: int) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _can_show_live() -> bool:
    """Whether a live plot can be seen: a notebook kernel that is not headless and not on Agg."""
    import os

    from .profiles import headless as _headless

    if _headless() or os.environ.get("MPLBACKEND", "").lower() == "agg":
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _outcome_colours() -> dict[str, np.ndarray]:
    from matplotlib.colors import to_rgb

    return {
        "P(C)": np.array(to_rgb(ACTION_TYPE_COLOURS["C|C"])),
        "P(D)": np.array(to_rgb(ACTION_TYPE_COLOURS["D|C"])),
        "P(illegal)": np.array(to_rgb(ACTION_TYPE_COLOURS["illegal"])),
    }


def _policy_panel(table: "pandas.DataFrame", ax: "Axes", title: str | None) -> None:
    """One 2×2 panel: rows = my last move, columns = their last move; colour = mix of the outcomes."""
    colours = _outcome_colours()
    image = np.ones((2, 2, 3))
    index = {"C": 0, "D": 1}
    for _, row in table.iterrows():
        i, j = index[str(row["my_prev"])], index[str(row["opp_prev"])]
        probs = {k: float(row[k]) for k in colours}
        total = sum(probs.values()) or 1.0
        rgb = sum(colours[k] * p / total for k, p in probs.items())
        image[i, j] = rgb
        luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
        ink = "black" if luminance > 0.5 else "white"
        ax.text(j, i - 0.12, f"P(C) {probs['P(C)']:.2f}", ha="center", va="center", fontsize=11, fontweight="bold", color=ink)
        ax.text(j, i + 0.17, f"P(D) {probs['P(D)']:.2f}\nillegal {probs['P(illegal)']:.2f}", ha="center", va="center",
                fontsize=9, color=ink, linespacing=1.2)
    ax.imshow(image, vmin=0, vmax=1)
    ax.set_xticks([0, 1], ["C", "D"])
    ax.set_yticks([0, 1], ["C", "D"])
    ax.set_xlabel("their last move")
    ax.set_ylabel("my last move")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.grid(False)
    for x in (0.5,):
        ax.axhline(x, color="white", lw=2)
        ax.axvline(x, color="white", lw=2)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, pad=8)


def policy_before_after(
    before: "pandas.DataFrame",
    after: "pandas.DataFrame | Mapping[str, pandas.DataFrame]",
    *,
    titles: tuple[str, str] = ("before fine-tuning", "after fine-tuning"),
    suptitle: str | None = None,
    ncols: int | None = None,
) -> "Figure":
    """What a language model would answer in each state, before and after fine-tuning, side by side.

    ``before`` and ``after`` are :meth:`moralkit.llm.LLMPlayer.policy_table` tables (columns
    ``my_prev``, ``opp_prev``, ``P(C)``, ``P(D)``, ``P(illegal)``); ``after`` may also map titles
    to several tables (e.g. one per reward), drawn after ``before`` in one row.

    Each panel has the four memory-1 states: rows = my last move, columns = their last move.
    A cell shows P(C) (bold) with P(D) and P(illegal) below it, and its colour mixes the three
    outcome colours in proportion to their probabilities: green = C, red = D, grey = an illegal
    answer. An untuned model is grey everywhere; a cooperating model turns green, a defecting one red.
    """
    import pandas as pd
    from matplotlib.patches import Patch

    tables = {titles[0]: before}
    if isinstance(after, pd.DataFrame):
        tables[titles[1]] = after
    else:
        tables.update(dict(after))
    for name, table in tables.items():
        missing = {"my_prev", "opp_prev", "P(C)", "P(D)", "P(illegal)"} - set(table.columns)
        if missing:
            raise KeyError(f"The table {name!r} lacks the column(s) {sorted(missing)}; use LLMPlayer.policy_table(game).")
    n = len(tables)
    ncols = ncols or min(n, 5)
    fig, axes = _new_axes(n, ncols, size=(3.0, 3.9) if n > 2 else (3.5, 4.1))
    for i, (ax, (name, table)) in enumerate(zip(axes, tables.items())):
        _policy_panel(table, ax, name)
        if i % ncols:
            ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    colours = _outcome_colours()
    handles = [Patch(color=colours["P(C)"]), Patch(color=colours["P(D)"]), Patch(color=colours["P(illegal)"])]
    labels = ["C (first label)", "D (second label)", "illegal answer"]
    nrows = math.ceil(n / ncols)
    top = 1 - 0.45 / fig.get_figheight() if suptitle else 1
    fig.tight_layout(rect=(0, 0.12 / nrows, 1, top))
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.0),
               title="cell colour = these colours mixed by their probabilities")
    return fig


PPO_CURVES: dict[str, str] = {
    "objective/kl": "KL to the base model (nats)",
    "objective/kl_coef": "KL coefficient β",
    "ppo/loss/policy": "policy loss (clipped)",
    "ppo/loss/value": "value loss",
    "objective/entropy": "entropy of the answer tokens (nats)",
    "ppo/policy/clipfrac": "share of clipped tokens",
    "score/raw_mean": "mean moral reward of the batch",
    "ppo/val/mean": "value-head estimate",
}
"""Columns of ``TrainingRun.updates`` that :func:`ppo_curves` knows a label for."""


def ppo_curves(
    runs,
    metrics: Sequence[str] = ("objective/kl", "ppo/loss/policy", "ppo/loss/value", "objective/entropy"),
    *,
    ncols: int | None = None,
    window: int = 1,
    switch: int | None = None,
) -> "Figure":
    """PPO's own statistics per update (``TrainingRun.updates``): one panel per metric, one line per run.

    ``switch``: the first episode of a new reward (an unlearning run); a dashed line marks it.

    ``runs`` is a sequence of :class:`~moralkit.training.TrainingRun` (labelled by their reward) or
    a mapping from a label to a run or its ``updates`` table. ``window`` > 1 smooths each line with
    a running mean over that many updates. See :data:`PPO_CURVES` for what the metrics mean.
    """
    import pandas as pd
    from matplotlib.lines import Line2D

    if isinstance(runs, Mapping):
        items = list(runs.items())
    else:
        items = [(run.config.label, run) for run in runs]
    if not items:
        raise ValueError("ppo_curves needs at least one run.")
    tables = {label: (run if isinstance(run, pd.DataFrame) else run.updates) for label, run in items}
    colours = agent_colours(tables)
    ncols = ncols or min(len(metrics), 4)
    fig, axes = _new_axes(len(metrics), ncols, size=(3.4, 2.8))
    for ax, metric in zip(axes, metrics):
        for label, table in tables.items():
            if metric not in table.columns or len(table) == 0:
                continue
            y = table[metric].astype(float)
            if window > 1:
                y = y.rolling(window, min_periods=1).mean()
            ax.plot(table["episode"], y, color=colours[label], lw=1.6, marker="o" if len(table) < 30 else None, ms=3)
        if switch is not None:
            ax.axvline(switch - 0.5, color="black", ls="--", lw=1.2)
        ax.set_title(PPO_CURVES.get(metric, metric), fontsize=10.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("episode (PPO update)")
    handles = [Line2D([], [], color=colours[label], lw=2) for label in tables]
    fig.tight_layout(rect=(0, 0.1 / math.ceil(len(metrics) / ncols), 1, 1))
    fig.legend(handles, [pretty_name(label) for label in tables], loc="lower center", ncol=min(len(tables), 6),
               frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


__all__ += ["training_dynamics", "training_grid", "LiveTrainingPlot", "policy_before_after", "ppo_curves", "PPO_CURVES"]


# ---------------------------------------------------------------------------------------------
# Figures of a run or a grid on disk (what the command line leaves behind)
# ---------------------------------------------------------------------------------------------


def save_figure(fig: "Figure", path, *, dpi: int = 120, profile=None):
    """Save ``fig`` as PNG at ``path`` atomically (a full disk never leaves a broken file), close it.

    Made in the smoke ``profile``, it carries the smoke mark (:func:`mark_smoke`).
    """
    from .storage import save_png

    mark_smoke(fig, profile)
    try:
        return save_png(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def save_run_figures(run, folder=None, *, profile=None) -> list:
    """A training run's figures as PNG files (default: ``<run folder>/figures/``); returns the paths.

    ``action_types.png``: :func:`training_dynamics` (the paper's Figure 2 style, the reward switch
    marked); ``ppo.png``: :func:`ppo_curves` (KL, losses, entropy per update). Safe to call while
    the run trains (headless "live plot"): each file is replaced atomically.
    """
    from pathlib import Path

    folder = Path(folder) if folder is not None else Path(run.folder) / "figures"
    if len(run.log) == 0:
        return []
    paths = [save_figure(training_dynamics(run, window=max(1, run.log["episode"].nunique() // 60)),
                         folder / "action_types.png", profile=profile)]
    if len(run.updates):
        paths.append(save_figure(ppo_curves([run]), folder / "ppo.png", profile=profile))
    return paths


__all__ += ["save_figure", "save_run_figures"]


# ---------------------------------------------------------------------------------------------
# Chapter 7: pluralistic alignment (MaxMin over moral stakeholders)
# ---------------------------------------------------------------------------------------------

STAKEHOLDER_COLOURS: tuple[str, ...] = ("#0072B2", "#CC79A7", "#009E73", "#E69F00", "#56B4E9", "#D55E00")
"""Colours of the stakeholders, in the order they are listed (Okabe–Ito)."""
RULE_COLOURS: dict[str, str] = {"maxmin": "#0B3C8C", "average": "#999999", "single reward": "#999999"}
"""The egalitarian rule in dark blue, the utilitarian average (or one pooled reward) in grey."""


def stakeholder_utility_lines(states, *, axes=None, points: int = 101, title: str | None = None) -> "Figure":
    """The lines U_k(p) of each stakeholder in each state, the lower envelope (min over k) shaded,
    and two points on it: the max–min policy (dark blue) and the utilitarian average's (grey).

    ``states``: the :class:`moralkit.pluralistic.StateUtilities` of :func:`~moralkit.pluralistic.stakeholder_utilities`.
    """
    from .pluralistic import solve_average, solve_maxmin

    states = list(states)
    if axes is None:
        fig, axes = _new_axes(len(states), ncols=len(states), size=(3.3, 3.1), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    fig = axes[0].figure
    p = np.linspace(0, 1, points)
    for u, ax in zip(states, axes):
        values = u.at(p)
        for k, name in enumerate(u.stakeholders):
            ax.plot(p, values[:, k], color=STAKEHOLDER_COLOURS[k % len(STAKEHOLDER_COLOURS)], lw=2, label=pretty_name(name))
        ax.fill_between(p, 0, values.min(axis=1), color="#0B3C8C", alpha=0.08, lw=0)
        ax.plot(p, values.min(axis=1), color="#0B3C8C", lw=1, ls=":")
        best, avg = solve_maxmin(u), solve_average(u)
        ax.plot([avg.p_cooperate], [avg.min_utility], "s", color=RULE_COLOURS["average"], ms=8,
                label="average's choice (its worst-off)")
        ax.plot([best.p_cooperate], [best.value], "o", color=RULE_COLOURS["maxmin"], ms=9,
                label="max–min")
        ax.annotate(f"p = {best.p_cooperate:.2f}\nmin = {best.value:.2f}", (best.p_cooperate, best.value),
                    xytext=(0, -30 if best.value > 0.4 else 14), textcoords="offset points", ha="center", fontsize=8,
                    color=RULE_COLOURS["maxmin"])
        ax.set_title(f"state {u.label}: they play C w.p. {u.opponent_cooperates:g}", fontsize=9)
        ax.set_xlabel("p = P(C)")
        ax.set_xlim(-0.04, 1.04)
        ax.set_ylim(-0.05, 1.08)
    axes[0].set_ylabel("normalised utility U_k(p)")
    for ax in axes[len(states):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), frameon=False, fontsize=8)
    fig.suptitle(title or "Each stakeholder's utility as a function of P(C), per state (my last|their last)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def rule_comparison(table: "pandas.DataFrame", *, ax=None, title: str | None = None) -> "Figure":
    """Bars per state: P(C) and the worst-off stakeholder's utility under the max–min and the average rules.

    ``table``: :func:`moralkit.pluralistic.maxmin_table`.
    """
    if ax is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    else:
        axes = np.atleast_1d(ax)
        fig = axes[0].figure
    states = list(dict.fromkeys(table["state"]))
    width = 0.38
    for j, (column, label) in enumerate([("p_cooperate", "P(C)"), ("min_utility", "worst-off stakeholder's utility")]):
        axis = axes[j] if len(axes) > 1 else axes[0]
        for i, rule in enumerate(("average", "maxmin")):
            rows = table[table["rule"] == rule].set_index("state").reindex(states)
            axis.bar(np.arange(len(states)) + (i - 0.5) * width, rows[column], width, color=RULE_COLOURS[rule],
                     label="utilitarian average" if rule == "average" else "egalitarian max–min")
        axis.set_xticks(np.arange(len(states)), states)
        axis.set_xlabel("state (my last|their last)")
        axis.set_ylabel(label)
        axis.set_ylim(0, 1.05)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(title or "Average vs egalitarian: what each rule plays, and what the worst-off gets")
    fig.tight_layout()
    return fig


def group_utility_bars(groups: "pandas.DataFrame", *, ax=None, title: str | None = None,
                       columns: Sequence[str] = ("single reward", "maxmin")) -> "Figure":
    """Each group's normalised utility under the single pooled reward's policy and under MaxMin.

    ``groups``: :attr:`moralkit.pluralistic.Impossibility.groups` (index: group; columns: share, the policies).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
    fig = ax.figure
    names = list(groups.index)
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        x = np.arange(len(names)) + (i - (len(columns) - 1) / 2) * width
        bars = ax.bar(x, groups[column], width, color=RULE_COLOURS.get(column, STAKEHOLDER_COLOURS[i]), label=column)
        for rect, v in zip(bars, groups[column]):
            ax.annotate(f"{v:.2f}", (rect.get_x() + rect.get_width() / 2, v), xytext=(0, 2), textcoords="offset points",
                        ha="center", fontsize=8)
    share = groups["share"] if "share" in groups else None
    ax.set_xticks(np.arange(len(names)), [f"{pretty_name(n)}\n({s:.0%} of users)" if share is not None else pretty_name(n)
                                          for n, s in zip(names, share if share is not None else names)])
    ax.set_ylabel("normalised utility (mean over states)")
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or "Who is served: one reward for everybody vs MaxMin over the learned groups")
    fig.tight_layout()
    return fig


def learned_vs_true_rewards(frame: "pandas.DataFrame", *, title: str | None = None) -> "Figure":
    """One panel per moral type: its true normalised reward per outcome (bars) and what EM learned (dots).

    ``frame``: :meth:`moralkit.pluralistic.Impossibility.rewards_frame`.
    """
    types = list(dict.fromkeys(frame["type"]))
    fig, axes = _new_axes(len(types), ncols=len(types), size=(3.6, 3.2), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for k, (t, ax) in enumerate(zip(types, axes)):
        rows = frame[frame["type"] == t]
        x = np.arange(len(rows))
        ax.bar(x, rows["true"], color=STAKEHOLDER_COLOURS[k % len(STAKEHOLDER_COLOURS)], alpha=0.45, label="true")
        ax.plot(x, rows["learned"], "o", color="black", ms=5, label="learned by EM")
        ax.set_xticks(x, rows["outcome"], rotation=60, ha="right", fontsize=7)
        ax.set_title(pretty_name(t))
        ax.set_ylim(-0.05, 1.1)
    axes[0].set_ylabel("normalised reward")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle(title or "The rewards EM recovered from preferences alone, against the hidden true ones")
    fig.tight_layout()
    return fig


def maxmin_training_curves(runs: "Mapping[str, object]", *, title: str | None = None) -> "Figure":
    """Tabular MaxMin training: the worst-off stakeholder's utility per state over training, per variant,
    with the LP value dashed. ``runs``: {label: :class:`moralkit.pluralistic.TabularRun`}."""
    runs = dict(runs)
    first = next(iter(runs.values()))
    states = list(dict.fromkeys(first.history["state"]))
    fig, axes = _new_axes(len(states), ncols=len(states), size=(3.3, 3.0), sharey=True)
    axes = np.atleast_1d(axes).ravel()
    for i, (label, run) in enumerate(runs.items()):
        h = run.history
        for state, ax in zip(states, axes):
            rows = h[h["state"] == state]
            ax.plot(rows["update"], rows["min_utility"], color=STAKEHOLDER_COLOURS[i % len(STAKEHOLDER_COLOURS)], lw=1.6,
                    label=label)
    for state, ax in zip(states, axes):
        lp = first.history[first.history["state"] == state]["lp_value"].iloc[0]
        ax.axhline(lp, color="black", ls="--", lw=1, label="LP value (exact max–min)")
        ax.set_title(f"state {state}", fontsize=9)
        ax.set_xlabel("update")
    axes[0].set_ylabel("worst-off stakeholder's utility")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False, fontsize=8)
    fig.suptitle(title or "Tabular MaxMin training: the minimum utility per state")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def stakeholder_curves(curves: "pandas.DataFrame", *, ax=None, title: str | None = None) -> "Figure":
    """Each stakeholder's mean normalised reward per update, and the minimum (thick, dark).

    ``curves``: :func:`moralkit.pluralistic.llm_stakeholder_curves` (index: episode; one column per
    stakeholder, plus ``min``).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.5, 3.4))
    fig = ax.figure
    names = [c for c in curves.columns if c != "min"]
    for k, name in enumerate(names):
        ax.plot(curves.index, curves[name], color=STAKEHOLDER_COLOURS[k % len(STAKEHOLDER_COLOURS)], lw=1.5,
                label=pretty_name(name))
    if "min" in curves:
        ax.plot(curves.index, curves["min"], color="#0B3C8C", lw=3, alpha=0.6, label="minimum")
    ax.set_xlabel("update (episode)")
    ax.set_ylabel("normalised reward (legal rounds)")
    ax.set_ylim(-0.05, 1.05)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=8, ncol=2)
    ax.set_title(title or "Each stakeholder's utility during training")
    fig.tight_layout()
    return fig


def stakeholder_curve_panels(curves: "Mapping[str, pandas.DataFrame]") -> "Figure":
    """:func:`stakeholder_curves` side by side, one panel per entry (the title -> its curves), one y axis.

    E.g. the MaxMin and the average run of chapter 7, each as
    :func:`moralkit.pluralistic.llm_stakeholder_curves` of its log.
    """
    if not curves:
        raise ValueError("stakeholder_curve_panels needs at least one entry (a title and its curves)")
    fig, axes = plt.subplots(1, len(curves), figsize=(6.5 * len(curves), 3.6), sharey=True, squeeze=False)
    for ax, (title, frame) in zip(axes[0], curves.items()):
        stakeholder_curves(frame, ax=ax, title=title)
    fig.tight_layout()
    return fig


def maxmin_weight_curves(weights: "pandas.DataFrame", log: "pandas.DataFrame | None" = None, *,
                         title: str | None = None) -> "Figure":
    """Who a MaxMin reward served, state by state: its weights λ per update, stacked (they sum to 1).

    ``weights``: :func:`moralkit.pluralistic.llm_maxmin_weights`. With the run's ``log``
    (``rounds.csv``), a black line adds the learner's P(C) among its legal answers in each state
    and update: where all the weight sits on one stakeholder and P(C) does not move, the reward
    asks for a change that the policy no longer samples.
    """
    import pandas as pd

    states = list(pd.unique(weights["state"]))
    names = list(pd.unique(weights["stakeholder"]))
    fig, axes = _new_axes(len(states), ncols=len(states), size=(3.3, 3.0), sharey=True)
    for ax, state in zip(axes, states):
        table = weights[weights["state"] == state].pivot(index="episode", columns="stakeholder", values="weight")[names]
        ax.stackplot(table.index, table.to_numpy().T, colors=[STAKEHOLDER_COLOURS[k % len(STAKEHOLDER_COLOURS)]
                                                               for k in range(len(names))],
                     labels=[f"weight: {pretty_name(n)}" for n in names], alpha=0.75, step="post")
        if log is not None:
            legal = log[log["my_move"].isin(["C", "D"]) & (log["my_prev"] + "|" + log["opp_prev"] == state)]
            p = (legal["my_move"] == "C").groupby(legal["episode"]).mean()
            ax.plot(p.index + 0.5, p.to_numpy(), "o-", color="black", ms=2.5, lw=1.2, label="learner's P(C)")
        ax.set_title(f"state {state}", fontsize=9)
        ax.set_xlabel("update (episode)")
        ax.set_ylim(0, 1.02)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("weight λ (stacked)" + (" · P(C)" if log is not None else ""))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), frameon=False, fontsize=8)
    fig.suptitle(title or "The MaxMin reward's weights per state (my last|their last), update by update")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


__all__ += ["STAKEHOLDER_COLOURS", "RULE_COLOURS", "stakeholder_utility_lines", "rule_comparison", "group_utility_bars",
            "learned_vs_true_rewards", "maxmin_training_curves", "stakeholder_curves",
            "maxmin_weight_curves"]


# ---------------------------------------------------------------------------------------------
# Chapter 5: unlearning; chapter 6: the trap and unrelated prompts
# ---------------------------------------------------------------------------------------------


def unlearning_bars(table: "pandas.DataFrame", *, title: str | None = None) -> "Figure":
    """C|C and D|C before the reward switch and at the end, one panel per run.

    ``table`` is :func:`moralkit.analysis.unlearning_table` (columns ``agent``, ``CC_before``,
    ``CC_end``, ``DC_before``, ``DC_end``); when it has ``CC_end_low``/``CC_end_high`` (its
    ``expected=`` argument) a grey band over the "C|C end" bar shows the expected range.
    """
    if len(table) == 0:
        raise ValueError("unlearning_bars needs at least one run that switches rewards (an empty table was given).")
    fig, axes = _new_axes(len(table), size=(max(6.5 / len(table), 4.2), 3.6), sharey=True)
    bars = {("C|C", "CC_before"): "C|C\nbefore", ("C|C", "CC_end"): "C|C\nend",
            ("D|C", "DC_before"): "D|C\nbefore", ("D|C", "DC_end"): "D|C\nend"}
    for ax, (_, row) in zip(axes, table.iterrows()):
        values = [float(row[column]) for _, column in bars]
        for i, ((kind, column), value) in enumerate(zip(bars, values)):
            ax.bar(i, value, color=ACTION_TYPE_COLOURS[kind], alpha=0.45 if column.endswith("before") else 0.95,
                   edgecolor="white")
            ax.text(i, value + 0.02, f"{value:.2f}", ha="center", fontsize=9)
        if "CC_end_low" in row and not np.isnan(float(row["CC_end_low"])):
            low, high = float(row["CC_end_low"]), float(row["CC_end_high"])
            ax.add_patch(Rectangle((0.55, low - 0.01), 0.9, high - low + 0.02, color="#333333", alpha=0.18, lw=0))
            ax.text(1, high + 0.03, "expected", ha="center", va="bottom", fontsize=8.5, color="#333333")
        ax.set_xticks(range(4), list(bars.values()))
        ax.set_ylim(0, 1.05)
        ax.set_title(pretty_name(row["agent"]))
        ax.grid(axis="x", visible=False)
    axes[0].set_ylabel("share of training rounds")
    fig.suptitle(title or "Mutual cooperation (C|C) and exploitation (D|C):\n"
                 "the last 20% before the switch vs the last 20% of the run")
    fig.tight_layout()
    return fig


def first_action_bars(table: "pandas.DataFrame", *, title: str | None = None) -> "Figure":
    """Horizontal bars of P(first action | legal answer) per agent, one bar per game column.

    ``table``: one row per agent, one column per game (values in [0, 1], e.g. from
    :func:`moralkit.analysis.first_action_share`); at most the first two columns are drawn
    (grey, then red). The dotted line at 0.5 is indifference.
    """
    columns = list(table.columns[:2])
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(table) + 1.6))
    y = np.arange(len(table))
    for k, (column, colour) in enumerate(zip(columns, ("#999999", ACTION_TYPE_COLOURS["D|C"]))):
        ax.barh(y + (k - (len(columns) - 1) / 2) * 0.38, table[column].astype(float), height=0.36, color=colour,
                label=column)
    ax.axvline(0.5, color="black", lw=0.8, ls=":")
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("P(first action | legal answer), mean over the four states")
    ax.set_title(title or "The trap: in Defective Coordination the first action is the bad one")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=2, frameon=False)
    return fig


def unrelated_prompt_heatmaps(grids: "Mapping[str, pandas.DataFrame]") -> "Figure":
    """Two heatmaps side by side: ``grids["legal"]`` (P(a label)) and ``grids["P(D | legal)"]``.

    ``grids`` is :func:`moralkit.analysis.unrelated_prompt_grids`: rows are prompt levels (and the
    game itself), columns agents.
    """
    legal, defect = grids["legal"], grids["P(D | legal)"]
    fig, axes = plt.subplots(1, 2, figsize=(2 * (2.2 + 1.1 * legal.shape[1]) + 2.0, 3.8))
    sns.heatmap(legal.astype(float), ax=axes[0], vmin=0, vmax=1, cmap="Greys", annot=True, fmt=".2f", linewidths=1,
                linecolor="white", cbar_kws={"label": "P(a label)"})
    axes[0].set_title("P(answer is one of the labels)")
    axes[0].set_ylabel("")
    axes[0].set_xlabel("")
    axes[0].set_xticklabels(axes[0].get_xticklabels(), rotation=30, ha="right")
    policy_heatmap(defect.astype(float), ax=axes[1], title="P(D's label | a label)")
    axes[1].set_ylabel("")
    axes[1].set_yticklabels([])
    fig.tight_layout()
    return fig


__all__ += ["unlearning_bars", "first_action_bars", "unrelated_prompt_heatmaps"]
