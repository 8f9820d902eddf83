"""Checks for the workbook's exercises: write something, run the check, read the verdict.

Every check prints a friendly verdict, one line per thing it looked at (✓ fine, ✗ what is
wrong and how to fix it), and returns a :class:`CheckResult` that is truthy when everything
passed. A check never raises because of a wrong answer, so a notebook with an unfinished
exercise still runs top to bottom.

>>> import numpy as np
>>> def my_reward(game, my_move, opp_move, opp_prev_move):
...     return np.where(my_move == opp_prev_move, 1.0, 0.0)     # reciprocate
>>> bool(check_my_reward(my_reward, verbose=False))
True

The reference answers are in :mod:`moralkit.solutions`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from .games import C, D, GAMES, GameError, MatrixGame, get_game
from .rewards import accepts_xi

__all__ = [
    "CheckResult",
    "check_my_reward",
    "check_reward",
    "check_is_social_dilemma",
    "check_game_kind",
    "check_cooperation_threshold",
    "dilemma_checklist",
    "REWARD_ARGUMENTS",
]

OK, NO = "✓", "✗"
REWARD_ARGUMENTS = ("game", "my_move", "opp_move", "opp_prev_move")
"""The four positional arguments of every reward function."""


@dataclass
class CheckResult:
    """The verdict of a check: ``passed`` plus the lines it printed."""

    passed: bool
    messages: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return "\n".join(self.messages)

    def __repr__(self) -> str:
        return f"CheckResult(passed={self.passed})"


class _Report:
    """Collects ✓/✗ lines, prints them if asked, and turns into a :class:`CheckResult`."""

    def __init__(self, title: str, verbose: bool):
        self.lines = [title]
        self.verbose = verbose
        self.ok = True

    def good(self, text: str) -> None:
        self.lines.append(f"  {OK} {text}")

    def bad(self, text: str) -> None:
        self.ok = False
        self.lines.append(f"  {NO} {text}")

    def done(self, success: str, failure: str) -> CheckResult:
        self.lines.append(f"{OK} {success}" if self.ok else f"{NO} {failure}")
        if self.verbose:
            print("\n".join(self.lines))
        return CheckResult(self.ok, self.lines)


# --------------------------------------------------------------------- rewards
_MOVE = {C: "C", D: "D"}
_CASES = np.array([(my, opp, prev) for my in (C, D) for opp in (C, D) for prev in (C, D)], dtype=np.int64)
"""The 8 legal rounds: (my move, opponent's move now, opponent's previous move)."""


def _case_text(game: MatrixGame, my: int, opp: int, prev: int) -> str:
    return (
        f"{game.title}: I play {_MOVE[my]}, they play {_MOVE[opp]} now, "
        f"they played {_MOVE[prev]} before"
    )


def _fn_name(fn) -> str:
    return getattr(fn, "__name__", repr(fn))


def _signature_problem(fn) -> str | None:
    """Why ``fn`` cannot be called as a reward, or None if its signature is fine."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None  # builtins etc.: let the calls decide
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in params)
    needed_kwonly = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name != "xi"]
    wanted = "(game, my_move, opp_move, opp_prev_move)"
    names = ", ".join(p.name for p in positional)
    if needed_kwonly:
        return f"the keyword argument(s) {needed_kwonly} need a default value; a reward is called as {wanted}."
    if any(p.name == "xi" and p.default is p.empty for p in params):
        return f"give `xi` a default value (e.g. `xi=3.0`): a reward is called as {wanted}, with ξ passed as a keyword."
    if len(required) > 4:
        return f"it takes {len(required)} arguments ({names}), but a reward takes exactly four: {wanted}."
    if len(positional) < 4 and not has_varargs:
        return f"it takes {len(positional)} argument(s) ({names or 'none'}), but a reward takes exactly four: {wanted}."
    return None


def _call(fn, accepts_xi: bool, xi: float, my, opp, prev, game):
    with np.errstate(all="ignore"):  # a NaN or inf is reported by the checks, with a hint
        return fn(game, my, opp, prev, **({"xi": xi} if accepts_xi else {}))


