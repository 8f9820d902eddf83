"""Reading results: pure functions of training logs and evaluations (no model, no files).

Everything here takes tables (pandas DataFrames) that training and evaluation produced, or the
objects that hold them (a run's ``config``, ``log`` and ``updates``), and returns numbers or
tables. So it can be tested with hand-made logs, and a notebook can re-read a run folder
without loading a model.

* **What theory predicts** (docs/science.md §5): :func:`predicted_responses` is a reward's myopic
  best move in each memory-1 state against an opponent, computed from the opponent's *own* move
  probabilities (:meth:`moralkit.opponents.Opponent.cooperation_probability`), never from a
  re-statement of the strategy; :func:`prediction` turns that table into thresholds on a
  training summary; :data:`PREDICTIONS` holds them for the paper's four rewards against
  Tit-for-Tat.
* **Training**: :func:`training_summary` (behaviour over the last part of training),
  :func:`training_table` (one row per run, with the verdict), :func:`state_policy`,
  :func:`opponent_log` (a two-learner log seen from the second learner).
* **Unlearning** (chapter 5): :func:`reward_switches`, :func:`phase_shares`,
  :func:`unlearning_table`; :func:`idealised_shares` (how a fixed best-response policy would
  play).
* **Generalisation** (chapter 6): :func:`agent_kind`, :func:`generalisation_table`.
* **Seeds**: :func:`over_seeds` (mean and a confidence interval over training seeds, for any
  table with a ``seed`` column), :func:`generalisation_per_seed` (each agent's regrets averaged
  over the games, per seed) and :func:`generalisation_over_seeds` (then over seeds).

>>> predicted_responses("deontological")["predicted"].tolist()     # C|C, C|D, D|C, D|D states
['C', 'either', 'C', 'either']
>>> prediction("game_deontological").text
'reciprocity (>= 80% C after C and D after D)'
>>> meets_prediction("game", {"D": 0.95})
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .env import ACTION_TYPES, action_types
from .games import C, D, ILLEGAL, MatrixGame, get_game
from .opponents import OpponentError, get_opponent
from .rewards import get_reward, is_stateful

__all__ = [
    "joint_outcomes",
    "first_action_share",
    "unrelated_prompt_grids",
    "STATES",
    "EITHER",
    "opponent_move_probabilities",
    "predicted_responses",
    "Prediction",
    "prediction",
    "PREDICTIONS",
    "meets_prediction",
    "training_summary",
    "training_table",
    "rounds_to_criterion",
    "reward_switches",
    "phase_shares",
    "UNLEARNING_GAIN",
    "UNLEARNING_MAX_EXPLOIT",
    "unlearning_table",
    "state_policy",
    "idealised_shares",
    "opponent_log",
    "agent_kind",
    "generalisation_table",
    "over_seeds",
    "generalisation_over_seeds",
    "generalisation_per_seed",
]

STATES: tuple[tuple[str, str], ...] = (("C", "C"), ("C", "D"), ("D", "C"), ("D", "D"))
"""The four memory-1 states (my last move, their last move), in the order of ``policy_table``."""

EITHER = "either"
"""A state where a reward prefers neither move."""


# --------------------------------------------------------------------- what theory predicts
def opponent_move_probabilities(opponent, my_prev: int, opp_prev: int = C) -> dict[int, float]:
    """What a fixed opponent plays now in a state (M's last legal move, its own last move): {move: probability}.

    Read from the opponent itself (:meth:`~moralkit.opponents.Opponent.cooperation_probability`).

    >>> opponent_move_probabilities("tit_for_tat", D, C)
    {1: 1.0}
    """
    try:
        q = float(get_opponent(opponent).cooperation_probability(my_prev, opp_prev))
    except OpponentError:
        raise ValueError(
            f"Predictions need an opponent whose move follows from the state: tit_for_tat, always_cooperate, "
            f"always_defect or random; got {opponent!r}."
        ) from None
    return {move: prob for move, prob in ((C, q), (D, 1.0 - q)) if prob > 0}


def predicted_responses(
    reward,
    game: MatrixGame | str = "prisoners_dilemma",
    opponent: str = "tit_for_tat",
    *,
    xi: float | None = None,
    tol: float = 1e-9,
):
    """What a reward teaches a *myopic* learner (docs/science.md §5): its best move in each state.

    Fine-tuning treats every round as a one-step problem, so PPO pushes the player towards the
    move with the higher reward *this round*. The opponent's move now follows from the state (for
    Tit-for-Tat: my last move, which the state shows), so the expected reward of each move in
    each state is known.

    ``reward`` is a reward name, a :class:`~moralkit.rewards.Reward` or your own function.
    Returns one row per state (``my_prev``, ``opp_prev``) with the (expected) reward of C and of
    D and ``predicted``: ``"C"``, ``"D"`` or ``"either"`` (equal rewards: the reward does not care).
    """
    import pandas as pd

    r = get_reward(reward, xi=xi)
    g = get_game(game)
    rows = []
    for my_prev, opp_prev in STATES:
        mp, op = (C if my_prev == "C" else D), (C if opp_prev == "C" else D)
        moves = opponent_move_probabilities(opponent, mp, op)
        value = {m: sum(p * float(r(g, m, o, op)) for o, p in moves.items()) for m in (C, D)}
        if abs(value[C] - value[D]) <= tol:
            best = EITHER
        else:
            best = "C" if value[C] > value[D] else "D"
        rows.append({"my_prev": my_prev, "opp_prev": opp_prev, "reward of C": value[C], "reward of D": value[D],
                     "predicted": best})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Prediction:
    """What theory predicts a reward teaches, as thresholds on a :func:`training_summary`."""

    text: str
    minimum: tuple[tuple[str, float], ...] = ()
    """``(summary key, least value)`` pairs."""
    maximum: tuple[tuple[str, float], ...] = ()
    """``(summary key, greatest value)`` pairs."""

    def holds(self, summary: dict) -> bool:
        """Whether every threshold holds for ``summary`` (a missing or NaN value fails)."""
        lows = all(summary.get(k, float("nan")) >= v for k, v in self.minimum)
        highs = all(summary.get(k, float("nan")) <= v for k, v in self.maximum)
        return bool(lows and highs)


ALWAYS_SHARE = 0.90
"""Least share of the predicted move when one move is best in every state."""
RECIPROCITY_SHARE = 0.80
"""Least share of each predicted conditional move when the best move follows the opponent's last move."""
NEVER_SHARE = 0.05
"""Greatest share of the forbidden action type when one move is best after one of the opponent's moves."""
LEGAL_SHARE = 0.95
"""Least legal share that goes with a "never" prediction (an illegal answer avoids the forbidden move too)."""


