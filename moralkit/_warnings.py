"""Third-party warnings a student cannot act on, kept out of notebooks and command output: one list.

moralkit's own code uses the current APIs (e.g. :mod:`moralkit.llm.compat` for transformers'
key/value cache). What remains are deprecation notices that one library raises about how
*another* library calls it -- e.g. peft reading transformers' old ``is_gradient_checkpointing``
property. They say nothing about the workbook and they break progress bars, so
:func:`quiet_third_party` ignores exactly these messages (by category and text), and nothing
else: moralkit's own warnings and any new third-party warning still show.

It is called when the heavy modules load (:mod:`moralkit.llm`), by :func:`moralkit.workbook.setup`
(every notebook) and by the ``moralkit`` command.
"""

from __future__ import annotations

import warnings

__all__ = ["THIRD_PARTY_NOISE", "quiet_third_party"]

THIRD_PARTY_NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    # (category, message regex, who raises it about whom)
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated",
     "peft's get_peft_model asks transformers (5.x) for the old property name"),
)
"""The warnings :func:`quiet_third_party` ignores: category, a regex matching the message's start, and why."""


def quiet_third_party() -> None:
    """Ignore the warnings in :data:`THIRD_PARTY_NOISE` (idempotent; other warnings are untouched)."""
    for category, message, _why in THIRD_PARTY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