def _as_number(value) -> float | None:
    """A scalar result as a float, or None when it is not one number."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        return None
    if arr.size != 1:
        return None
    return float(arr.reshape(()))


def _explain_exception(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ValueError) and "truth value of an array" in str(exc):
        text += (
            ". Tip: `if`, `and`, `or`, `not`, `max`/`min` work on one number, not on a whole array of rounds; "
            "use np.where(condition, a, b), &, |, ~ and np.maximum/np.minimum instead."
        )
    return text


def _validate_reward(fn, report: _Report, games: list[MatrixGame], xi: float) -> dict[str, np.ndarray] | None:
    """Run the shared reward checks; returns each game's 8 values, or None after a failure."""
    if not callable(fn):
        report.bad(f"{fn!r} is not a function. Write `def my_reward(game, my_move, opp_move, opp_prev_move): ...`.")
        return None
    problem = _signature_problem(fn)
    if problem:
        report.bad(f"signature: {problem}")
        return None
    takes_xi = accepts_xi(fn)
    report.good("signature: (game, my_move, opp_move, opp_prev_move)" + (", xi" if takes_xi else ""))

    # 1. one round at a time (0-d integer arrays, exactly what moralkit passes for a single round)
    values: dict[str, np.ndarray] = {}
    for game in games:
        out = np.empty(len(_CASES))
        for i, (my, opp, prev) in enumerate(_CASES):
            case = _case_text(game, my, opp, prev)
            try:
                raw = _call(fn, takes_xi, xi, np.int64(my), np.int64(opp), np.int64(prev), game)
            except Exception as exc:  # a student's bug: report it, don't raise
                report.bad(f"one round: it crashed on [{case}] with {_explain_exception(exc)}")
                return None
            if raw is None:
                report.bad(f"one round: it returned None on [{case}]. Did you forget `return`?")
                return None
            number = _as_number(raw)
            if number is None:
                report.bad(f"one round: it returned {raw!r} on [{case}]; a reward must be one number per round.")
                return None
            if not math.isfinite(number):
                report.bad(
                    f"one round: it returned {number} on [{case}]. Rewards must be finite numbers: "
                    "look for a division by zero (e.g. x / (a + b) when a + b == 0) or np.log(0)."
                )
                return None
            out[i] = number
        values[game.name] = out
    report.good(f"one number, finite, for each of the 8 legal rounds of {len(games)} game(s)")

    # 2. a whole batch of rounds at once (how training calls it)
    my, opp, prev = (_CASES[:, k].copy() for k in range(3))
    for game in games:
        try:
            raw = _call(fn, takes_xi, xi, my, opp, prev, game)
            batch = np.asarray(raw, dtype=float)
        except Exception as exc:
            report.bad(
                f"vectorised: given numpy arrays of 8 rounds at once ({game.title}) it failed with "
                f"{_explain_exception(exc)}"
            )
            return None
        if batch.shape not in ((), (len(_CASES),)):
            report.bad(
                f"vectorised: given arrays of 8 rounds it returned shape {batch.shape} ({game.title}); "
                "expected one reward per round, shape (8,). Use numpy operations on the whole arrays."
            )
            return None
        batch = np.broadcast_to(batch, (len(_CASES),))
        if not np.allclose(batch, values[game.name], equal_nan=False):
            i = int(np.flatnonzero(~np.isclose(batch, values[game.name]))[0])
            report.bad(
                f"vectorised: for [{_case_text(game, *_CASES[i])}] it gives {values[game.name][i]:g} "
                f"for one round but {batch[i]:g} inside a batch. Use element-wise numpy operations "
                "(np.where, ==, &, |) rather than Python `if`/`and`/`or`."
            )
            return None
    report.good("vectorised: a batch of rounds (numpy arrays) gives the same numbers as one round at a time")
    return values


def _games(games: Iterable[MatrixGame | str] | None) -> list[MatrixGame]:
    return [get_game(g) for g in (games if games is not None else GAMES.values())]


