"""Third-party noise is filtered by exact message; moralkit's own warnings and new ones still show."""

import warnings

import pytest

from moralkit._warnings import THIRD_PARTY_NOISE, quiet_third_party


def _shown(category, message, module="peft.peft_model"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_third_party()
        warnings.warn_explicit(message, category, filename=f"{module.replace('.', '/')}.py", lineno=1, module=module)
    return [str(w.message) for w in caught]


def test_the_listed_third_party_notices_are_hidden():
    assert THIRD_PARTY_NOISE
    for category, pattern, why in THIRD_PARTY_NOISE:
        message = pattern.replace("\\", "") + " and will be removed in v6."
        assert _shown(category, message) == [], why


@pytest.mark.parametrize("category, message, module", [
    (FutureWarning, "moralkit's own notice: this reward is deprecated", "moralkit.rewards"),
    (FutureWarning, "`something_else` is deprecated and will be removed", "transformers.modeling_utils"),
    (UserWarning, "`is_gradient_checkpointing` is deprecated", "peft.peft_model"),  # same text, other category
])
def test_everything_else_still_shows(category, message, module):
    assert _shown(category, message, module) == [message]


def test_calling_it_twice_adds_no_duplicate_filters():
    with warnings.catch_warnings():
        quiet_third_party()
        before = len(warnings.filters)
        quiet_third_party()
        assert len(warnings.filters) == before
