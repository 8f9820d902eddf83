"""Checks for the workbook's exercises: write something, run the check, read the verdict.

Every check prints a friendly verdict, one line per thing it looked at (✓ fine, ✗ what is
wrong and how to fix it), and returns a :class:`CheckResult` that is truthy when everything
passed. A check never raises because of a wrong answer, so a notebook with an unfinished
exercise still runs top to bottom; an untouched placeholder (``None``, ``...``,
``NotImplemented``, a function that raises ``NotImplementedError`` or still returns the
notebook's starting point) fails with a line that says "not done yet".

Chapter by chapter: 1.1 :func:`check_is_social_dilemma`, 1.2 :func:`check_game_kind`;
2.1 :func:`check_reward`, 2.2 :func:`check_own_reward`, 2.3 :func:`check_cooperation_threshold`;
3.1 :func:`check_parse_answer`, 3.2 :func:`check_regrets_by_hand`;
4.1 :func:`check_exploitation_reward`, 4.2 :func:`check_predicted_responses` (and
:func:`check_training_moved` after training); 5.1 :func:`check_forgiving_reward`,
5.2 :func:`check_kl_leash`; 6.1 :func:`check_choices_vs_random`, 6.2 :func:`check_regrets_from_shares`;
7.1 :func:`check_maxmin_mix`, 7.2 :func:`check_e_step`.

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

from .analysis import EITHER, STATES, predicted_responses
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


NOT_DONE = "not done yet"
"""The words every check uses for an untouched placeholder."""


def _is_placeholder(value) -> bool:
    """True for the placeholders an exercise starts with: None, ``...`` and ``NotImplemented``."""
    return value is None or value is Ellipsis or value is NotImplemented


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
    if _is_placeholder(fn):
        report.bad(f"{NOT_DONE}: write `def my_reward(game, my_move, opp_move, opp_prev_move): ...`.")
        return None
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
            except NotImplementedError:
                report.bad(f"{NOT_DONE}: the function still raises NotImplementedError; replace that line with your code.")
                return None
            except Exception as exc:  # a student's bug: report it, don't raise
                report.bad(f"one round: it crashed on [{case}] with {_explain_exception(exc)}")
                return None
            if raw is NotImplemented or raw is Ellipsis:
                report.bad(f"{NOT_DONE}: the function returns {raw!r}; replace it with your reward.")
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
        payoff_only = reference.name != "game" and all(
            np.allclose(values[g.name], g.payoffs[_CASES[:, 0], _CASES[:, 1], 0]) for g in gs)
        if wrong and payoff_only:
            report.bad(f"{NOT_DONE}: your function still returns only your payoff (the Game reward); "
                       "complete the TODO.")
        if wrong:
            lines = [f"differs from the reference in {len(wrong)} of {total} rounds, e.g."]
            for game, case, yours, ref in wrong[:max_shown]:
                lines.append(f"      [{_case_text(game, *case)}]: yours {yours:g}, expected {ref:g}")
            if reference.description:
                lines.append(f"    Hint: the {reference.name} reward is: {reference.description}")
            report.bad("\n".join(lines))
        else:
            report.good(f"same values as the reference on all {total} rounds")
            if reference.xi is not None:
                _check_uses_xi(fn, reference, report, gs, xi)
    return report.done(
        f"Correct! `{_fn_name(fn)}` is the {reference.name} reward.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away if you are stuck).",
    )


def _check_uses_xi(fn, reference, report: _Report, games: list[MatrixGame], xi: float) -> None:
    """A reward with a norm penalty must use its ``xi`` argument, not a number written into it."""
    from .rewards import get_reward

    other = xi + 2.0
    if not accepts_xi(fn):
        report.bad(f"`{_fn_name(fn)}` takes no `xi` argument, so ξ cannot be changed: add `xi=3.0` to its arguments "
                   "and use `xi` instead of a number.")
        return
    ref = get_reward(reference.name, xi=other)
    my, opp, prev = (_CASES[:, k].copy() for k in range(3))
    for game in games:
        try:
            got = np.broadcast_to(np.asarray(_call(fn, True, other, my, opp, prev, game), dtype=float), (len(_CASES),))
        except Exception as exc:  # a student's bug: report it, don't raise
            report.bad(f"with xi={other:g} it crashed with {_explain_exception(exc)}")
            return
        if not np.allclose(got, ref(game, my, opp, prev)):
            report.bad(f"with xi={other:g} it still gives the values of ξ = {xi:g}: it ignores its `xi` argument. "
                       f"Write `xi` where you wrote the number {xi:g}.")
            return
    report.good(f"uses its `xi` argument (right with ξ = {other:g} too)")


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
        if np.array_equal(g.payoffs, get_game("stag_hunt").payoffs):
            report.bad(f"{NOT_DONE}: these are still the Stag Hunt's payoffs; change one or two of them.")
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
        if expected != "prisoner's dilemma" and np.array_equal(g.payoffs, get_game("prisoners_dilemma").payoffs):
            report.bad(f"{NOT_DONE}: these are still the placeholder's letters (the Prisoner's Dilemma); choose your own.")
        if not g.is_symmetric and expected in _KIND_RULES:
            report.bad("symmetric: the letters only describe a game where both players face the same payoffs")
        if kind == expected:
            report.good(f"it is a {kind}")
        else:
            rule = _KIND_RULES.get(expected)
            report.bad(f"it is a {kind}, not a {expected}" + (f". A {expected} needs {rule}." if rule else "."))
    return report.done(f"Yes: your game is a {expected}.", "Not yet: change the payoffs and run this cell again.")


def check_cooperation_threshold(
    answer: float | None, game: MatrixGame | str = "prisoners_dilemma", *, tol: float = 5e-3, verbose: bool = True
) -> CheckResult:
    """Exercise 2.3: the smallest discount factor γ for which cooperating forever beats any
    defection against Tit-for-Tat (in ``game``; 1/3 in the paper's Prisoner's Dilemma).

    An answer within ``tol`` of the exact value passes, so 0.33 and 0.333 are fine for 1/3.
    """
    from .tabular import cooperation_threshold

    game = get_game(game)
    report = _Report(f"The γ above which cooperating with Tit-for-Tat pays, in the {game.title} ...", verbose)
    number = None if answer is None else _as_number(answer)
    truth = cooperation_threshold(game)
    if number is None:
        report.bad(
            f"no answer yet ({NOT_DONE}): set your answer to a number (a fraction like 1/4 is fine)."
            if _is_placeholder(answer)
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
    ``"C"``, ``"D"``, ``"illegal"``. The rule (docs/science.md §3): strip surrounding whitespace; the
    answer is legal only if what is left *equals* a label.
    """
    report = _Report(f"Checking your parser `{_fn_name(fn)}` ...", verbose)
    if _is_placeholder(fn):
        report.bad(f"{NOT_DONE}: write `def my_parse(answer): ...`.")
    elif not callable(fn):
        report.bad(f"{fn!r} is not a function. Write `def my_parse(answer): ...`.")
    else:
        wrong, seen = 0, []
        for answer, expected in PARSE_CASES:
            try:
                got = _as_move_word(fn(answer))
            except NotImplementedError:
                report.bad(f"{NOT_DONE}: `{_fn_name(fn)}` still raises NotImplementedError; replace that line with your code.")
                wrong += 1
                break
            except Exception as exc:  # a student's bug: report it, don't raise
                report.bad(f"{answer!r}: it crashed with {_explain_exception(exc)}")
                wrong += 1
                continue
            seen.append(got)
            if got == expected:
                report.good(f"{answer!r} -> {expected}")
            else:
                wrong += 1
                hint = {
                    "C": "this is exactly C's label",
                    "D": "this is D's label once the surrounding spaces/newline are stripped (answer.strip())",
                }.get(expected, "not exactly a label: a legal answer must *equal* one, not merely contain it")
                report.bad(f"{answer!r} -> expected {expected}, got {got if got is not None else 'something unreadable'} ({hint})")
        if len(seen) == len(PARSE_CASES) and len(set(seen)) == 1:
            report.bad(f"{NOT_DONE}? it gives {seen[0]} for every answer, like the placeholder: "
                       "compare the stripped answer with each label.")
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
            report.bad(f"{name}: no answer yet ({NOT_DONE})" if _is_placeholder(answer) else f"{name}: {answer!r} is not a number")
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


