"""The plugin contract of both hosts (pluggy project ``quantum_governor``).

Every hook is *advisory*: the host calls each implementation on its own, so a plugin that
raises is logged with its name, counted in ``governor_plugin_errors_total{plugin,hook}`` and
skipped, and every other plugin and the host's own work go on. Implementations may accept
any subset of a spec's arguments (pluggy passes only the names they ask for), so a spec can
grow without breaking plugins.

Plugins never write the host's outputs directly: a governor plugin returns permit fields, an
allocation plugin writes only its own keys and streams.

What every plugin may rely on, and must keep to:

* **Calls.** The host (:class:`governor_core.plugins.PluginHost`) calls each implementation
  on its own, never through pluggy's ``hook.name(...)`` chain; so hook wrappers
  (``wrapper=True``, ``hookwrapper=True``) have nothing to wrap and are refused when the
  plugin is registered (the plugin is disabled with that reason).
* **Returned values are the host's to remember.** For speed the host remembers, by the
  object's identity, what it made of a returned value: the encoding of each command tuple
  ``read_commands`` returns (between batches, while it holds the tuple), and the check and
  encoding of each mapping ``on_issue_permit`` returns or :class:`SymbolFields` holds
  (between batches too, while it holds the mapping). Return the same objects again when
  nothing changed (that is what makes a plugin cheap), and never mutate a returned mapping
  afterwards: return a new one.
* **The configuration snapshot.** A plugin that keeps the frozen config dataclass it read
  in ``on_configure`` (fields declared with :func:`governor_core.plugin_api.setting`) as
  its ``config`` attribute, ``None`` on a host where it does nothing, has those settings
  recorded in the host's configuration snapshot and ``config_id`` (SPEC 8,
  :mod:`governor_core.snapshot`). The allocation host's ``config_id`` reaches plugins as
  :attr:`AllocationTick.config_id <governor_core.allocation.model.AllocationTick>`:
  record it beside what you write for the tick.
* **Imports.** A plugin imports from ``governor_core`` (``hookimpl``) and
  :mod:`governor_core.plugin_api` only; everything else of the host may change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Reads:
    """The replies to what a plugin's ``read_commands`` asked for, handed back as ``reads``.

    ``symbols`` are the symbols the plugin was asked about (the commands were built for
    them); ``replies`` hold one reply per command, in order. A command Redis refused has its
    :class:`redis.ResponseError` in place of a reply; the others are as a client with
    decoded responses returns them.
    """

    symbols: tuple[str, ...]
    replies: list[Any]


#: The commands a plugin may ask its host to send in the host's read round trip.
READ_COMMANDS = frozenset({
    "EXISTS", "GET", "HEXISTS", "HGET", "HGETALL", "HLEN", "HMGET", "LINDEX", "LLEN",
    "LRANGE", "MGET", "PTTL", "SCARD", "SISMEMBER", "SMEMBERS", "STRLEN", "TTL", "TYPE",
    "XLEN", "XRANGE", "XREVRANGE", "ZCARD", "ZRANGE", "ZRANGEBYSCORE", "ZSCORE",
})


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
def read_commands(host: str, symbols: Sequence[str], now: float
                  ) -> Sequence[tuple[str, ...]] | None:
    """Name the Redis reads this plugin needs for a governor batch or an allocation cycle,
    for the host to send in its own read round trip: the plugin then costs no round trip
    of its own to read.

    Called once per batch (governor, before the gates are read) or once per cycle
    (allocation, once the budgeted symbols are listed); the replies come back as ``reads``
    (:class:`Reads`) to the same plugin's ``on_permit_batch`` or ``on_allocation_tick``.

    :param host: ``"governor"`` or ``"allocation"``.
    :param symbols: the symbols to read for, sorted and distinct: the batch's valid plans'
        symbols (governor), or every symbol with a budget key (allocation: a superset of the
        cycle's targets, which are known only after this read).
    :param now: the batch's or cycle's clock time.
    :return: commands as tuples of strings (e.g. ``("HMGET", key, field, ...)``), or
        ``None`` to read nothing this time (e.g. a throttled plugin that is not due).

    Only the read commands of :data:`READ_COMMANDS` are accepted: a plugin that returns
    anything else (or raises) is logged and counted, its reads are dropped for this batch or
    cycle and its next hook gets ``reads=None``; the host's own reads are never affected.
    """


@hookspec
def on_permit_batch(plans: Sequence[Plan], redis: redis.Redis, now: float,
                    reads: Reads | None) -> Any:
    """Prepare for a batch of plans, reading what the plugin needs in one round trip.

    Called once per batch of valid plans, before ``on_issue_permit`` is called for each.

    :param plans: the batch's validated plans, in stream order (may repeat a symbol).
    :param redis: a client with decoded (``str``) responses, for reads ``read_commands``
        could not name: one pipeline for the whole batch; do not write to Redis here.
    :param now: the batch's clock time (Unix seconds); use it instead of the system clock.
    :param reads: the replies to this plugin's ``read_commands`` for the batch, read in the
        host's round trip; ``None`` if it asked for none (or its request was refused): then
        read with ``redis`` if needed.
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
def on_allocation_tick(tick: AllocationTick, redis: redis.Redis, now: float,
                       reads: Reads | None) -> None:
    """React to a completed allocation cycle.

    Called after the allocation host has computed a cycle's targets and sent its writes
    (decision entries, and live targets in ``enforce`` mode), in both modes. Redis may
    still be applying those writes while the hook runs, so a plugin that reads the decision
    stream or the live targets may see only part of the tick (that overlap is what keeps a
    10⁴-symbol tick fast). The host checks its write replies after every plugin returns.

    :param tick: the whole cycle: mode, time, equity, and every target with its factors.
    :param redis: a client with decoded responses. Write with one pipeline per tick,
        whatever the number of symbols; read through ``read_commands`` (or, failing that,
        with one pipeline).
    :param now: the cycle's clock time.
    :param reads: the replies to this plugin's ``read_commands`` for the cycle, read in the
        host's second read round trip; ``None`` if it asked for none (or its request was
        refused).
    :return: nothing.

    A plugin must never write the live targets ``quantum:allocation:target:{symbol}`` nor
    the decision stream: those belong to the host. Throttling, if the plugin wants any, is
    the plugin's own business.
    """