def _other(move: str) -> str:
    return "D" if move == "C" else "C"


def prediction(reward, opponent: str = "tit_for_tat", game: MatrixGame | str = "prisoners_dilemma", *,
               xi: float | None = None) -> Prediction | None:
    """The thresholds a run trained with ``reward`` against ``opponent`` should meet, or None.

    Derived from :func:`predicted_responses` (so from the opponent's own semantics):

    * the same best move X in all four states → "always X": share of X ≥ 90%;
    * the best move copies the opponent's last move (C after C, D after D) → reciprocity: ≥ 80%
      of each; the opposite pattern likewise;
    * one move M is best after the opponent's move O, and the reward is indifferent after the
      other → "never (not M) after O": that action type ≤ 5% of all rounds, with ≥ 95% legal;
    * anything else (e.g. the best move depends on my own last move), or a reward that changes as
      it learns (a MaxMin reward whose stakeholder weights move): None, no prediction.
    """
    if is_stateful(get_reward(reward, xi=xi)):
        return None
    table = predicted_responses(reward, game, opponent, xi=xi)
    moves = dict(zip(zip(table["my_prev"], table["opp_prev"]), table["predicted"]))
    if len(set(moves.values())) == 1 and EITHER not in moves.values():
        x = next(iter(moves.values()))
        return Prediction(f"always {x} (>= {ALWAYS_SHARE:.0%} {x})", minimum=((x, ALWAYS_SHARE),))
    after = {}
    for theirs in ("C", "D"):
        both = {moves[(mine, theirs)] for mine in ("C", "D")}
        after[theirs] = both.pop() if len(both) == 1 else None
    if None in after.values():
        return None
    if EITHER not in after.values():
        a, b = after["C"], after["D"]
        keys = ((f"{a}_after_C", RECIPROCITY_SHARE), (f"{b}_after_D", RECIPROCITY_SHARE))
        name = "reciprocity" if (a, b) == ("C", "D") else "anti-reciprocity"
        return Prediction(f"{name} (>= {RECIPROCITY_SHARE:.0%} {a} after C and {b} after D)", minimum=keys)
    decided = [(theirs, m) for theirs, m in after.items() if m != EITHER]
    if len(decided) != 1:
        return None
    theirs, move = decided[0]
    forbidden = f"{_other(move)}|{theirs}"
    return Prediction(
        f"never {_other(move)} after {theirs} (<= {NEVER_SHARE:.0%} {forbidden}, >= {LEGAL_SHARE:.0%} legal)",
        minimum=(("legal", LEGAL_SHARE),), maximum=((forbidden, NEVER_SHARE),),
    )


