"""The docstring examples of every adamdist module run, as `pytest --doctest-modules adamdist` would.

One test per module that has examples (a module whose examples fail names itself); a test
also checks that the modules are found at all, so that this file cannot pass by finding none.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import adamdist


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(adamdist.__path__, prefix="adamdist."))


def _with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        if any(t.examples for t in finder.find(module, name)):
            found.append(name)
    return found


MODULES = _with_examples()


def test_the_examples_are_found():
    assert {"adamdist.theory", "adamdist.exact", "adamdist.capture", "adamdist.verdict"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"
