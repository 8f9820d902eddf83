"""The examples in moralkit's docstrings run, and say what they show (``make test`` runs them).

Equivalent to ``python -m pytest --doctest-modules moralkit`` (same option flags: ELLIPSIS), one
test per module; examples that need a real model are marked ``# doctest: +SKIP``.
"""

import doctest
import importlib
import pkgutil

import pytest

import moralkit

MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(moralkit.__path__, prefix="moralkit.") if not name.endswith("__main__")
)


def examples(module):
    return [t for t in doctest.DocTestFinder().find(module, module.__name__) if t.examples]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in examples(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} example(s) in {name} failed (output above)"


def test_the_library_has_examples_where_a_reader_looks_first():
    counted = {name: sum(len(t.examples) for t in examples(importlib.import_module(name))) for name in MODULES}
    for name in ("moralkit.games", "moralkit.rewards", "moralkit.analysis", "moralkit.storage", "moralkit.training",
                 "moralkit.evaluate", "moralkit.profiles"):
        assert counted[name] > 0, f"{name} lost its docstring examples"
    assert sum(counted.values()) >= 60