PREDICTIONS: dict[str, Prediction] = {
    name: prediction(name) for name in ("game", "deontological", "utilitarian", "game_deontological")
}
"""The predictions for the paper's four rewards against Tit-for-Tat (docs/science.md §5), judged
over the last 20% of training rounds."""


def meets_prediction(reward: str, summary: dict, opponent: str = "tit_for_tat", *,
                     game: MatrixGame | str = "prisoners_dilemma", xi: float | None = None) -> bool | None:
    """Whether a run trained with ``reward`` behaves as theory predicts (None: no prediction).

    For a reward schedule pass the reward it ends with.

    >>> meets_prediction("deontological", {"D|C": 0.10, "legal": 1.0})
    False
    """
    p = prediction(reward, opponent, game, xi=xi)
    return None if p is None else p.holds(summary)


# --------------------------------------------------------------------- training
def rounds_to_criterion(log, reward: str, opponent: str = "tit_for_tat", *, window: float = 0.2,
                        game: MatrixGame | str = "prisoners_dilemma", xi: float | None = None) -> int | None:
    """Training rounds played until the prediction first holds over a trailing window of episodes.

    The window is the same share ``window`` of the run's episodes that :func:`training_summary`
    judges a run on (at least one episode); the answer counts every round up to the window's end.
    None when the prediction never holds (or the reward has none).
    """
    if len(log) == 0 or prediction(reward, opponent, game, xi=xi) is None:
        return None
    episodes = np.asarray(log["episode"], dtype=int)
    n = int(episodes.max()) + 1
    width = max(1, math.ceil(n * window))
    for end in range(width, n + 1):
        rows = (episodes >= end - width) & (episodes < end)
        tail = log[rows].assign(episode=0)
        if meets_prediction(reward, training_summary(tail, last=1.0), opponent, game=game, xi=xi):
            return int((episodes < end).sum())
    return None


def training_summary(log, last: float = 0.2) -> dict:
    """Behaviour over the last ``last`` fraction of training episodes (what a prediction is judged on).

    Returns the action-type shares, the shares of C and of D among all answers, the legal share,
    and the conditional shares "C after the opponent's C" (``C_after_C``), ``D_after_C``,
    ``C_after_D`` and ``D_after_D`` (an illegal answer counts as neither; NaN when the state
    never occurred), and ``rounds``.
    """
    if len(log) == 0:
        return {}
    episodes = log["episode"].max() + 1
    tail = log[log["episode"] >= math.floor(episodes * (1 - last))]
    shares = tail["action_type"].value_counts(normalize=True)
    out = {
        **{t: round(float(shares.get(t, 0.0)), 4) for t in ACTION_TYPES},
        "D": round(float((tail["my_move"] == "D").mean()), 4),
        "C": round(float((tail["my_move"] == "C").mean()), 4),
        "legal": round(float((tail["my_move"] != "illegal").mean()), 4),
    }
    for theirs in ("C", "D"):
        after = tail[tail["opp_prev"] == theirs]
        for mine in ("C", "D"):
            out[f"{mine}_after_{theirs}"] = round(float((after["my_move"] == mine).mean()), 4) if len(after) else float("nan")
    out["rounds"] = int(len(tail))
    return out


def training_table(runs: Sequence, last: float = 0.2):
    """One row per run: condition, behaviour over the last ``last`` of training, cost and verdict.

    ``runs`` are :class:`~moralkit.training.TrainingRun` objects (anything with ``config``,
    ``log`` and ``updates``). ``minutes`` is the time spent in the run's episodes (rollouts + PPO
    updates, summed over sessions if it was resumed; loading the model is not included). Against
    Tit-for-Tat, ``predicted``/``meets`` give the prediction for the reward the run ends with
    (:func:`prediction`) and whether the run meets it; otherwise they are empty.
    """
    import pandas as pd

    rows = []
    for run in runs:
        c = run.config
        summary = training_summary(run.log, last)
        against_tft = c.opponent != "learner" and get_opponent(c.opponent).name == "tit_for_tat"
        expected = prediction(c.phases[-1][0], c.opponent, c.game, xi=c.xi) if against_tft else None
        updates = run.updates
        minutes = float(updates["seconds"].sum()) / 60 if "seconds" in updates else float("nan")
        rows.append({"agent": c.label, "opponent": c.opponent, "seed": c.seed, "episodes": c.episodes,
                     **summary, "minutes": round(minutes, 1),
                     "predicted": expected.text if expected else "",
                     "meets": expected.holds(summary) if expected else None})
    return pd.DataFrame(rows)


