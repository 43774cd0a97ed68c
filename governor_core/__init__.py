"""Quantum Governor: the host package.

Plugins start with ``from governor_core import hookimpl``.
"""

from __future__ import annotations

import pluggy

from governor_core.hookspecs import PROJECT

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["__version__", "hookimpl"]
