"""Every hookspec is documented and tested (like datasette's test_plugin_hooks_have_tests)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from governor_core import hookspecs
from governor_core.plugins import HOOK_NAMES

TESTS = Path(__file__).resolve().parent
#: The host's tests and each plugin distribution's own (``plugins/*/tests``).
TEST_DIRS = [TESTS, *sorted(TESTS.parent.glob("plugins/*/tests"))]


def hookspec_names() -> list[str]:
    return sorted(name for name, value in vars(hookspecs).items()
                  if inspect.isfunction(value)
                  and hasattr(value, f"{hookspecs.PROJECT}_spec"))


def test_specs_are_found() -> None:
    names = hookspec_names()
    assert {"on_configure", "permit_fields", "on_permit_batch", "on_issue_permit",
            "on_allocation_tick"} <= set(names)
    assert set(names) == set(HOOK_NAMES)


@pytest.mark.parametrize("name", hookspec_names())
def test_hookspec_is_documented(name: str) -> None:
    spec = getattr(hookspecs, name)
    doc = inspect.getdoc(spec) or ""
    assert doc, f"{name} has no docstring"
    assert ":return" in doc, f"{name}: document the return value with :return:"
    for param in inspect.signature(spec).parameters:
        assert re.search(rf":param {param}:", doc), f"{name}: no ':param {param}:' line"


@pytest.mark.parametrize("name", hookspec_names())
def test_hookspec_has_a_test(name: str) -> None:
    this = Path(__file__).resolve()
    users = [path.name for tests in TEST_DIRS for path in tests.glob("test_*.py")
             if path != this and re.search(rf"\b{name}\b", path.read_text())]
    assert users, f"no test file calls or implements the hook {name}"
