"""The host's public API for plugins: everything a plugin may import besides ``hookimpl``.

A plugin distribution imports ``from governor_core import hookimpl`` and, for the rest,
``from governor_core.plugin_api import …`` only. The names below are kept stable across
releases of the host (a change to one is a breaking change, named in the release notes);
every other module of ``governor_core`` may change without notice. A test checks that the
bundled plugins import nothing else.

* Contract types: :class:`Plan` (a governor plan), :class:`AllocationTick` and
  :class:`AllocationTarget` (an allocation cycle), :class:`Reads` and
  :class:`SymbolFields` (see :mod:`governor_core.hookspecs`).
* Configuration: :func:`setting` (a config dataclass field read from a variable, with its
  default and bounds), :func:`read_settings` (the config from the environment),
  :class:`EnvReader` (typed, validated reads) and :class:`ConfigError` (raise it from
  ``on_configure`` naming the variable).
* Efficiency data (SPEC 3.3 rules): :class:`EfficiencyReader`, :class:`EfficiencyReading`,
  :data:`EFFICIENCY_REASONS`.
* Metrics: :class:`SymbolSeries` (per-symbol gauges and counters at O(1) per tick).
* Formats of amounts and values, as on the host's own outputs: :func:`fmt_usd`,
  :func:`fmt_usd_column`, :func:`fmt_factor`, :func:`fmt_ts`, :func:`fmt4`.
* Redis: :class:`CommandStream` (a pipeline sent in chunks, one round trip),
  :func:`execute_commands`, and the RESP templates of :mod:`governor_core.wire`
  (:class:`CommandTemplate`, :class:`RowTemplate`, :class:`Slot`, :class:`Group`,
  :func:`field_pairs`, :class:`Packed`) for writes of 10⁴ entries per tick.
* Key names: the SPEC 2 schema (:mod:`governor_core.keys`), e.g. :data:`PROPOSAL_STREAM`.
"""

from __future__ import annotations

from governor_core import hookimpl
from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.config import ConfigError, EnvReader, read_settings, setting
from governor_core.efficiency import REASONS as EFFICIENCY_REASONS
from governor_core.efficiency import EfficiencyReader, EfficiencyReading
from governor_core.formats import fmt4, fmt_factor, fmt_ts, fmt_usd, fmt_usd_column
from governor_core.hookspecs import Reads, SymbolFields
from governor_core.keys import (
    DECISION_STREAM,
    EFFICIENCY_PREFIX,
    PROPOSAL_PREFIX,
    PROPOSAL_STREAM,
    TARGET_PREFIX,
)
from governor_core.metrics import SymbolSeries
from governor_core.plans import Plan
from governor_core.redis_io import CommandStream, execute_commands
from governor_core.templates import CommandTemplate, Group, RowTemplate, Slot, field_pairs
from governor_core.wire import Packed

__all__ = [
    "DECISION_STREAM",
    "EFFICIENCY_PREFIX",
    "EFFICIENCY_REASONS",
    "PROPOSAL_PREFIX",
    "PROPOSAL_STREAM",
    "TARGET_PREFIX",
    "AllocationTarget",
    "AllocationTick",
    "CommandStream",
    "CommandTemplate",
    "ConfigError",
    "EfficiencyReader",
    "EfficiencyReading",
    "EnvReader",
    "Group",
    "Packed",
    "Plan",
    "Reads",
    "RowTemplate",
    "Slot",
    "SymbolFields",
    "SymbolSeries",
    "execute_commands",
    "field_pairs",
    "fmt4",
    "fmt_factor",
    "fmt_ts",
    "fmt_usd",
    "fmt_usd_column",
    "hookimpl",
    "read_settings",
    "setting",
]