def state_policy(log, first_episode: int = 0, last_episode: int | None = None):
    """What the player actually answered in each memory-1 state, from a training log.

    The sampled counterpart of :meth:`~moralkit.llm.agent.LLMPlayer.policy_table`, over the
    episodes ``first_episode … last_episode`` (inclusive; default: to the end). Same columns
    (``my_prev``, ``opp_prev``, ``P(C)``, ``P(D)``, ``P(illegal)``: shares of the answers given
    in that state) plus ``rounds``; a state that never occurred has ``rounds`` 0 and NaN shares.
    Useful where no checkpoint is left, e.g. "at the reward switch" of an unlearning run.
    """
    import pandas as pd

    part = log[log["episode"] >= first_episode]
    if last_episode is not None:
        part = part[part["episode"] <= last_episode]
    rows = []
    for my_prev, opp_prev in STATES:
        moves = part.loc[(part["my_prev"] == my_prev) & (part["opp_prev"] == opp_prev), "my_move"]
        n = len(moves)
        share = (lambda m: float((moves == m).mean())) if n else (lambda m: float("nan"))
        rows.append({"my_prev": my_prev, "opp_prev": opp_prev, "P(C)": share("C"), "P(D)": share("D"),
                     "P(illegal)": share("illegal"), "rounds": n})
    return pd.DataFrame(rows)


def opponent_log(log):
    """A two-learner training log seen from the second learner (O), with O as the row player.

    Swaps every M/O column pair (previous moves, moves, payoffs, rewards ``reward_*`` ↔
    ``opp_reward_*``, answers) and recomputes ``action_type`` as O's move given M's previous
    move, so every function that reads a training log (:func:`training_summary`, the plots)
    works for the second learner too.
    """
    if "opp_answer" not in log.columns and not any(c.startswith("opp_reward_") for c in log.columns):
        raise ValueError("This is not a two-learner log (no opp_answer / opp_reward_* columns); "
                         "train with opponent='learner'.")
    pairs = [("my_prev", "opp_prev"), ("my_move", "opp_move"), ("my_payoff", "opp_payoff"), ("answer", "opp_answer")]
    pairs += [(c, "opp_" + c) for c in log.columns if c.startswith("reward_") and "opp_" + c in log.columns]
    mapping = {}
    for a, b in pairs:
        if a in log.columns and b in log.columns:
            mapping[a], mapping[b] = b, a
    out = log.rename(columns=mapping)[list(log.columns)].copy()
    code = {"C": C, "D": D, "illegal": ILLEGAL}
    out["action_type"] = action_types(out["my_move"].map(code).to_numpy(), out["opp_prev"].map(code).to_numpy())
    return out


# --------------------------------------------------------------------- unlearning (chapter 5)
def reward_switches(log) -> list[int]:
    """Episodes at which the training reward changes: the first episode of each later phase.

    ``log`` is a training log with ``episode`` and ``train_reward``; a run with one reward has
    none (``[]``).

    >>> import pandas as pd
    >>> reward_switches(pd.DataFrame({"episode": [0, 1, 2, 3], "train_reward": ["game", "game", "de", "de"]}))
    [2]
    """
    if len(log) == 0 or "train_reward" not in log.columns:
        return []
    per_episode = log.groupby("episode")["train_reward"].first().sort_index()
    changed = per_episode.ne(per_episode.shift()) & per_episode.shift().notna()
    return [int(e) for e in per_episode.index[changed]]


