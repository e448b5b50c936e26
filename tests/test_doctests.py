"""Every docstring example of spyglass runs and shows what it says it shows.

The modules are imported by their package names and their docstrings handed to
:class:`doctest.DocTestFinder`, rather than collected by ``pytest --doctest-modules``:
under ``--import-mode=importlib`` pytest executes each source file a second time, as a
copy beside the package's own module, and the copy's ``@register`` decorators then meet
the classes the package registered on its first import ("already registered"). Imported
normally, the examples run against the very objects a user imports, once each.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import spyglass

# Flags the examples rely on: "..." in an expected output elides a long value.
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def package_modules() -> list[ModuleType]:
    """spyglass and every module under it, imported by name (``__main__`` modules excluded)."""
    names = [spyglass.__name__]
    for info in pkgutil.walk_packages(spyglass.__path__, prefix=f"{spyglass.__name__}."):
        if not info.name.endswith(".__main__"):  # running it would start the command line
            names.append(info.name)
    return [importlib.import_module(name) for name in names]


def docstring_examples() -> list[doctest.DocTest]:
    """One doctest per docstring with an example, defined in the module that holds it."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [test for module in package_modules() for test in finder.find(module) if test.examples]
    return sorted(tests, key=lambda test: test.name)


EXAMPLES = docstring_examples()


def test_the_package_has_examples() -> None:
    # A finder that silently found nothing (a renamed package, a broken walk) must not pass.
    assert len(EXAMPLES) >= 40
    assert "spyglass.attributions.saliency.Saliency" in {test.name for test in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=[test.name for test in EXAMPLES])
def test_docstring_example(example: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    report: list[str] = []
    result = runner.run(example, out=report.append)
    if result.failed:
        pytest.fail(f"{result.failed} of {result.attempted} examples failed:\n" + "".join(report), False)
