"""Interactive front-ends (ipywidgets) for the notebooks.

* :func:`payoff_editor` — type the eight payoffs of a 2×2 game and watch its heatmap, its kind,
  its Nash equilibria and its Pareto-optimal cells update as you type.
* :func:`reward_explorer` — move the ξ slider (or pick another game) and watch the reward
  tables change.

Both return an ordinary ipywidgets container: display it as the last line of a cell. They draw
with matplotlib into PNG images (no pyplot state), so they also work headless: a test can build
one, change a value and read the result.
"""

from __future__ import annotations

import html
import io
from typing import Callable, Iterable

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from .exercises import dilemma_checklist
from .games import C, D, GAMES, MatrixGame, game_facts, get_game
from .plots import payoff_heatmap, reward_heatmaps
from .rewards import PAPER_REWARDS, Reward

__all__ = ["PayoffEditor", "payoff_editor", "RewardExplorer", "reward_explorer", "figure_png"]

CELLS: tuple[str, ...] = ("CC", "CD", "DC", "DD")
"""The four cells as (M's move)(O's move)."""
_IDX = {"C": C, "D": D}


def figure_png(draw: Callable[[Figure], None], *, figsize: tuple[float, float] = (3.6, 3.4), dpi: int = 100) -> bytes:
    """Draw into a fresh (pyplot-free) figure and return it as PNG bytes."""
    fig = Figure(figsize=figsize)
    draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _error_html(text: str) -> str:
    return f'<div style="color:#B00020;font-weight:bold">✗ {html.escape(text)}</div>'


def _facts_html(game: MatrixGame) -> str:
    facts = game_facts(game)
    checklist = "".join(
        f"<li>{'✓' if ok else '✗'} {html.escape(text)}</li>" for text, ok in dilemma_checklist(game)
    )
    verdict = "yes ✓" if facts["social dilemma"] else "no ✗"
    rows = [
        ("kind", facts["kind"]),
        ("social dilemma?", verdict),
        ("pure Nash equilibria", facts["pure Nash"]),
        ("all Nash equilibria (payoffs M, O)", facts["all Nash (payoffs M, O)"]),
        ("Pareto-optimal cells", facts["Pareto-optimal"]),
        ("best collective payoff", f"{facts['best collective']:g}"),
    ]
    table = "".join(
        f"<tr><td style='padding-right:1em'><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return (
        f"<table>{table}</table>"
        f"<div style='margin-top:0.4em'><b>Social-dilemma conditions</b> (M's payoffs: R = CC, S = CD, T = DC, P = DD):"
        f"<ul style='margin:0.2em 0'>{checklist}</ul></div>"
    )