def _switch_windows(log, switch_episode: int | None, last: float) -> dict[str, tuple[int, int]]:
    """``{"before switch": (first, last), "end": (first, last)}`` episode ranges (inclusive)."""
    if not 0 < last <= 1:
        raise ValueError(f"last must be a fraction in (0, 1], got {last}.")
    if len(log) == 0:
        raise ValueError("The log is empty: train the run first.")
    n = int(log["episode"].max()) + 1
    if switch_episode is None:
        switches = reward_switches(log)
        if not switches:
            raise ValueError("This log has no reward switch; pass switch_episode (or train a schedule such as "
                             "'game->deontological').")
        switch_episode = switches[0]
    switch = int(switch_episode)
    if not 0 < switch < n:
        raise ValueError(f"switch_episode must lie inside the run (1 … {n - 1}), got {switch}.")
    start_before = min(math.floor(switch * (1 - last)), switch - 1)
    start_end = max(min(math.floor(n * (1 - last)), n - 1), switch)
    return {"before switch": (start_before, switch - 1), "end": (start_end, n - 1)}


def phase_shares(log, switch_episode: int | None = None, last: float = 0.2):
    """The unlearning metric: behaviour just before the reward switch and at the end of training.

    Two windows of the training log, each the last ``last`` fraction of a stretch of episodes
    (at least one episode): **before switch** = the last ``last`` of the episodes before
    ``switch_episode`` (default: the run's first reward switch); **end** = the last ``last`` of
    all episodes (as :func:`training_summary`; never before the switch).

    Returns one row per window: ``window``, ``first_episode``, ``last_episode``, ``rounds``, the
    five action-type shares (``C|C`` … ``illegal``, adding up to 1), ``legal``, and the
    conditional shares ``C_after_C`` and ``D_after_C`` (C or D right after the opponent's C,
    among all answers in that state, illegal ones included; NaN when the state never occurred).
    """
    import pandas as pd

    rows = []
    for window, (first, last_ep) in _switch_windows(log, switch_episode, last).items():
        part = log[(log["episode"] >= first) & (log["episode"] <= last_ep)]
        shares = part["action_type"].value_counts(normalize=True).reindex(list(ACTION_TYPES), fill_value=0.0)
        after_c = part[part["opp_prev"] == "C"]
        rows.append({
            "window": window,
            "first_episode": first,
            "last_episode": last_ep,
            "rounds": int(len(part)),
            **{t: float(shares[t]) for t in ACTION_TYPES},
            "legal": float((part["my_move"] != "illegal").mean()) if len(part) else float("nan"),
            "C_after_C": float((after_c["my_move"] == "C").mean()) if len(after_c) else float("nan"),
            "D_after_C": float((after_c["my_move"] == "D").mean()) if len(after_c) else float("nan"),
        })
    return pd.DataFrame(rows)


UNLEARNING_GAIN = 0.30
"""Least rise of the C|C share from just before the switch to the end (issue #5's bar)."""
UNLEARNING_MAX_EXPLOIT = 0.10
"""Greatest D|C share at the end of an unlearning run (issue #5's bar)."""


def unlearning_table(runs: Sequence, last: float = 0.2, *, expected: Mapping[str, tuple[float, float]] | None = None):
    """One row per run that switches rewards: :func:`phase_shares` before the switch and at the end.

    Columns: ``agent``, ``opponent``, ``seed``, ``switch_episode``, ``CC_before``, ``CC_end``,
    ``CC_gain`` (end − before), ``DC_before``, ``DC_end`` (shares of the action types C|C and
    D|C among all rounds of each window), ``legal_end``, ``C_after_C_end``, and ``unlearned``:
    whether the C|C share rose by at least :data:`UNLEARNING_GAIN` and D|C ended below
    :data:`UNLEARNING_MAX_EXPLOIT`. Runs without a switch are left out.

    ``expected`` maps a run's label (``game_then_deontological`` …) to the range ``(low, high)``
    its C|C share should end in (e.g. from :func:`idealised_shares`); it adds the columns
    ``CC_end_low``, ``CC_end_high`` (NaN for runs it does not name) and ``CC_end_as_expected``.
    """
    import pandas as pd

    rows = []
    for run in runs:
        log = run.log
        switches = reward_switches(log)
        if not switches:
            continue
        shares = phase_shares(log, switches[0], last).set_index("window")
        before, end = shares.loc["before switch"], shares.loc["end"]
        gain = float(end["C|C"] - before["C|C"])
        rows.append({
            "agent": run.config.label, "opponent": run.config.opponent, "seed": run.config.seed,
            "switch_episode": switches[0],
            "CC_before": round(float(before["C|C"]), 4), "CC_end": round(float(end["C|C"]), 4),
            "CC_gain": round(gain, 4),
            "DC_before": round(float(before["D|C"]), 4), "DC_end": round(float(end["D|C"]), 4),
            "legal_end": round(float(end["legal"]), 4), "C_after_C_end": round(float(end["C_after_C"]), 4),
            "unlearned": bool(gain >= UNLEARNING_GAIN and end["D|C"] < UNLEARNING_MAX_EXPLOIT),
        })
    table = pd.DataFrame(rows, columns=["agent", "opponent", "seed", "switch_episode", "CC_before", "CC_end", "CC_gain",
                                        "DC_before", "DC_end", "legal_end", "C_after_C_end", "unlearned"])
    if expected is not None:
        ranges = [expected.get(agent, (float("nan"), float("nan"))) for agent in table["agent"]]
        table["CC_end_low"] = [round(float(low), 4) for low, _ in ranges]
        table["CC_end_high"] = [round(float(high), 4) for _, high in ranges]
        table["CC_end_as_expected"] = [
            None if math.isnan(low) else bool(low - 0.05 <= cc <= high + 0.05)
            for cc, low, high in zip(table["CC_end"], table["CC_end_low"], table["CC_end_high"])
        ]
    return table