# --------------------------------------------------------------------- chapter 4: fine-tuning with a reward of your own
_STATES = STATES  # the four memory-1 states, in the order of policy_table
_EITHER = EITHER


def _expected_moves(expected, game, opponent: str = "tit_for_tat", xi: float | None = None) -> dict[tuple[str, str], str]:
    """Normalise ``expected`` of :func:`check_training_moved` to {(my_prev, opp_prev): "C"/"D"/"either"}."""
    import pandas as pd

    if expected is None:
        raise ValueError("pass expected=... (a reward, or the move you expect per state) when you pass a log.")
    if isinstance(expected, pd.DataFrame):
        return {(str(a), str(b)): str(p) for a, b, p in zip(expected["my_prev"], expected["opp_prev"], expected["predicted"])}
    if isinstance(expected, dict):
        out = {}
        for key, move in expected.items():
            move = _EITHER if move is None else str(move).strip()
            move = {"c": "C", "d": "D"}.get(move.lower(), _EITHER if move.lower() in ("either", "any", "") else move)
            if move not in ("C", "D", _EITHER):
                raise ValueError(f"Expected moves are 'C', 'D' or None (either), got {move!r} for {key!r}.")
            if isinstance(key, tuple):
                states = [(str(key[0]).upper(), str(key[1]).upper())]
            elif "|" in str(key):
                a, b = str(key).split("|")
                states = [(a.strip().upper(), b.strip().upper())]
            else:  # only their last move: the same in both of my last moves
                states = [(mine, str(key).strip().upper()) for mine in ("C", "D")]
            for state in states:
                if state not in _STATES:
                    raise ValueError(f"Unknown state {key!r}: use 'C|D' (my last | their last), ('C', 'D') or 'C'/'D'.")
                out[state] = move
        return out
    table = predicted_responses(expected, game, opponent, xi=xi)
    return {(a, b): p for a, b, p in zip(table["my_prev"], table["opp_prev"], table["predicted"])}


def _probabilities_by_state(frame) -> dict[tuple[str, str], dict[str, float]]:
    """{state: {"C": p, "D": p, "illegal": p, "n": rounds}} from a policy table or from played rounds."""
    out = {}
    if "P(C)" in frame.columns:
        for _, row in frame.iterrows():
            out[(str(row["my_prev"]), str(row["opp_prev"]))] = {
                "C": float(row["P(C)"]), "D": float(row["P(D)"]), "illegal": float(row["P(illegal)"]), "n": math.inf}
        return out
    for state in _STATES:
        rows = frame[(frame["my_prev"] == state[0]) & (frame["opp_prev"] == state[1])]["my_move"]
        n = len(rows)
        out[state] = {k: (float((rows == k).mean()) if n else math.nan) for k in ("C", "D", "illegal")} | {"n": n}
    return out