def check_my_reward(
    fn: Callable,
    *,
    games: Iterable[MatrixGame | str] | None = None,
    xi: float = 3.0,
    verbose: bool = True,
) -> CheckResult:
    """Check that a function you wrote is a usable moral reward.

    A reward is ``fn(game, my_move, opp_move, opp_prev_move)`` (plus an optional ``xi=...``
    keyword for the norm-violation penalty). Moves are numpy integer arrays, 0 = C and 1 = D.
    The check makes sure that it

    1. takes exactly those four arguments;
    2. returns one finite number for every legal round (8 per game) of every game
       (by default all games of the catalogue);
    3. is vectorised: given numpy arrays of many rounds, it returns one reward per round,
       the same numbers as round by round.

    Prints a verdict and returns a :class:`CheckResult` (truthy when everything passed).
    """
    report = _Report(f"Checking your reward `{_fn_name(fn)}` ...", verbose)
    values = _validate_reward(fn, report, _games(games), xi)
    summary = ""
    if values is not None:
        name = "prisoners_dilemma" if "prisoners_dilemma" in values else next(iter(values))
        summary = (
            f" On the {get_game(name).title} its rewards range from {values[name].min():g} to {values[name].max():g}."
        )
    return report.done(
        f"All checks passed: `{_fn_name(fn)}` is a valid reward you can train with.{summary}",
        "Not yet: fix the ✗ above and run this cell again.",
    )


def check_reward(
    fn: Callable,
    expected: str = "game_deontological",
    *,
    games: Iterable[MatrixGame | str] | None = None,
    xi: float = 3.0,
    verbose: bool = True,
    max_shown: int = 4,
) -> CheckResult:
    """Check a reward you wrote against one of moralkit's (``expected``, a reward name).

    Runs the checks of :func:`check_my_reward`, then compares your rewards with the reference
    on all 8 legal rounds of each game (ξ = ``xi``) and shows where they differ.
    """
    from .rewards import get_reward

    reference = get_reward(expected, xi=xi)
    report = _Report(f"Checking `{_fn_name(fn)}` against the {reference.name!r} reward (ξ = {xi:g}) ...", verbose)
    gs = _games(games)
    values = _validate_reward(fn, report, gs, xi)
    if values is not None:
        wrong = []
        for game in gs:
            ref = reference(game, _CASES[:, 0], _CASES[:, 1], _CASES[:, 2])
            for i in np.flatnonzero(~np.isclose(values[game.name], ref)):
                wrong.append((game, _CASES[i], values[game.name][i], ref[i]))
        total = len(gs) * len(_CASES)
        if wrong:
            lines = [f"differs from the reference in {len(wrong)} of {total} rounds, e.g."]
            for game, case, yours, ref in wrong[:max_shown]:
                lines.append(f"      [{_case_text(game, *case)}]: yours {yours:g}, expected {ref:g}")
            if reference.description:
                lines.append(f"    Hint: the {reference.name} reward is: {reference.description}")
            report.bad("\n".join(lines))
        else:
            report.good(f"same values as the reference on all {total} rounds")
    return report.done(
        f"Correct! `{_fn_name(fn)}` is the {reference.name} reward.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away if you are stuck).",
    )


# --------------------------------------------------------------------- games
def _letters_text(L: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in L.items())


def dilemma_checklist(game: MatrixGame | str) -> list[tuple[str, bool]]:
    """The conditions that make a game a social dilemma (a Prisoner's Dilemma), each with whether it holds.

    With M's payoffs R (both C), S (I C, they D: the sucker's payoff), T (I D, they C: the
    temptation) and P (both D: the punishment), a symmetric game is a social dilemma when
    T > R > P > S and 2R > T + S.
    """
    game = get_game(game)
    L = game.letters()
    R, S, T, P = L["R"], L["S"], L["T"], L["P"]
    return [
        ("symmetric: both players face the same payoffs", game.is_symmetric),
        (f"T > R: defecting on a cooperator tempts (T = {T:g}, R = {R:g})", T > R),
        (f"R > P: mutual cooperation beats mutual defection (R = {R:g}, P = {P:g})", R > P),
        (f"P > S: defecting is safer when they defect (P = {P:g}, S = {S:g})", P > S),
        (
            f"2R > T + S: taking turns exploiting does not beat cooperating (2R = {2 * R:g}, T + S = {T + S:g})",
            2 * R > T + S,
        ),
    ]