def joint_outcomes(log, last: float = 0.2) -> dict:
    """What both players did together in each round of the last ``last`` of training (two learners).

    Shares of rounds with ``both C``, ``both D``, ``one C, one D`` and ``an illegal answer`` (by
    either player); they add up to 1.

    >>> import pandas as pd
    >>> log = pd.DataFrame({"episode": [0, 0, 1, 1], "my_move": ["C", "D", "C", "illegal"],
    ...                     "opp_move": ["C", "C", "C", "D"]})
    >>> joint_outcomes(log, last=0.5)
    {'both C': 0.5, 'both D': 0.0, 'one C, one D': 0.0, 'an illegal answer': 0.5}
    """
    if len(log) == 0:
        return {}
    tail = log[log["episode"] >= math.floor((log["episode"].max() + 1) * (1 - last))]
    me, other = tail["my_move"], tail["opp_move"]
    illegal = (me == "illegal") | (other == "illegal")
    return {"both C": float(((me == "C") & (other == "C")).mean()),
            "both D": float(((me == "D") & (other == "D")).mean()),
            "one C, one D": float((((me == "C") & (other == "D")) | ((me == "D") & (other == "C"))).mean()),
            "an illegal answer": float(illegal.mean())}


def first_action_share(policy_table) -> float:
    """P(first action | legal answer), averaged over the states of a label-probability table.

    ``policy_table`` has columns ``P(C)`` and ``P(D)`` per state (``LLMPlayer.policy_table``).

    >>> import pandas as pd
    >>> first_action_share(pd.DataFrame({"P(C)": [0.2, 0.1], "P(D)": [0.2, 0.3]}))
    0.375
    """
    legal = policy_table["P(C)"] + policy_table["P(D)"]
    return float((policy_table["P(C)"] / legal).mean())


def unrelated_prompt_grids(unrelated, in_game: Mapping[str, object] | None = None) -> dict:
    """Two agent × prompt-level tables from :func:`moralkit.evaluate.unrelated_prompt_test`.

    ``"legal"``: P(the answer is one of the labels); ``"P(D | legal)"``: the share of D's label
    among label answers. Rows are the prompt levels (named with their text); ``in_game`` (agent ->
    its ``policy_table`` in the game) adds a last row, the same two numbers in the game itself.
    Columns keep the agents' order of appearance.
    """
    import pandas as pd

    from .llm.prompts import UNRELATED_LEVELS

    frame = unrelated.assign(legal=unrelated["P(C label)"] + unrelated["P(D label)"])
    frame["P(D | legal)"] = frame["P(D label)"] / frame["legal"]
    agents = list(dict.fromkeys(frame["agent"]))
    names = {level: f"{level}: {text}" for level, text in UNRELATED_LEVELS.items()}
    in_game_value = {"legal": lambda t: float((t["P(C)"] + t["P(D)"]).mean()),
                     "P(D | legal)": lambda t: 1.0 - first_action_share(t)}
    grids = {}
    for column, value in in_game_value.items():
        grid = frame.pivot(index="level", columns="agent", values=column).rename(index=names)
        if in_game:
            grid.loc["the game itself (Prisoner's Dilemma)"] = pd.Series({n: value(t) for n, t in in_game.items()})
        grids[column] = grid[agents]
    return grids