def check_training_moved(
    run,
    expected=None,
    *,
    before=None,
    after=None,
    game: MatrixGame | str = "prisoners_dilemma",
    part: float = 0.2,
    min_change: float = 0.02,
    verbose: bool = True,
) -> CheckResult:
    """Exercise 4.1: did fine-tuning move the player the way its reward predicts?

    Parameters
    ----------
    run:
        A :class:`~moralkit.training.TrainingRun` (or its ``log``).
    expected:
        What you expect, per state (my last move, their last move): a reward (name or your own
        function: its myopic best responses from :func:`predicted_responses` against the run's
        opponent), a table from :func:`predicted_responses`, or a dict such as
        ``{"C": "C", "D": "D"}`` (keys = their last move) or ``{"C|C": "C", "D|D": None}``
        (None = either move). Default: the reward the run was trained with.
    before, after:
        :meth:`~moralkit.llm.LLMPlayer.policy_table` of the untuned and of the fine-tuned
        player: the check then compares exact label probabilities. Without them it compares
        the answers played in the first and in the last ``part`` of the training episodes.
    min_change:
        How much a probability (or share) must grow to count as a move (default 0.02); a share
        that is already 0.9 or more counts as there.

    The check looks at two things, in the order fine-tuning learns them: **format** (more
    probability on the two labels than before) and **values** (in each state where your reward
    prefers one move, a larger share of that move among the legal answers than before).
    It prints a verdict and returns a :class:`CheckResult`; it never raises for a run that
    simply did not learn (yet).
    """
    import pandas as pd

    config = getattr(run, "config", None)
    log = run if isinstance(run, pd.DataFrame) else None
    if log is None and (before is None or after is None):
        log = run.log
    report = _Report("Did fine-tuning move the player the way the reward predicts?", verbose)
    try:
        if expected is None and config is not None:
            expected = config.phases[-1][0]  # the reward it was (last) trained with
        wanted = _expected_moves(expected, game, config.opponent if config is not None else "tit_for_tat",
                                 config.xi if config is not None else None)
    except (ValueError, TypeError) as exc:
        report.bad(f"could not read `expected`: {exc}")
        return report.done("", "Not yet: fix `expected` and run this cell again.")

    if before is not None and after is not None:
        source = "exact label probabilities, untuned → fine-tuned"
        old, new = _probabilities_by_state(before), _probabilities_by_state(after)
    else:
        if log is None or len(log) == 0:
            report.bad("this run has no training rounds yet: train it first (run.train()).")
            return report.done("", "Not yet: train the run, then run this check again.")
        if config is not None and len(config.phases) > 1 and "train_reward" in log.columns:
            log = log[log["episode"] >= config.episodes - config.phases[-1][1]]  # the last phase only
        episodes = np.sort(log["episode"].unique())
        k = max(1, math.ceil(len(episodes) * part))
        if len(episodes) < 2:
            report.bad("only one training episode: nothing to compare. Train for more episodes.")
            return report.done("", "Not yet: train for more episodes, then run this check again.")
        k = min(k, len(episodes) // 2)
        source = f"answers played in the first {k} vs the last {k} of {len(episodes)} episodes"
        old = _probabilities_by_state(log[log["episode"].isin(episodes[:k])])
        new = _probabilities_by_state(log[log["episode"].isin(episodes[-k:])])
    report.lines.append(f"  (comparing {source})")

    def legal(p):
        return p["C"] + p["D"]

    # 1. format
    old_legal = np.nanmean([legal(old[s]) for s in _STATES])
    new_legal = np.nanmean([legal(new[s]) for s in _STATES])
    text = f"format: answers in the label format {old_legal:.1%} → {new_legal:.1%}"
    if new_legal - old_legal >= min_change or new_legal >= 0.9:
        report.good(text)
    else:
        report.bad(text + " — the player has not learned the format yet: train for more episodes "
                   "(the format comes first, the values after it).")

    # 2. values, state by state
    moved = 0
    predicted = [s for s in _STATES if wanted.get(s, _EITHER) != _EITHER]
    for state in _STATES:
        move = wanted.get(state, _EITHER)
        where = f"after I played {state[0]}, they {state[1]}"
        if move == _EITHER:
            report.lines.append(f"  · {where}: the reward does not prefer either move — no prediction to check")
            continue
        share = lambda p: p[move] / legal(p) if legal(p) > 0 else math.nan  # noqa: E731
        a, b = share(old[state]), share(new[state])
        text = f"{where}: predicted {move}; share of {move} among legal answers {a:.2f} → {b:.2f}"
        if math.isnan(b):
            report.bad(text + " — no legal answers here yet: train for more episodes.")
        elif (not math.isnan(a) and b - a >= min_change) or b >= 0.9:
            report.good(text)
            moved += 1
        else:
            report.bad(text + " — not (yet) towards the prediction.")
    if not predicted:
        report.lines.append("  (the reward prefers no move in any state: nothing to check but the format)")
    return report.done(
        f"Yes: the player learned the format and moved towards the predicted move in {moved} of "
        f"{len(predicted)} state(s)." if predicted else "The player learned the format.",
        f"Not (yet) what the reward predicts (moved in {moved} of {len(predicted)} state(s)). Train for more "
        "episodes (the `cpu` or `gpu` profile; the `smoke` profile is far too short to learn anything), or "
        "check with predicted_responses(...) that your reward prefers what you think.",
    )


def prediction_agreement(log, expected, *, game: MatrixGame | str = "prisoners_dilemma", opponent: str = "tit_for_tat",
                         last: float = 0.2, xi: float | None = None) -> float:
    """Share of the legal answers in the last ``last`` of training that play the predicted move.

    ``expected`` as in :func:`check_training_moved` (a reward, its :func:`predicted_responses`
    or a dict); in states where the reward prefers neither move, both moves agree. NaN if the
    tail of training has no legal answer.
    """
    wanted = _expected_moves(expected, game, opponent, xi)
    if len(log) == 0:
        return math.nan
    episodes = log["episode"].max() + 1
    tail = log[(log["episode"] >= math.floor(episodes * (1 - last))) & (log["my_move"] != "illegal")]
    if len(tail) == 0:
        return math.nan
    predicted = [wanted.get((a, b), _EITHER) for a, b in zip(tail["my_prev"], tail["opp_prev"])]
    agree = [p == _EITHER or p == m for p, m in zip(predicted, tail["my_move"])]
    return float(np.mean(agree))


__all__ += ["check_training_moved", "prediction_agreement"]


# --------------------------------------------------------------------- chapter 7: pluralistic alignment
_STAKEHOLDERS = ("game", "deontological", "utilitarian")


def _state_key(state) -> tuple[int, int]:
    text = state if isinstance(state, str) else "|".join(str(x) for x in state)
    parts = [x.strip().upper() for x in text.replace(",", "|").split("|")]
    code = {"C": C, "D": D, "0": C, "1": D}
    if len(parts) != 2 or any(x not in code for x in parts):
        raise ValueError(f"A state is 'C|D' (my last move | their last move), got {state!r}.")
    return code[parts[0]], code[parts[1]]


def _raw_state_utilities(game, stakeholders, opponent, xi, my_prev, opp_prev):
    """The same state, but with each stakeholder's *raw* (not normalised) expected reward."""
    from .opponents import get_opponent
    from .pluralistic import StateUtilities
    from .rewards import get_reward

    q = float(get_opponent(opponent).cooperation_probability(my_prev, opp_prev))
    rewards = [get_reward(k, xi=xi) for k in stakeholders]
    value = [np.array([q * r(game, m, C, opp_prev) + (1 - q) * r(game, m, D, opp_prev) for r in rewards]) for m in (C, D)]
    return StateUtilities(my_prev, opp_prev, tuple(r.name for r in rewards), value[0], value[1], q)


def check_maxmin_mix(
    p_cooperate,
    value=None,
    state: str = "C|D",
    *,
    game: MatrixGame | str = "prisoners_dilemma",
    stakeholders=_STAKEHOLDERS,
    opponent: str = "tit_for_tat",
    xi: float = 3.0,
    tol: float = 2e-3,
    verbose: bool = True,
) -> CheckResult:
    """Exercise 7.1: the max–min mix of one state, by hand.

    ``p_cooperate`` is your P(C), ``value`` the worst-off stakeholder's normalised utility there.
    The check compares with the exact linear program and, when an answer is wrong, names the
    likely mistake: the utilitarian average's choice, P(D) instead of P(C), the per-sample
    minimum, raw instead of normalised rewards, a crossing of the wrong two lines, the mean
    instead of the minimum.
    """
    from .pluralistic import solve_average, solve_maxmin, stakeholder_utilities

    g = get_game(game)
    my_prev, opp_prev = _state_key(state)
    label = f"{'CD'[my_prev]}|{'CD'[opp_prev]}"
    report = _Report(f"The max–min mix in state {label} (my last | their last), {g.title} vs {opponent}, ξ = {xi:g} ...", verbose)
    u = stakeholder_utilities(g, list(stakeholders), opponent, xi=xi)[2 * my_prev + opp_prev]
    best = solve_maxmin(u)
    p = None if _is_placeholder(p_cooperate) else _as_number(p_cooperate)
    if p is None:
        report.bad(f"P(C): no answer yet ({NOT_DONE})" if _is_placeholder(p_cooperate) else f"P(C): {p_cooperate!r} is not a number")
    elif not -tol <= p <= 1 + tol:
        report.bad(f"P(C) = {p:.4g} is not a probability: it must lie between 0 and 1.")
    elif abs(float(u.at(p).min()) - best.value) <= tol:
        report.good(f"P(C) = {p:.4g}: the worst-off stakeholder gets {float(u.at(p).min()):.4g}, the most possible")
    else:
        hints = []
        if abs(p - solve_average(u).p_cooperate) <= tol:
            hints.append("that is the utilitarian average's choice: it maximises the *mean* of the lines; max–min "
                         "maximises the *lowest* line")
        pointwise = [float(u.if_c.min()), float(u.if_d.min())]  # what the per-sample minimum compares
        per_sample = 1.0 if pointwise[0] > pointwise[1] else 0.0 if pointwise[1] > pointwise[0] else None
        if per_sample is not None and abs(p - per_sample) <= tol and not hints:
            hints.append("that maximises the *per-sample* minimum E[min_k r_k] (always a pure move); max–min "
                         "maximises min_k E[r_k], the lower envelope of the lines, which may need a mix")
        if abs((1 - p) - best.p_cooperate) <= tol:
            hints.append(f"{1 - p:.4g} would be right: you gave P(D), the question asks for P(C)")
        raw = solve_maxmin(_raw_state_utilities(g, stakeholders, opponent, xi, my_prev, opp_prev))
        if abs(p - raw.p_cooperate) <= tol and abs(raw.p_cooperate - best.p_cooperate) > tol:
            hints.append("you mixed the raw rewards: normalise each stakeholder to [0, 1] over the game's 8 legal "
                         "rounds first (payoffs, −ξ and sums live on different scales)")
        slopes, base = u.if_c - u.if_d, u.if_d
        for a in range(len(slopes) if not hints else 0):
            for b in range(a + 1, len(slopes)):
                if abs(slopes[a] - slopes[b]) < 1e-12:
                    continue
                cross = (base[b] - base[a]) / (slopes[a] - slopes[b])
                if 0 <= cross <= 1 and abs(p - cross) <= tol:
                    low = int(np.argmin(u.at(cross)))
                    hints.append(f"{u.stakeholders[a]} and {u.stakeholders[b]} cross there, but at that point "
                                 f"{u.stakeholders[low]} is lower still: the max–min point is the top of the *lower envelope*")
        report.bad(f"P(C) = {p:.4g} gives the worst-off stakeholder only {float(u.at(p).min()):.4g}"
                   + (": " + "; ".join(dict.fromkeys(hints)) + "." if hints else
                      ". Draw each stakeholder's line U_k(p) = p·U_k(C) + (1 − p)·U_k(D) and find the highest point of the lowest one."))
    if not _is_placeholder(value) or p is not None:
        number = None if _is_placeholder(value) else _as_number(value)
        if number is None:
            report.bad(f"value: no answer yet ({NOT_DONE})" if _is_placeholder(value) else f"value: {value!r} is not a number")
        elif abs(number - best.value) <= tol:
            report.good(f"value = {number:.4g}")
        else:
            hint = ""
            at_best = u.at(best.p_cooperate)
            at_yours = u.at(p) if p is not None and 0 <= p <= 1 else None
            if at_yours is not None and abs(number - float(at_yours.min())) <= tol:
                hint = ": it is the lowest utility at *your* P(C) (consistent!), but another P(C) gives the worst-off more"
            elif any(abs(number - float(x.mean())) <= tol for x in (at_best, at_yours) if x is not None):
                hint = ": that is the *mean* of the stakeholders' utilities; the value is the *lowest* one"
            elif any(abs(number - x) <= tol for x in at_best):
                hint = ": that is one stakeholder's utility at the mix, but not the lowest one"
            report.bad(f"value = {number:.4g} is not right{hint or '. It is min_k U_k(p) at the max–min p.'}")
    return report.done(
        f"Correct! In state {label} the egalitarian policy plays C with probability {best.p_cooperate:.4g}; the "
        f"worst-off stakeholder gets {best.value:.4g}.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


def _e_step_cases():
    from .pluralistic import Population, simulate_preferences

    cases = []
    for seed in (3, 11):
        pop = Population(users=12, comparisons=12, rationality=4.0)
        prefs = simulate_preferences(pop, seed)
        rng = np.random.default_rng(seed)
        rewards = pop.true_rewards() * pop.rationality + rng.normal(0, 0.3, (len(pop.types), 8))
        cases.append((prefs, rewards))
    return cases


def _variant_assignments(prefs, rewards) -> dict[str, np.ndarray]:
    """What typical slips in the E-step compute, with the hint for each."""
    n = len(prefs.user_type)
    margin = rewards[:, prefs.first] - rewards[:, prefs.second]
    signed = np.where(prefs.first_wins, margin, -margin)
    def per_user(values):
        out = np.zeros((n, len(rewards)))
        np.add.at(out, prefs.user, values.T)
        return out
    loglik = per_user(-np.logaddexp(0.0, -signed))
    return {
        "you picked the cluster that explains the user *worst* (argmin): take the largest log-likelihood (argmax)":
            np.argmin(loglik, axis=1),
        "a comparison the user decided against the first outcome counts with the opposite sign: use r(winner) − r(loser)":
            np.argmax(per_user(-np.logaddexp(0.0, -margin)), axis=1),
        "add *log*-probabilities over a user's comparisons (the comparisons are independent: probabilities multiply), "
        "not the probabilities themselves":
            np.argmax(per_user(1 / (1 + np.exp(-signed))), axis=1),
    }


def check_e_step(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """Exercise 7.2: write the E-step of EM with hard assignment (MaxMin-RLHF's Algorithm 2).

    ``fn(user, first, second, first_wins, rewards, n_users)`` gets the comparisons (comparison i:
    user ``user[i]`` saw outcomes ``first[i]`` and ``second[i]`` and preferred the first when
    ``first_wins[i]``), the clusters' rewards (shape (clusters, 8): a reward per outcome) and the
    number of users, and returns each user's cluster: the one whose Bradley–Terry model gives the
    user's comparisons the highest likelihood, Π σ(r(winner) − r(loser)).
    """
    from .pluralistic import assign_users

    report = _Report(f"Checking your E-step `{_fn_name(fn)}` ...", verbose)
    if _is_placeholder(fn):
        report.bad(f"{NOT_DONE}: write def my_e_step(user, first, second, first_wins, rewards, n_users): ...")
        return report.done("", "Not yet: fix the ✗ above and run this cell again.")
    if not callable(fn):
        report.bad(f"{fn!r} is not a function: write def my_e_step(user, first, second, first_wins, rewards, n_users): ...")
        return report.done("", "Not yet: fix the ✗ above and run this cell again.")
    for i, (prefs, rewards) in enumerate(_e_step_cases(), start=1):
        n = len(prefs.user_type)
        try:
            with np.errstate(all="ignore"):
                raw = fn(prefs.user.copy(), prefs.first.copy(), prefs.second.copy(), prefs.first_wins.copy(), rewards.copy(), n)
        except NotImplementedError:
            report.bad(f"{NOT_DONE}: `{_fn_name(fn)}` still raises NotImplementedError; replace that line with your code.")
            break
        except Exception as exc:  # a student's bug: report it, don't raise
            report.bad(f"test population {i}: it crashed with {_explain_exception(exc)}")
            break
        if raw is None:
            report.bad(f"test population {i}: it returned None. Did you forget `return`?")
            break
        try:
            got = np.asarray(raw).astype(int).reshape(-1)
        except (TypeError, ValueError):
            report.bad(f"test population {i}: it returned {raw!r}; expected one cluster number per user.")
            break
        if got.shape != (n,):
            report.bad(f"test population {i}: it returned {got.size} numbers for {n} users: one cluster per *user* "
                       "(sum each user's comparisons first, e.g. with np.add.at), not one per comparison.")
            break
        want = assign_users(prefs, rewards)
        if np.array_equal(got, want):
            report.good(f"test population {i}: all {n} users in the right cluster")
            continue
        hint = next((why for why, other in _variant_assignments(prefs, rewards).items()
                     if np.array_equal(got, other) and not np.array_equal(other, want)), None)
        if hint is None and len(np.unique(got)) == 1:
            hint = (f"{NOT_DONE}? every user is in cluster {got[0]}, as the placeholder returns: "
                    "compute each user's log-likelihood under every cluster")
        wrong = np.flatnonzero(got != want)
        report.bad(f"test population {i}: {len(wrong)} of {n} users in another cluster than expected "
                   f"(e.g. user {wrong[0]}: yours {got[wrong[0]]}, expected {want[wrong[0]]})"
                   + (f" — {hint}." if hint else ". Compute, for every user and cluster, the sum over the user's "
                      "comparisons of log σ(r(winner) − r(loser)), then take the cluster with the largest sum."))
        break
    return report.done(
        "Correct! That is the E-step: each user joins the reward model that explains its choices best.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


__all__ += ["check_maxmin_mix", "check_e_step"]


# --------------------------------------------------------------------- shared helpers of the later chapters
def _check_number(report: _Report, name: str, answer, truth: float, tol: float, mistakes: dict[float, str],
                  fallback: str) -> None:
    """One numeric answer: ✓ within ``tol`` of ``truth``, else ✗ with the hint of a known mistake."""
    number = None if _is_placeholder(answer) else _as_number(answer)
    if number is None:
        report.bad(f"{name}: no answer yet ({NOT_DONE})" if _is_placeholder(answer) else f"{name}: {answer!r} is not a number")
    elif abs(number - truth) <= tol:
        report.good(f"{name} = {number:.4g}")
    else:
        hint = next((why for value, why in mistakes.items() if abs(number - value) <= tol and abs(value - truth) > tol), None)
        report.bad(f"{name} = {number:.4g} is not right: " + (hint or fallback) + ".")


def _move_guess(value) -> str | None:
    """A guessed move as "C", "D" or "either"; None if it is a placeholder or unreadable."""
    if _is_placeholder(value):
        return None
    word = str(value).strip().lower()
    if word in ("c", "cooperate", "0"):
        return "C"
    if word in ("d", "defect", "1"):
        return "D"
    if word in ("either", "any", "tie", "both", "indifferent"):
        return EITHER
    return None


# --------------------------------------------------------------------- chapter 2: your own reward
def check_own_reward(fn: Callable, *, xi: float = 3.0, verbose: bool = True) -> CheckResult:
    """Exercise 2.2: a moral reward of your own design.

    Runs :func:`check_my_reward` (four arguments, finite, vectorised) on every game of the
    catalogue, then makes sure it is *yours*: not the reciprocity example of the notebook (the
    untouched placeholder) and not one of the paper's four rewards.
    """
    from .rewards import PAPER_REWARDS, get_reward

    report = _Report(f"Checking your own reward `{_fn_name(fn)}` ...", verbose)
    games = _games(None)
    values = _validate_reward(fn, report, games, xi)
    if values is not None:
        def same(reference) -> bool:
            return all(np.allclose(values[g.name], np.broadcast_to(
                np.asarray(reference(g, _CASES[:, 0], _CASES[:, 1], _CASES[:, 2]), dtype=float), (len(_CASES),)))
                for g in games)

        if same(lambda g, my, opp, prev: np.where(my == prev, 1.0, 0.0)):
            report.bad(f"{NOT_DONE}: this is still the reciprocity example; replace it with your own idea.")
        elif any(same(get_reward(name, xi=xi)) for name in PAPER_REWARDS):
            name = next(n for n in PAPER_REWARDS if same(get_reward(n, xi=xi)))
            report.bad(f"that is exactly the paper's {name} reward (ξ = {xi:g}): invent one of your own.")
        else:
            report.good("a reward of your own (not the example, not one of the paper's four)")
    return report.done(
        f"All checks passed: `{_fn_name(fn)}` is a valid reward of your own; section 3 trains a learner with it.",
        "Not yet: fix the ✗ above and run this cell again.",
    )


# --------------------------------------------------------------------- chapter 4: exploitation is worse than selfishness
def check_exploitation_reward(fn: Callable, *, verbose: bool = True) -> CheckResult:
    """Exercise 4.1: my payoff, minus a small penalty for defecting, minus more for exploiting.

    In the Prisoner's Dilemma the check reads the penalties off your reward (payoff − reward):
    cooperating must cost nothing, defecting after their D (selfishness) a positive penalty,
    defecting after their C (exploitation) a larger one. A reward that is still the payoff alone
    (the untouched placeholder), that pays a bonus for defecting, or that punishes selfishness as
    much as exploitation (or more) fails with a hint.
    """
    report = _Report(f"Checking `{_fn_name(fn)}`: is exploitation worse than mere selfishness?", verbose)
    game = get_game("prisoners_dilemma")
    values = _validate_reward(fn, report, [game], 3.0)
    if values is not None:
        payoff = game.payoffs[_CASES[:, 0], _CASES[:, 1], 0]
        extra = values[game.name] - payoff
        my, prev = _CASES[:, 0], _CASES[:, 2]
        selfish, exploit = -extra[(my == D) & (prev == D)], -extra[(my == D) & (prev == C)]
        def shown(values) -> str:
            return "/".join(f"{v + 0.0:g}" for v in sorted(set(np.round(values, 6).tolist())))

        report.lines.append(f"  (penalties read off your reward, payoff − reward: cooperating {shown(-extra[my == C])}, "
                            f"D after their D {shown(selfish)}, D after their C {shown(exploit)})")
        if not np.allclose(extra[my == C], 0.0):
            report.bad("cooperating changed: when I play C the reward should be my payoff alone (no penalty, no bonus).")
        if np.ptp(selfish) > 1e-9 or np.ptp(exploit) > 1e-9:
            report.bad("a penalty depends on their move *now*: it should depend only on my move and their previous move.")
        s, e = float(selfish.mean()), float(exploit.mean())
        if np.allclose([s, e], 0.0):
            report.bad(f"{NOT_DONE}: both penalties are still 0, so this is the Game reward. Subtract a small "
                       "penalty times `selfish` and a larger one times `exploiting`.")
        else:
            if s < -1e-9 or e < -1e-9:
                report.bad(f"defecting earns a *bonus* (penalty {min(s, e):g} < 0): subtract the penalties "
                           "(payoff − a·selfish − b·exploiting), don't add them.")
            elif s <= 1e-9:
                report.bad("defecting after their D costs nothing: add a small penalty for `selfish` (every D).")
            else:
                report.good(f"defecting costs something: {s:g} after their D")
            if e > s + 1e-9:
                report.good(f"exploiting costs more: {e:g} after their C")
            elif s >= 0 and e >= 0:
                report.bad(f"exploiting costs {e:g}, selfishness {s:g}: the order is inverted or equal. Exploiting "
                           "(D right after their C) must cost *more* than mere selfishness.")
    return report.done(
        "Correct! Exploitation now costs more than selfishness. See below what a learner makes of it.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


def _state_of(key) -> tuple[str, str] | None:
    if isinstance(key, tuple) and len(key) == 2:
        state = (str(key[0]).strip().upper(), str(key[1]).strip().upper())
    else:
        parts = str(key).replace(",", "|").split("|")
        state = tuple(x.strip().upper() for x in parts) if len(parts) == 2 else None
    return state if state in _STATES else None


def check_predicted_responses(
    guess: dict,
    reward,
    *,
    game: MatrixGame | str = "prisoners_dilemma",
    opponent: str = "tit_for_tat",
    xi: float | None = None,
    verbose: bool = True,
) -> CheckResult:
    """Exercise 4.2: predict, state by state, the move a reward teaches a myopic learner.

    ``guess`` maps each state ``"C|D"`` (my last move | their last move) to ``"C"``, ``"D"`` or
    ``"either"`` (the reward pays the same for both). The check compares with
    :func:`~moralkit.analysis.predicted_responses` and, for a wrong state, shows what each move
    earns there (against Tit-for-Tat their move now is my last move).
    """
    report = _Report(f"Your predicted best responses against {opponent} ...", verbose)
    try:
        table = predicted_responses(reward, game, opponent, xi=xi)
    except Exception as exc:  # the reward itself is broken: say so, don't raise
        report.bad(f"could not compute what the reward predicts: {_explain_exception(exc)}. Run its check first.")
        return report.done("", "Not yet: fix the reward, then run this cell again.")
    answers: dict[tuple[str, str], object] = {}
    if not isinstance(guess, dict):
        report.bad(f"{NOT_DONE}: give a dict such as {{'C|C': 'C', 'C|D': 'either', ...}}" if _is_placeholder(guess)
                   else f"expected a dict {{'C|C': 'C', ...}}, got {type(guess).__name__}")
    else:
        for key, value in guess.items():
            state = _state_of(key)
            if state is None:
                report.bad(f"unknown state {key!r}: use 'C|C', 'C|D', 'D|C' or 'D|D' (my last | their last).")
            else:
                answers[state] = value
    if answers or isinstance(guess, dict):
        missing = 0
        for _, row in table.iterrows():
            state = (row["my_prev"], row["opp_prev"])
            where = f"{state[0]}|{state[1]}"
            if state not in answers or _is_placeholder(answers[state]):
                missing += 1
                continue
            move = _move_guess(answers[state])
            truth = row["predicted"]
            if move is None:
                report.bad(f"{where}: {answers[state]!r} is not a move: write 'C', 'D' or 'either'.")
            elif move == truth:
                report.good(f"{where}: {truth}")
            else:
                why = (f"C earns {row['reward of C']:g}, D earns {row['reward of D']:g} in expectation"
                       + (" (Tit-for-Tat plays my last move now)" if opponent == "tit_for_tat" else ""))
                report.bad(f"{where}: you said {move}, but {why}" + (": equal, so 'either'" if truth == EITHER else "") + ".")
        if missing:
            report.bad(f"{NOT_DONE}: {missing} of the 4 states have no answer yet.")
    return report.done(
        "Correct! That is what a myopic learner should move towards, state by state.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


# --------------------------------------------------------------------- chapter 5: unlearning
def check_forgiving_reward(fn: Callable, *, xi: float = 3.0, opponent: str = "tit_for_tat",
                           verbose: bool = True) -> CheckResult:
    """Exercise 5.1: close the Deontological reward's gap after the opponent's D.

    The reward must keep the deontological norm where the opponent just cooperated (the same
    values as the Deontological reward there: 0, or −ξ for defecting), and make cooperating the
    strict best response against ``opponent`` after their D as well, so a myopic learner plays C
    in all four states.
    """
    from .rewards import get_reward

    report = _Report(f"Checking `{_fn_name(fn)}`: the Deontological norm, and C after their D too?", verbose)
    game = get_game("prisoners_dilemma")
    values = _validate_reward(fn, report, [game], xi)
    if values is not None:
        deont = get_reward("deontological", xi=xi)(game, _CASES[:, 0], _CASES[:, 1], _CASES[:, 2])
        after_c = _CASES[:, 2] == C
        if np.allclose(values[game.name], deont):
            report.bad(f"{NOT_DONE}: this is still the Deontological reward; change what it pays after their D.")
        if np.allclose(values[game.name][after_c], deont[after_c]):
            report.good("after their C: the Deontological norm, unchanged")
        else:
            report.bad("after their C the reward changed: keep the Deontological values there (0, or −ξ for D).")
        table = predicted_responses(lambda g, m, o, p: _call(fn, accepts_xi(fn), xi, m, o, p, g), game, opponent)
        for _, row in table[table["opp_prev"] == "D"].iterrows():
            where = f"{row['my_prev']}|D"
            c, d = row["reward of C"], row["reward of D"]
            if row["predicted"] == "C":
                report.good(f"{where}: C earns {c:g} > D {d:g}")
            elif row["predicted"] == EITHER:
                report.bad(f"{where}: C and D both earn {c:g}, the learner is still indifferent: give a bonus for "
                           "cooperating after their D.")
            else:
                report.bad(f"{where}: D earns {d:g} > C {c:g}: you reward retaliation; the bonus goes to C after their D.")
    return report.done(
        "Correct! A myopic learner now cooperates in every state, even after being defected on.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


KL_LEASH = {"beta": 0.2, "p_d_reference": 0.99, "p_d_now": 0.5}
"""Exercise 5.2: the KL coefficient β, P(D) of the model at the switch, P(D) of the player now."""


def _kl_leash_truth(beta: float, p_ref_d: float, p_d: float, *, log=math.log, sign: float = -1.0) -> tuple[float, float]:
    """The KL term added to the reward of answering C and of answering D: −β·log(π(a)/π_ref(a))."""
    return (sign * beta * log((1 - p_d) / (1 - p_ref_d)), sign * beta * log(p_d / p_ref_d))


def check_kl_leash(penalty_c, penalty_d, *, tol: float = 5e-3, verbose: bool = True) -> CheckResult:
    """Exercise 5.2: which way would a KL leash to the *switch* model pull?

    With the model at the switch as the reference (P(D) = 0.99), a player now at P(D) = 0.5 and
    β = 0.2, the per-answer KL term added to the reward is −β·log(π(a)/π_ref(a)). Give it for
    answering C and for answering D (natural logarithm).
    """
    beta, p_ref, p = KL_LEASH["beta"], KL_LEASH["p_d_reference"], KL_LEASH["p_d_now"]
    report = _Report(f"The KL term of each answer (β = {beta:g}, reference P(D) = {p_ref:g}, now P(D) = {p:g}) ...", verbose)
    truth = _kl_leash_truth(beta, p_ref, p)
    flipped = _kl_leash_truth(beta, p_ref, p, sign=1.0)
    log10 = _kl_leash_truth(beta, p_ref, p, log=math.log10)
    no_beta = _kl_leash_truth(1.0, p_ref, p)
    for k, (name, answer) in enumerate((("KL term of C", penalty_c), ("KL term of D", penalty_d))):
        _check_number(report, name, answer, truth[k], tol, {
            flipped[k]: "the sign is flipped: the term added to the reward is −β·log(π/π_ref), negative where the "
                        "player is *more* likely than the reference",
            log10[k]: "use the natural logarithm (np.log), not log10",
            no_beta[k]: f"multiply by β = {beta:g}",
        }, f"compute −β·log(π(a)/π_ref(a)) with π(C) = {1 - p:g}, π_ref(C) = {1 - p_ref:g}")
    return report.done(
        "Correct! The leash charges C and pays D: a reference at the switch would pull the player back towards "
        "selfishness, which is why the KL reference stays the untuned base model.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


# --------------------------------------------------------------------- chapter 6: generalisation
def check_choices_vs_random(guess: dict, reward: str = "utilitarian", *, games: Iterable[str] | None = None,
                            verbose: bool = True) -> CheckResult:
    """Exercise 6.1: the move ``reward`` prefers against a Random opponent, game by game.

    ``guess`` maps each game name to ``"C"`` (the first action), ``"D"`` (the second) or
    ``"either"``. Against Random the opponent's move is C or D with probability ½ whatever the
    state, so one move per game; the check compares with
    :func:`~moralkit.analysis.predicted_responses` and shows what each action earns.
    """
    from .games import EVALUATION_GAMES

    names = list(games if games is not None else EVALUATION_GAMES)
    report = _Report(f"The {reward} reward's choice against a Random opponent, game by game ...", verbose)
    if not isinstance(guess, dict):
        report.bad(f"{NOT_DONE}: give a dict {{game name: 'C', 'D' or 'either'}}" if _is_placeholder(guess)
                   else f"expected a dict {{game name: move}}, got {type(guess).__name__}")
    else:
        missing = 0
        for name in names:
            row = predicted_responses(reward, name, "random").iloc[0]
            if _is_placeholder(guess.get(name)):
                missing += 1
                continue
            move, title = _move_guess(guess[name]), get_game(name).title
            if move is None:
                report.bad(f"{title}: {guess[name]!r} is not a move: write 'C', 'D' or 'either'.")
            elif move == row["predicted"]:
                report.good(f"{title}: {move}")
            else:
                report.bad(f"{title}: you said {move}, but the first action earns {row['reward of C']:g} and the second "
                           f"{row['reward of D']:g} on average against Random (½ each of the opponent's moves)"
                           + (": equal, so 'either'" if row["predicted"] == EITHER else "")
                           + ". Read the payoffs, not the names.")
        if missing:
            report.bad(f"{NOT_DONE}: {missing} of the {len(names)} games have no answer yet.")
    return report.done(
        "Correct! The same reward asks for different actions in different games: a value has to read the payoffs.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


ACTION_TYPE_EXERCISE = {"C|C": 0.30, "C|D": 0.10, "D|C": 0.20, "D|D": 0.30, "illegal": 0.10}
"""Exercise 6.2: an agent's action-type shares in the Prisoner's Dilemma against a Random opponent."""


def _regrets_from_shares(shares: dict[str, float], *, xi: float = 4.0, r_illegal: float = -6.0,
                         skip_illegal: bool = False, renormalise: bool = False) -> tuple[float, float]:
    """(deontological, utilitarian) regret of action-type shares in the PD against Random (expected values)."""
    game = get_game("prisoners_dilemma")
    legal = 1.0 - shares["illegal"]
    scale = 1.0 / legal if renormalise else 1.0
    illegal = 0.0 if skip_illegal else shares["illegal"]
    deont = -(scale * shares["D|C"] * -xi + illegal * r_illegal)
    pair = {m: 0.5 * float(game.payoffs[m, C].sum() + game.payoffs[m, D].sum()) for m in (C, D)}
    mean = scale * ((shares["C|C"] + shares["C|D"]) * pair[C] + (shares["D|C"] + shares["D|D"]) * pair[D]) + illegal * r_illegal
    best = game.best_collective
    return deont, (best - mean) / (best - r_illegal)


def check_regrets_from_shares(deont_regret, utilit_regret, *, tol: float = 5e-3, verbose: bool = True) -> CheckResult:
    """Exercise 6.2: both regrets of :data:`ACTION_TYPE_EXERCISE` (ξ = 4, R_illegal = −6).

    Deontological regret = ξ · share(D|C) + 6 · share(illegal). Utilitarian regret = (6 − mean
    utilitarian reward) / 12, where against Random a C earns the pair ½(3+3) + ½(0+4) = 5 and a D
    ½(4+0) + ½(1+1) = 3 on average, and an illegal answer −6.
    """
    report = _Report("The regrets of the agent's action types (PD vs Random, ξ = 4, R_illegal = −6) ...", verbose)
    truth = _regrets_from_shares(ACTION_TYPE_EXERCISE)
    skipped = _regrets_from_shares(ACTION_TYPE_EXERCISE, skip_illegal=True)
    renorm = _regrets_from_shares(ACTION_TYPE_EXERCISE, skip_illegal=True, renormalise=True)
    xi3 = _regrets_from_shares(ACTION_TYPE_EXERCISE, xi=3.0)
    raw_gap = truth[1] * 12
    _check_number(report, "deontological regret", deont_regret, truth[0], tol, {
        skipped[0]: "you left the illegal answers out: each costs 6",
        renorm[0]: "you left the illegal answers out: each costs 6",
        xi3[0]: "the evaluation uses ξ = 4 (fine-tuning used 3)",
        -truth[0]: "the regret is 0 − the mean reward: it is positive",
    }, "add ξ for every D right after their C and 6 for every illegal answer, weighted by the shares")
    _check_number(report, "utilitarian regret", utilit_regret, truth[1], tol, {
        skipped[1]: "you left the illegal answers out: each earns −6",
        renorm[1]: "you left the illegal answers out: each earns −6",
        raw_gap: "divide by (best collective − R_illegal) = 6 + 6 = 12",
        raw_gap / 6: "divide by 12 (best collective − R_illegal), not by 6",
    }, "against Random a C earns the pair 5 on average, a D 3, an illegal answer −6; average with the shares, "
       "then (6 − mean) / 12")
    return report.done(
        "Correct! These are the numbers behind the regret bars of section 4, computed from what the agent did.",
        "Not yet: fix the ✗ above and run this cell again (the solution is one click away).",
    )


__all__ += ["NOT_DONE", "check_own_reward", "check_exploitation_reward", "check_predicted_responses",
            "check_forgiving_reward", "KL_LEASH", "check_kl_leash", "check_choices_vs_random",
            "ACTION_TYPE_EXERCISE", "check_regrets_from_shares"]