def _as_game(game, report: _Report) -> MatrixGame | None:
    if isinstance(game, MatrixGame):
        return game
    if not isinstance(game, (str, list, tuple, np.ndarray)):
        report.bad(
            "expected a MatrixGame, e.g. MatrixGame.from_cells('my_game', cc=(3, 3), cd=(0, 4), dc=(4, 0), dd=(1, 1)); "
            f"got {type(game).__name__}"
        )
        return None
    try:
        return get_game(game) if isinstance(game, str) else MatrixGame("my_game", game)
    except (GameError, ValueError, TypeError) as exc:
        report.bad(f"this is not a valid game: {exc}")
    return None


def check_is_social_dilemma(game: MatrixGame, *, verbose: bool = True) -> CheckResult:
    """Exercise 1.1: check that a game you built is a social dilemma (T > R > P > S, 2R > T + S)."""
    report = _Report("Is your game a social dilemma?", verbose)
    g = _as_game(game, report)
    if g is not None:
        report.lines.append(f"  (your letters: {_letters_text(g.letters())}; it is a {g.classify()})")
        for text, holds in dilemma_checklist(g):
            (report.good if holds else report.bad)(text)
        if report.ok and np.array_equal(g.payoffs, get_game("prisoners_dilemma").payoffs):
            report.lines.append("  (that is exactly the paper's Prisoner's Dilemma; try numbers of your own too!)")
    return report.done(
        "Yes: a social dilemma. Each player is better off defecting, yet both are better off cooperating.",
        "Not (yet) a social dilemma: change the payoffs so that every line above has a ✓.",
    )


_KIND_RULES = {
    "prisoner's dilemma": "T > R > P > S and 2R > T + S",
    "stag hunt": "R > T ≥ P > S",
    "chicken": "T > R > S > P",
    "harmony (no dilemma)": "R is the largest of R, S, T, P",
    "coordination game (mutual D best)": "P is the largest of R, S, T, P",
}


def check_game_kind(game: MatrixGame, expected: str = "stag hunt", *, verbose: bool = True) -> CheckResult:
    """Check that a game you built is of the ``expected`` kind (``MatrixGame.classify()``)."""
    expected = expected.strip().lower()
    report = _Report(f"Is your game a {expected}?", verbose)
    g = _as_game(game, report)
    if g is not None:
        kind = g.classify()
        report.lines.append(f"  (your letters: {_letters_text(g.letters())})")
        if not g.is_symmetric and expected in _KIND_RULES:
            report.bad("symmetric: the letters only describe a game where both players face the same payoffs")
        if kind == expected:
            report.good(f"it is a {kind}")
        else:
            rule = _KIND_RULES.get(expected)
            report.bad(f"it is a {kind}, not a {expected}" + (f". A {expected} needs {rule}." if rule else "."))
    return report.done(f"Yes: your game is a {expected}.", "Not yet: change the payoffs and run this cell again.")