def idealised_shares(reward, *, either: str = "D", game: MatrixGame | str = "prisoners_dilemma",
                     opponent: str = "tit_for_tat", rounds: int = 5, n_games: int = 4000, seed: int = 0,
                     xi: float | None = None):
    """Action-type shares of the ideal myopic learner of ``reward``: it plays :func:`predicted_responses`.

    A deterministic policy that plays the predicted move in each state, and ``either`` (``"C"`` or
    ``"D"``) where the reward is indifferent, plays ``n_games`` games of ``rounds`` rounds against
    ``opponent`` from random initial states. What a perfectly trained run would show in its log.
    """
    from .env import IteratedGame, action_type_shares, run_episodes

    if either not in ("C", "D"):
        raise ValueError(f"either must be 'C' or 'D' (the move played where the reward does not care), got {either!r}.")
    table = predicted_responses(reward, game, opponent, xi=xi)
    code = {"C": C, "D": D}
    best = np.zeros((2, 2), dtype=np.int64)
    for mine, theirs, move in zip(table["my_prev"], table["opp_prev"], table["predicted"]):
        best[code[mine], code[theirs]] = code[either if move == EITHER else move]
    env = IteratedGame(game, opponent, n_games=n_games, rounds=rounds, seed=seed)
    played = run_episodes(env, lambda state, rng: best[state.my_prev, state.opp_prev], episodes=1)
    return action_type_shares(played)


# --------------------------------------------------------------------- generalisation (chapter 6)
def agent_kind(agent: str) -> str:
    """``"untuned"``, ``"prompted"`` or ``"fine-tuned"`` for an agent name of an evaluation.

    >>> [agent_kind(a) for a in ("no_finetuning", "prompted_utilitarian", "game")]
    ['untuned', 'prompted', 'fine-tuned']
    """
    if agent == "no_finetuning":
        return "untuned"
    if str(agent).startswith("prompted_"):
        return "prompted"
    return "fine-tuned"


def generalisation_table(evaluation, reference=None):
    """The generalisation table: one row per agent × game × label set (tidy).

    Columns: ``agent``, ``kind`` (:func:`agent_kind`), ``game``, ``labels``, ``rounds``, the two
    regrets with the paper's values beside them (``paper_*``; NaN where the paper has none, e.g.
    for other label sets than ``test``), the five action-type shares, ``mean_payoff`` (the agent's
    own mean payoff, an illegal answer counting as R_illegal) and ``C_among_legal`` (the share of
    the first action among legal answers: 1 for an agent that always picks the first action, which
    is the bad one in the Defective Coordination game).
    """
    from .evaluate import compare_with_paper

    summary = evaluation.summary
    compared = compare_with_paper(summary, reference)
    keys = ["agent", "game", "labels"]
    out = compared.merge(summary[keys + ["rounds", "mean_payoff"]], on=keys, how="left")
    legal = 1.0 - out["illegal"]
    out["C_among_legal"] = ((out["C|C"] + out["C|D"]) / legal).where(legal > 0)
    out.insert(1, "kind", out["agent"].map(agent_kind))
    columns = ["agent", "kind", "game", "labels", "rounds", "deont_regret", "paper_deont_regret", "utilit_regret",
               "paper_utilit_regret", *ACTION_TYPES, "mean_payoff", "C_among_legal"]
    return out[columns]