class PayoffEditor(widgets.VBox):
    """Edit a 2×2 game's payoffs; the heatmap and the game's classification update live.

    Attributes useful in code (and tests): ``inputs[cell]`` is the pair of number boxes
    ``(M's payoff, O's payoff)`` for ``cell`` in ``"CC", "CD", "DC", "DD"``; ``game`` is the
    game currently shown (``None`` while the payoffs are invalid) and ``error`` the message
    shown instead.
    """

    def __init__(self, game: MatrixGame | str = "prisoners_dilemma", *, name: str = "my_game"):
        self.name = name
        self.game: MatrixGame | None = None
        self.error: str | None = None
        self.updates = 0
        self._loading = False
        start = get_game(game)

        self.preset = widgets.Dropdown(
            options=[(g.title, g.name) for g in GAMES.values()],
            value=start.name if start.name in GAMES else None,
            description="Start from:",
            style={"description_width": "initial"},
        )
        box = widgets.Layout(width="4.5em")
        self.inputs: dict[str, tuple[widgets.FloatText, widgets.FloatText]] = {
            cell: (
                widgets.FloatText(description="M", layout=box, style={"description_width": "1.2em"}),
                widgets.FloatText(description="O", layout=box, style={"description_width": "1.2em"}),
            )
            for cell in CELLS
        }
        header = [widgets.HTML("")] + [widgets.HTML(f"<b>O plays {a}</b>") for a in ("C", "D")]
        grid_rows = []
        for my in ("C", "D"):
            grid_rows.append(widgets.HTML(f"<b>M plays {my}</b>"))
            grid_rows += [widgets.HBox(list(self.inputs[my + opp])) for opp in ("C", "D")]
        self.grid = widgets.GridBox(
            header + grid_rows,
            layout=widgets.Layout(grid_template_columns="7em 11em 11em", align_items="center"),
        )
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="300px"))
        self.message = widgets.HTML("")
        self.facts = widgets.HTML("")
        help_text = widgets.HTML(
            "<i>Type the payoffs (M's, then O's) of each cell; the picture and the facts below update as you type.</i>"
        )
        super().__init__(
            [self.preset, help_text, widgets.HBox([self.grid, self.image]), self.message, self.facts]
        )
        for pair in self.inputs.values():
            for w in pair:
                w.observe(self._on_change, names="value")
        self.preset.observe(self._on_preset, names="value")
        self.set_game(start)

    # ------------------------------------------------------------------ public
    @property
    def payoffs(self) -> np.ndarray:
        """The eight numbers in the boxes as a ``(2, 2, 2)`` array ``[a_M, a_O, player]``."""
        out = np.empty((2, 2, 2))
        for cell, (m, o) in self.inputs.items():
            out[_IDX[cell[0]], _IDX[cell[1]]] = (m.value, o.value)
        return out

    def set_game(self, game: MatrixGame | str) -> None:
        """Fill the boxes with a game's payoffs (one redraw, not eight)."""
        game = get_game(game)
        self._loading = True
        try:
            for cell, (m, o) in self.inputs.items():
                m.value, o.value = (float(x) for x in game.payoffs[_IDX[cell[0]], _IDX[cell[1]]])
        finally:
            self._loading = False
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the game from the boxes and redraw (called on every change)."""
        self.updates += 1
        not_numbers = [
            f"{who}'s payoff in cell ({cell[0]}, {cell[1]})"
            for cell, pair in self.inputs.items()
            for who, box in zip(("M", "O"), pair)
            if not np.isfinite(box.value)
        ]
        if not_numbers:
            self.game, self.error = None, "Not a finite number: " + ", ".join(not_numbers) + "."
            self.message.value = _error_html(self.error + " Type an ordinary number there (e.g. 2 or -1.5).")
            self.facts.value = ""
            return
        try:
            game = MatrixGame(self.name, self.payoffs, title="Your game")
            facts = _facts_html(game)
            png = figure_png(lambda fig: payoff_heatmap(game, ax=fig.subplots()).axes[0].set_xlabel(game.kind_caption()))
        except Exception as exc:  # noqa: BLE001 - show the reason, never a traceback
            self.game, self.error = None, str(exc)
            self.message.value = _error_html(f"These payoffs do not make a valid game: {exc}")
            self.facts.value = ""
            return
        self.game, self.error = game, None
        self.message.value = ""
        self.facts.value = facts
        self.image.value = png

    # ------------------------------------------------------------------ callbacks
    def _on_change(self, change) -> None:
        if not self._loading:
            self.refresh()

    def _on_preset(self, change) -> None:
        if change["new"]:
            self.set_game(change["new"])


def payoff_editor(game: MatrixGame | str = "prisoners_dilemma", *, name: str = "my_game") -> PayoffEditor:
    """An editor for the eight payoffs of a 2×2 game, starting from ``game``.

    As you type, it redraws the payoff heatmap and re-classifies the game: its kind
    (``MatrixGame.classify()``), whether it is a social dilemma (with each condition ✓/✗),
    its Nash equilibria (pure and mixed) and its Pareto-optimal cells. Invalid payoffs show a
    message instead of a traceback. ``editor.game`` is the game you made (use it in code).
    """
    return PayoffEditor(game, name=name)


class RewardExplorer(widgets.VBox):
    """Reward tables of several rewards on one game, with a ξ slider and a game picker."""

    def __init__(
        self,
        rewards: Iterable[str | Reward] = PAPER_REWARDS,
        game: MatrixGame | str = "prisoners_dilemma",
        xi: float = 3.0,
    ):
        self.rewards = list(rewards)
        start = get_game(game)
        self.updates = 0
        self.xi = widgets.FloatSlider(
            value=float(xi), min=0.0, max=10.0, step=0.5, description="ξ (penalty):",
            style={"description_width": "initial"}, continuous_update=False,
        )
        self.game = widgets.Dropdown(
            options=[(g.title, g.name) for g in GAMES.values()],
            value=start.name if start.name in GAMES else None,
            description="Game:",
        )
        self.image = widgets.Image(format="png")
        self.message = widgets.HTML("")
        super().__init__([widgets.HBox([self.game, self.xi]), self.message, self.image])
        self._custom_game = None if start.name in GAMES else start
        self.xi.observe(lambda _: self.refresh(), names="value")
        self.game.observe(lambda _: self.refresh(), names="value")
        self.refresh()

    def refresh(self) -> None:
        """Redraw the reward tables for the chosen game and ξ."""
        self.updates += 1
        game = get_game(self.game.value) if self.game.value else self._custom_game
        n = len(self.rewards)
        try:
            png = figure_png(
                lambda fig: reward_heatmaps(self.rewards, game, xi=self.xi.value, axes=list(np.ravel(fig.subplots(1, n)))),
                figsize=(3.3 * n, 3.0),
            )
        except Exception as exc:  # noqa: BLE001
            self.message.value = _error_html(str(exc))
            return
        self.message.value = ""
        self.image.value = png


def reward_explorer(
    rewards: Iterable[str | Reward] = PAPER_REWARDS, game: MatrixGame | str = "prisoners_dilemma", xi: float = 3.0
) -> RewardExplorer:
    """Reward tables side by side with a ξ slider: see how the norm-violation penalty changes them."""
    return RewardExplorer(rewards, game, xi)