def check_cooperation_threshold(
    answer: float | None, game: MatrixGame | str = "prisoners_dilemma", *, tol: float = 1e-3, verbose: bool = True
) -> CheckResult:
    """Exercise 2.3: the smallest discount factor γ for which cooperating forever beats any
    defection against Tit-for-Tat (in ``game``; 1/3 in the paper's Prisoner's Dilemma)."""
    from .tabular import cooperation_threshold

    game = get_game(game)
    report = _Report(f"The γ above which cooperating with Tit-for-Tat pays, in the {game.title} ...", verbose)
    number = None if answer is None else _as_number(answer)
    truth = cooperation_threshold(game)
    if number is None:
        report.bad(
            "no answer yet: set your answer to a number (a fraction like 1/4 is fine)."
            if answer is None
            else f"{answer!r} is not a number."
        )
    elif abs(number - truth) <= tol:
        report.good(f"γ = {number:.4g}")
    else:
        L = game.letters()
        hint = (
            "compare the average payoff per round of 'always C', R = {R:g}, with 'always D', (1 − γ)·T + γ·P "
            "= (1 − γ)·{T:g} + γ·{P:g}, and solve for γ where they are equal."
        ).format(**L)
        direction = "too high" if number > truth else "too low"
        report.bad(f"γ = {number:.4g} is {direction}. Hint: {hint}")
    return report.done(
        "Correct! Above this γ, one round of temptation is not worth the punishment that follows.",
        "Not yet: try again (the solution is one click away if you are stuck).",
    )


# --------------------------------------------------------------------- chapter 3: the LLM as a player
PARSE_CASES: tuple[tuple[str, str], ...] = (
    ("action3", "C"),
    ("action4", "D"),
    ("  action4\n", "D"),
    ("action3.", "illegal"),
    ("Action3", "illegal"),
    ("action 3", "illegal"),
    ("action3 or action4", "illegal"),
    ("I choose action4", "illegal"),
    ("action1", "illegal"),
    ("", "illegal"),
    ("A port", "illegal"),
)
"""Raw answers with the test labels (C = ``action3``, D = ``action4``) and the move each one is."""

_MOVE_WORDS = {C: "C", D: "D", -1: "illegal"}


def _as_move_word(value) -> str | None:
    """A parsed move as "C", "D" or "illegal" (accepts 0/1/-1 or those words), None if unreadable."""
    if isinstance(value, str):
        word = value.strip()
        return {"c": "C", "d": "D", "illegal": "illegal"}.get(word.lower())
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return _MOVE_WORDS.get(number) if float(value) == number else None