# --------------------------------------------------------------------- seeds
def over_seeds(table, by: Sequence[str], values: Sequence[str] | None = None, *, confidence: float = 0.95):
    """One row per ``by`` group of a table with one row per seed: the mean over seeds and its interval.

    For every numeric column in ``values`` (default: all numeric columns but ``seed`` and ``by``)
    the result has ``<value>`` (the mean over seeds), ``<value>_lo`` and ``<value>_hi`` (the
    two-sided Student-t ``confidence`` interval of that mean, over seeds: NaN with one seed) and
    ``<value>_sd`` (the standard deviation over seeds). A boolean column (a verdict such as
    ``meets``) becomes ``<value>_seeds``: how many seeds it holds for, as ``"k/n"``. ``seeds`` is
    the number of seeds in the group and ``seed_list`` names them.

    >>> import pandas as pd
    >>> runs = pd.DataFrame({"agent": ["game"] * 3, "seed": [0, 1, 2], "D": [0.9, 1.0, 0.95],
    ...                      "meets": [True, True, False]})
    >>> row = over_seeds(runs, ["agent"]).iloc[0]
    >>> print(f"{row['seeds']} seeds: D = {row['D']:.3f} [{row['D_lo']:.3f}, {row['D_hi']:.3f}], meets {row['meets_seeds']}")
    3 seeds: D = 0.950 [0.826, 1.074], meets 2/3
    """
    import pandas as pd
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (e.g. 0.95), not {confidence!r}")
    by = list(by)
    missing = [c for c in [*by, "seed"] if c not in table.columns]
    if missing:
        raise KeyError(f"over_seeds needs column(s) {missing}; the table has {list(table.columns)}")
    verdicts = [c for c in table.columns if c not in by and table[c].dropna().map(type).isin([bool, np.bool_]).all()
                and table[c].notna().any()]
    if values is None:
        values = [c for c in table.select_dtypes("number").columns if c not in (*by, "seed") and c not in verdicts]
    rows = []
    for key, g in table.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        n = int(g["seed"].nunique())
        row = {**dict(zip(by, key)), "seeds": n, "seed_list": " ".join(str(s) for s in sorted(g["seed"].unique()))}
        for v in values:
            x = g[v].astype(float).dropna().to_numpy()
            mean = float(x.mean()) if len(x) else float("nan")
            sd = float(x.std(ddof=1)) if len(x) > 1 else float("nan")
            half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * sd / math.sqrt(len(x))) if len(x) > 1 else float("nan")
            row.update({v: mean, f"{v}_lo": mean - half, f"{v}_hi": mean + half, f"{v}_sd": sd})
        for v in verdicts:
            judged = g[v].dropna().astype(bool)
            row[f"{v}_seeds"] = f"{int(judged.sum())}/{len(judged)}"
        rows.append(row)
    return pd.DataFrame(rows)


GENERALISATION_VALUES = ("deont_regret", "paper_deont_regret", "utilit_regret", "paper_utilit_regret", "illegal",
                         "mean_payoff")


def generalisation_per_seed(evaluation, reference=None):
    """Each agent's generalisation per training seed: regrets, illegal share and payoff averaged over the games.

    One row per agent and ``seed`` (each evaluated game counts once, as in the paper's "mean over
    the five games"; ``games`` says how many there were). ``paper_*`` are the paper's values
    averaged over the same games (NaN where it has none). This is the table that
    :func:`generalisation_over_seeds` averages over seeds; keep it to combine seeds evaluated at
    different times (``pd.concat`` the per-seed tables, then :func:`over_seeds`).
    ``evaluation`` is an :class:`~moralkit.evaluate.Evaluation` from
    :func:`moralkit.experiments.evaluate_runs` (its rounds carry each run's ``seed``; the untuned
    and value-prompted base model have seed -1).
    """
    import pandas as pd

    from .evaluate import Evaluation

    rounds = evaluation.rounds
    if "seed" not in rounds.columns:
        raise KeyError("The evaluation's rounds have no 'seed' column; evaluate runs with moralkit.experiments.evaluate_runs.")
    keys = ["agent", "kind", "labels"]
    per_seed = []
    for seed, part in rounds.groupby("seed", sort=True):
        table = generalisation_table(Evaluation(part, evaluation.xi, evaluation.r_illegal), reference)
        means = table.groupby(keys, sort=False)[list(GENERALISATION_VALUES)].mean().reset_index()
        means.insert(3, "games", table.groupby(keys, sort=False)["game"].nunique().to_numpy())
        means["seed"] = seed
        per_seed.append(means)
    return pd.concat(per_seed, ignore_index=True)


def generalisation_over_seeds(evaluation, reference=None, *, confidence: float = 0.95):
    """Each agent's generalisation, as the paper reports it, with an interval over training seeds.

    :func:`generalisation_per_seed` (means over the evaluated games, per agent and seed), then
    :func:`over_seeds`: the mean over seeds with its ``confidence`` interval. Players that were
    not fine-tuned (the untuned and value-prompted base model: seed -1) have one "seed", so no
    interval. ``evaluation`` may also be a per-seed table already (a DataFrame with ``seed``),
    e.g. seeds evaluated at different times concatenated.
    """
    import pandas as pd

    per_seed = evaluation if isinstance(evaluation, pd.DataFrame) else generalisation_per_seed(evaluation, reference)
    out = over_seeds(per_seed, ["agent", "kind", "labels", "games"], list(GENERALISATION_VALUES), confidence=confidence)
    for paper in ("paper_deont_regret", "paper_utilit_regret"):  # the paper's numbers are not measured per seed
        out = out.drop(columns=[f"{paper}_lo", f"{paper}_hi", f"{paper}_sd"])
    return out
