"""The workbook's chapters and how long each takes, per run profile: the one table of timings.

The Colab set-up cell (:func:`moralkit.colab.prepare`) and the headless runner
(:func:`moralkit.workbook.run_workbook`) read their "this chapter takes about ..." and "about ...
left" from :data:`CHAPTERS`, so no notebook hard-codes a duration.

Where the numbers come from:

* ``cpu``: measured on an idle 2-core machine with the embedded SmolLM2-135M (the README's
  chapter table; chapters 4-6 are dominated by their 11-15 minute training runs).
* ``smoke``: measured on the same 2-core machine while other jobs shared it (one torch thread;
  papermill, kernel start-up included), so rather an upper bound.
* ``gpu``: **estimates** for Colab's T4, not measurements (:attr:`Chapter.measured` says which is
  which). The ``gpu`` profile trains the ``cpu`` profile's runs (40 updates of 8 games x 5 rounds);
  from the H100 measurements (1.35 s per update, host-bound) and a T4's float32 arithmetic we
  expect ~3.5-4 s per update on a T4, ~2.5 min per run (``docs/performance.md`` shows the sums).
* ``paper``: **estimates** from the H100 measurements: 1000 updates of ~1.35 s per run.
  Replace estimates with measured figures (and add the profile to ``measured``) when they exist.

>>> minutes, measured = chapter_minutes("04_ppo_finetuning", "cpu")
>>> minutes, measured
(45.0, True)
>>> print(describe_duration("04_ppo_finetuning", "gpu"))
about 11 min (an estimate for Colab's T4, not measured yet)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

__all__ = ["Chapter", "CHAPTERS", "chapter", "chapter_minutes", "describe_duration", "format_minutes", "remaining_minutes"]


@dataclass(frozen=True)
class Chapter:
    """One notebook of the workbook and its duration in each run profile."""

    stem: str
    """The notebook's file name without ``.ipynb`` (``"03_llm_players"``)."""
    title: str
    minutes: Mapping[str, float]
    """Minutes to run the whole notebook, per profile name (``smoke``, ``cpu``, ``gpu``, ``paper``)."""
    measured: frozenset[str] = field(default_factory=frozenset)
    """The profiles whose minutes were measured; the others are estimates."""
    note: str = ""
    """What the duration does not include (e.g. training runs another chapter left missing)."""

    @property
    def number(self) -> int:
        """The chapter's number (``3`` for ``03_llm_players``)."""
        return int(self.stem.split("_", 1)[0])


def _chapter(stem: str, title: str, smoke: float, cpu: float, gpu: float, paper: float, note: str = "") -> Chapter:
    return Chapter(stem, title, MappingProxyType({"smoke": smoke, "cpu": cpu, "gpu": gpu, "paper": paper}),
                   frozenset({"smoke", "cpu"}), note)


CHAPTERS: Mapping[str, Chapter] = MappingProxyType({c.stem: c for c in (
    #         notebook                      title                        smoke  cpu  gpu (T4, estimate)  paper (estimate)
    _chapter("01_payoff_matrices", "Payoff matrices", 0.2, 1, 1, 1),
    _chapter("02_moral_rewards", "Moral rewards", 1, 2, 3, 3),
    _chapter("03_llm_players", "The LLM as a player", 3, 5, 3, 3),
    _chapter("04_ppo_finetuning", "Fine-tuning an LLM with moral rewards", 6.5, 45, 11, 100),
    _chapter("05_unlearning_selfishness", "Unlearning selfishness", 5.5, 60, 13, 150),
    _chapter("06_generalisation", "Did they learn a value or a token?", 7, 25, 5, 10,
             note="plus training any agent chapters 4 and 5 did not leave in the runs folder, and section 10's "
                  "label-pool run (one more training run)"),
    _chapter("07_pluralistic_alignment", "Pluralistic alignment", 5.5, 30, 6, 50),
)})
"""Every chapter in order, by notebook stem. ``gpu`` minutes are estimates (see the module's docstring)."""


def chapter(stem_or_number: str | int) -> Chapter:
    """The chapter of a notebook stem (``"03_llm_players"``), a path or a number (``3``)."""
    if isinstance(stem_or_number, int):
        key = f"{stem_or_number:02d}_"
    else:
        key = re.sub(r"\.ipynb$", "", str(stem_or_number).replace("\\", "/").rsplit("/", 1)[-1])
    for stem, ch in CHAPTERS.items():
        if stem == key or (key.endswith("_") and stem.startswith(key)):
            return ch
    raise KeyError(f"No chapter {stem_or_number!r}. Chapters: {', '.join(CHAPTERS)}.")


def chapter_minutes(stem: str | int, profile: str) -> tuple[float, bool]:
    """``(minutes, measured)`` for running a chapter in a profile (``auto`` is not a profile: resolve it first)."""
    ch = chapter(stem)
    if profile not in ch.minutes:
        raise KeyError(f"No timing for profile {profile!r}; profiles with timings: {', '.join(ch.minutes)}.")
    return float(ch.minutes[profile]), profile in ch.measured


def format_minutes(minutes: float) -> str:
    """A rough duration for people: ``'under a minute'``, ``'about 5 min'``, ``'about 3 h'``."""
    if minutes < 1:
        return "under a minute"
    if minutes < 90:
        return f"about {round(minutes)} min"
    hours = minutes / 60
    return f"about {hours:.0f} h" if hours >= 2.75 or abs(hours - round(hours)) < 0.25 else f"about {hours:.1f} h"


def describe_duration(stem: str | int, profile: str) -> str:
    """How long a chapter takes in a profile, in words, saying when the figure is only an estimate."""
    minutes, measured = chapter_minutes(stem, profile)
    text = format_minutes(minutes)
    if not measured:
        text += {"gpu": " (an estimate for Colab's T4, not measured yet)",
                 "paper": " (an estimate from H100 measurements)"}.get(profile, " (an estimate)")
    note = chapter(stem).note
    return f"{text}, {note}" if note else text


def remaining_minutes(stems: Iterable[str], profile: str) -> float:
    """Total minutes of the given chapters in a profile (chapters without a timing count as 0)."""
    total = 0.0
    for stem in stems:
        try:
            total += chapter_minutes(stem, profile)[0]
        except KeyError:
            continue
    return total