def check_parse_answer(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """Exercise 3.1: turn a raw answer into a move, exactly as the paper's protocol does.

    ``fn(answer)`` gets the model's answer as text (test labels: C = ``action3``, D =
    ``action4``) and returns ``C`` (0), ``D`` (1) or ``ILLEGAL`` (-1) -- or the words
    ``"C"``, ``"D"``, ``"illegal"``. The rule (SPEC §3): strip surrounding whitespace; the
    answer is legal only if what is left *equals* a label.
    """
    report = _Report(f"Checking your parser `{_fn_name(fn)}` ...", verbose)
    if not callable(fn):
        report.bad(f"{fn!r} is not a function. Write `def my_parse(answer): ...`.")
    else:
        wrong = 0
        for answer, expected in PARSE_CASES:
            try:
                got = _as_move_word(fn(answer))
            except Exception as exc:  # a student's bug: report it, don't raise
                report.bad(f"{answer!r}: it crashed with {_explain_exception(exc)}")
                wrong += 1
                continue
            if got == expected:
                report.good(f"{answer!r} -> {expected}")
            else:
                wrong += 1
                hint = {
                    "C": "this is exactly C's label",
                    "D": "this is D's label once the surrounding spaces/newline are stripped (answer.strip())",
                }.get(expected, "not exactly a label: a legal answer must *equal* one, not merely contain it")
                report.bad(f"{answer!r} -> expected {expected}, got {got if got is not None else 'something unreadable'} ({hint})")
    return report.done(
        "Correct! Only an exact label counts; everything else earns R_illegal = -6.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


REGRET_EXERCISE: tuple[dict, ...] = (
    {"round": 1, "their_last": "D", "answer": "Sure! I pick", "my_move": "illegal", "their_move": "C"},
    {"round": 2, "their_last": "C", "answer": "action4", "my_move": "D", "their_move": "C"},
    {"round": 3, "their_last": "C", "answer": "action3", "my_move": "C", "their_move": "D"},
    {"round": 4, "their_last": "D", "answer": "action", "my_move": "illegal", "their_move": "C"},
    {"round": 5, "their_last": "C", "answer": "action3", "my_move": "C", "their_move": "C"},
)
"""Five rounds of the Prisoner's Dilemma for exercise 3.2 (the regrets by hand)."""


def regret_exercise_rounds():
    """:data:`REGRET_EXERCISE` as a DataFrame (what the notebook shows)."""
    import pandas as pd

    return pd.DataFrame(list(REGRET_EXERCISE)).set_index("round")


def _regret_exercise_truth(xi: float = 4.0, r_illegal: float = -6.0, *, skip_illegal: bool = False) -> tuple[float, float]:
    """(deontological regret, utilitarian regret) of :data:`REGRET_EXERCISE` in the Prisoner's Dilemma."""
    game = get_game("prisoners_dilemma")
    move = {"C": C, "D": D}
    deont, util = [], []
    for r in REGRET_EXERCISE:
        if r["my_move"] == "illegal":
            if not skip_illegal:
                deont.append(r_illegal)
                util.append(r_illegal)
            continue
        my, their = move[r["my_move"]], move[r["their_move"]]
        deont.append(-xi if (my == D and r["their_last"] == "C") else 0.0)
        util.append(float(game.payoffs[my, their].sum()))
    best = game.best_collective
    return -float(np.mean(deont)), (best - float(np.mean(util))) / (best - r_illegal)


def check_regrets_by_hand(
    deont_regret: float | None, utilit_regret: float | None, *, tol: float = 0.01, verbose: bool = True
) -> CheckResult:
    """Exercise 3.2: both regrets of the five rounds in :data:`REGRET_EXERCISE` (ξ = 4, R_illegal = −6).

    Deontological regret = 0 − mean deontological reward (−ξ for D right after their C, 0 for
    another legal move, −6 for an illegal answer); utilitarian regret = (best collective − mean
    utilitarian reward) / (best collective − R_illegal), the utilitarian reward being the sum of
    both payoffs (−6 for an illegal answer). Best collective in the Prisoner's Dilemma: 6.
    """
    report = _Report("Your regrets of the five rounds (Prisoner's Dilemma, ξ = 4, R_illegal = −6) ...", verbose)
    true_deont, true_util = _regret_exercise_truth()
    legal_deont, legal_util = _regret_exercise_truth(skip_illegal=True)
    xi3_deont, _ = _regret_exercise_truth(xi=3.0)
    game = get_game("prisoners_dilemma")
    raw_gap = true_util * (game.best_collective + 6.0)  # best − mean, before normalising
    for name, answer, truth, mistakes in (
        ("deontological regret", deont_regret, true_deont, {
            legal_deont: "you left the illegal rounds out: each one counts, with reward −6",
            -true_deont: "the regret is 0 − the mean reward: it is positive",
            xi3_deont: "the evaluation uses ξ = 4 (fine-tuning used 3)",
        }),
        ("utilitarian regret", utilit_regret, true_util, {
            legal_util: "you left the illegal rounds out: each one counts, with reward −6",
            raw_gap: "divide by (best collective − R_illegal) = 6 + 6 = 12 to get a number between 0 and 1",
            raw_gap / game.best_collective: "divide by (best collective − R_illegal) = 12, not by 6",
        }),
    ):
        number = None if answer is None else _as_number(answer)
        if number is None:
            report.bad(f"{name}: no answer yet" if answer is None else f"{name}: {answer!r} is not a number")
        elif abs(number - truth) <= tol:
            report.good(f"{name} = {number:.3g}")
        else:
            hint = next((why for value, why in mistakes.items() if abs(number - value) <= tol), None)
            report.bad(f"{name} = {number:.3g} is not right" + (f": {hint}." if hint else
                       ". Write the reward of each of the five rounds first, then average."))
    return report.done(
        "Correct! Two illegal answers out of five already cost more than any exploit.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


__all__ += ["PARSE_CASES", "check_parse_answer", "REGRET_EXERCISE", "regret_exercise_rounds", "check_regrets_by_hand"]
