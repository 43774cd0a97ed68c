"""Plugins import only the host's documented public API (``governor_core.plugin_api``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from governor_core import plugin_api

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SOURCES = sorted((ROOT / "plugins").glob("*/src/**/*.py"))
ALLOWED = {"governor_core": {"hookimpl"}, "governor_core.plugin_api": set(plugin_api.__all__)}


def host_imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every import of ``governor_core`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("governor_core"):
            found.extend((node.module or "", alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.extend((alias.name, "*") for alias in node.names
                         if alias.name.startswith("governor_core"))
    return found


def test_there_are_plugin_sources() -> None:
    assert len(PLUGIN_SOURCES) >= 4


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path: Path) -> None:
    private = [f"{module}.{name}" for module, name in host_imports(path)
               if name not in ALLOWED.get(module, set())]
    assert not private, f"{path.name} imports host internals: {', '.join(private)}"


def test_every_public_name_exists() -> None:
    for name in plugin_api.__all__:
        assert getattr(plugin_api, name) is not None
