"""The plugin contract of both hosts (pluggy project ``quantum_governor``).

Every hook is *advisory*: the host calls each implementation on its own, so a plugin that
raises is logged with its name, counted in ``governor_plugin_errors_total{plugin,hook}`` and
skipped, and every other plugin and the host's own work go on. Implementations may accept
any subset of a spec's arguments (pluggy passes only the names they ask for), so a spec can
grow without breaking plugins.

Plugins never write the host's outputs directly: a governor plugin returns permit fields, an
allocation plugin writes only its own keys and streams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import redis
    from prometheus_client import CollectorRegistry

    from governor_core.allocation.model import AllocationTick
    from governor_core.plans import Plan

PROJECT = "quantum_governor"

hookspec = pluggy.HookspecMarker(PROJECT)


class SymbolFields(dict):  # type: ignore[type-arg]
    """Permit fields per symbol (``symbol`` → fields), returned by ``on_permit_batch`` of a
    plugin whose fields depend on the plan's symbol only.

    The host then adds a symbol's fields to every plan of that symbol in the batch (none for
    a symbol it does not name) and does not call this plugin's ``on_issue_permit`` for the
    batch: a lookup per plan instead of a call. It is a plain ``dict``, so the plugin's own
    ``on_issue_permit`` can still look the plan's symbol up in it (for direct callers).
    """


@hookspec
def on_configure(host: str, env: Mapping[str, str], registry: CollectorRegistry) -> None:
    """Read and validate the plugin's configuration; create its metrics.

    Called once when a host starts, before any other hook of the plugin.

    :param host: ``"governor"`` or ``"allocation"``: which host is starting. A plugin that
        has nothing to do on this host simply returns.
    :param env: the process environment. Read it here, once, into a frozen config.
    :param registry: the host's Prometheus registry. Create metrics here (not at import),
        so a blocked or disabled plugin exports none.
    :return: nothing.

    Raise (preferably :class:`governor_core.config.ConfigError`, whose message names the
    variable) to report an invalid configuration: the host then disables this plugin for its
    whole life, logs the message loudly, counts it, and runs on without it. Do not connect
    to Redis or start threads here.
    """


@hookspec
def permit_fields() -> Sequence[str]:
    """Name every permit field this plugin may add.

    Called once, after ``on_configure``. The host writes only declared fields, refuses any
    other (and any core field of SPEC 3.2) with a log line and a count in
    ``governor_plugin_fields_refused_total{plugin}``, and ``quantum-governor explain`` uses
    the declaration to show each plugin's fields together.

    :return: field names, in the order ``explain`` should show them.
    """


@hookspec
def on_permit_batch(plans: Sequence[Plan], redis: redis.Redis, now: float) -> Any:
    """Prepare for a batch of plans, reading what the plugin needs in one round trip.

    Called once per batch of valid plans, before ``on_issue_permit`` is called for each.

    :param plans: the batch's validated plans, in stream order (may repeat a symbol).
    :param redis: a client with decoded (``str``) responses. Use one pipeline for the whole
        batch; do not write to Redis here.
    :param now: the batch's clock time (Unix seconds); use it instead of the system clock.
    :return: any object; it is passed back unchanged as ``batch`` to this plugin's
        ``on_issue_permit`` calls for the batch. A :class:`SymbolFields` instead gives every
        plan of a symbol that symbol's fields, and ``on_issue_permit`` is not called. If
        this hook raises, the host counts the error and issues the batch's permits without
        this plugin's fields.

    A Redis error should be handled inside the plugin (recorded as its reason, e.g.
    ``redis_error``) rather than raised: a plugin must never delay a permit.
    """


@hookspec
def on_issue_permit(plan: Plan, permit: Mapping[str, str], batch: Any,
                    now: float) -> Mapping[str, str] | None:
    """Add fields to one permit.

    Called for every plan of the batch, after the host's gates have decided.

    :param plan: the validated plan.
    :param permit: the core permit fields (read-only view; all values are strings).
    :param batch: what this plugin's ``on_permit_batch`` returned for the batch (``None`` if
        it does not implement it).
    :param now: the batch's clock time.
    :return: new permit fields (``str`` → ``str``), or ``None`` for none. Only fields named
        by ``permit_fields`` are written.

    A plugin cannot change the decision: core fields are refused and counted. Do no Redis
    I/O here (read in ``on_permit_batch``): this runs once per plan on the hot path.
    """


@hookspec
def on_allocation_tick(tick: AllocationTick, redis: redis.Redis, now: float) -> None:
    """React to a completed allocation cycle.

    Called after the allocation host has computed a cycle's targets and sent its writes
    (decision entries, and live targets in ``enforce`` mode), in both modes. Redis may
    still be applying those writes while the hook runs, so a plugin that reads the decision
    stream or the live targets may see only part of the tick (that overlap is what keeps a
    10⁴-symbol tick fast). The host checks its write replies after every plugin returns.

    :param tick: the whole cycle: mode, time, equity, and every target with its factors.
    :param redis: a client with decoded responses. Read with one pipeline and write with
        one pipeline per tick, whatever the number of symbols.
    :param now: the cycle's clock time.
    :return: nothing.

    A plugin must never write the live targets ``quantum:allocation:target:{symbol}`` nor
    the decision stream: those belong to the host. Throttling, if the plugin wants any, is
    the plugin's own business.
    """
