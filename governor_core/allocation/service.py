"""The allocation loop (P2.9): every ``P29_INTERVAL_SEC``, inputs in, targets out.

One cycle is three Redis round trips, whatever the number of symbols: two pipelines that
read everything (:mod:`governor_core.allocation.inputs`: what exists, then its values, with
the reads the plugins name in ``read_commands`` in the second) and one that writes
everything (:mod:`governor_core.allocation.publish`). Once the writes are sent, each
plugin's ``on_allocation_tick`` is called on its own, with its reads (by contract one write
pipeline each) while Redis applies them; then the host reads its write replies.
A plugin that raises is logged and counted, and the cycle is complete without it.

A stale or missing portfolio skips the cycle: nothing is written and no plugin is called.
Redis outages are waited out with :class:`Backoff`; the loop resumes when Redis returns.

The mode of each cycle is ``P29_MODE`` unless ``quantum:config:allocation.mode`` says
otherwise (:mod:`governor_core.allocation.mode`; read in round trip 1). A cycle in shadow
mode right after one in enforce mode also unlinks the live targets that cycle wrote (in
its write round trip): ``rollback`` deletes them at once, and this catches a cycle that
read ``enforce`` just before the switch and wrote after the delete.

Every error the loop logs (a failed read, refused writes, lost plugin reads, a plugin that
raised, an invalid mode key, a loop error) is also appended to
``quantum:stream:allocation.errors`` (``ts, kind, detail``; capped at
``P29_STREAM_MAXLEN``) with the next cycle's writes, at most :data:`PENDING_ERRORS` kept
meanwhile: ``quantum-allocation readiness`` counts them. Fallbacks are logged when they
start and end (:mod:`governor_core.allocation.fallback_log`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from governor_core.allocation.fallback_log import FallbackLog, fallback_pairs
from governor_core.allocation.formula import cluster_factor, compute_targets, regime_factor
from governor_core.allocation.inputs import (
    Snapshot,
    ValueCommands,
    listing_commands,
    parse_listing,
    parse_values,
)
from governor_core.allocation.metrics import AllocationMetrics
from governor_core.allocation.mode import ModeTracker, resolve_mode
from governor_core.allocation.model import AllocationTick
from governor_core.allocation.publish import publish_chunks
from governor_core.formats import fmt_ts
from governor_core.hookspecs import Reads
from governor_core.host import HostService
from governor_core.keys import ALLOCATION_ERROR_STREAM, PORTFOLIO_KEY, TARGET_PREFIX
from governor_core.plugin_reads import NO_READS, PluginReads, ReadRequest
from governor_core.redis_io import REDIS_OUTAGE_ERRORS, CommandStream, execute_commands
from governor_core.runtime import is_access_error
from governor_core.snapshot import cluster_map_value, host_snapshot, write_snapshot

log = logging.getLogger("quantum.allocation")

#: What each portfolio problem of :func:`parse_listing` means, for the log line.
_PORTFOLIO_PROBLEMS = {
    "missing": "no such hash, an empty one, or a key of another type",
    "malformed": "expected equity_usd > 0 and drawdown from 0 to 1, plain decimals",
    "stale": "timestamp missing, older than STALE_DATA_SEC={stale:g} s or in the future",
}

#: How many newly unmapped symbols one log line names (the rest are counted).
UNMAPPED_LOG_NAMES = 20
#: Errors kept for ``quantum:stream:allocation.errors`` until a cycle writes them.
PENDING_ERRORS = 100


class AllocationService(HostService):
    activity = "allocation cycle"

    def setup(self) -> None:
        self.metrics = AllocationMetrics(self.registry)
        self._plugin_reads = PluginReads(self.plugins)
        self._unmapped_logged: set[str] = set()
        self._value_commands = ValueCommands()
        self.mode = ModeTracker(self.registry, self.config.mode)
        self._fallback_log = FallbackLog()
        self._errors: deque[tuple[str, ...]] = deque(maxlen=PENDING_ERRORS)
        #: Symbols whose live target the last enforce cycle wrote (unlinked in shadow).
        self._enforced: tuple[str, ...] = ()
        self._plugin_errors = self._plugin_error_count()
        self.config_snapshot = host_snapshot("allocation", self.config, self.plugins,
                                             cluster_map_value(self.config.cluster_map))

    def prepare(self) -> None:
        super().prepare()
        write_snapshot(self.redis, self.config_snapshot, self.clock())  # once per config_id

    @property
    def interval_sec(self) -> float:  # type: ignore[override]
        """A cycle every ``P29_INTERVAL_SEC``."""
        return self.config.interval_sec

    def failed(self, error: Exception) -> None:
        self.metrics.redis_errors.labels(op="loop").inc()
        self.record_error("loop", f"{type(error).__name__}: {error}")

    def record_error(self, kind: str, detail: str) -> None:
        """Keep an error for ``quantum:stream:allocation.errors`` (written with the next
        cycle's writes)."""
        self._errors.append(("XADD", ALLOCATION_ERROR_STREAM, "MAXLEN", "~",
                             str(self.config.stream_maxlen), "*", "ts", fmt_ts(self.clock()),
                             "kind", kind, "detail", detail[:500]))

    def _plugin_error_count(self) -> float:
        return sum(sample.value for metric in self.plugins.errors.collect()
                   for sample in metric.samples if sample.name.endswith("_total"))

    def step(self) -> AllocationTick | None:
        """One cycle. Returns what it published, or None when the cycle was skipped.

        Python's cyclic garbage collector is paused for the cycle and resumes after it.
        A cycle allocates some 10⁵ tuples at 10⁴ symbols, enough to start about a hundred
        collections, a few of them full ones that walk every live object: 40–50 ms of a
        tick, measured. What the cycle allocates holds no reference cycles (tuples, lists,
        strings), so reference counting frees it all as it goes; anything cyclic is left
        to the collector's next run, after the cycle.
        """
        started = time.perf_counter()
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._cycle(self.clock())
        finally:
            if collecting:
                gc.enable()
            self.metrics.duration.observe(time.perf_counter() - started)

    def _cycle(self, now: float) -> AllocationTick | None:
        config = self.config
        replies = execute_commands(self.redis, listing_commands(config.cluster_map is None))
        choice = resolve_mode(config.mode, replies[-1])
        if self.mode.update(choice) and choice.source == "key_invalid":
            self.record_error("mode", f"mode key {choice.problem}")
        if isinstance(replies[0], Exception):
            self.metrics.redis_errors.labels(op="read").inc()
            log.error("input read failed, cycle skipped: %s", replies[0])
            self.record_error("read", str(replies[0]))
            return None
        listing = parse_listing(replies, now, config.stale_data_sec, config.cluster_map)
        if listing.portfolio_problem:
            self._record_inputs(parse_values(listing, [], now, config.stale_data_sec))
            log.warning("portfolio state %s: %s (%s): cycle skipped, nothing written",
                        listing.portfolio_problem, PORTFOLIO_KEY,
                        _PORTFOLIO_PROBLEMS.get(listing.portfolio_problem, "").format(
                            stale=config.stale_data_sec),
                        extra={"data_source": "portfolio"})
            return None

        # Round trip 2: the host's values, then the plugins' reads. The host judges its
        # replies and computes the tick while Redis is still answering the plugins' reads;
        # those replies are collected just before the plugins are called.
        request = (self._plugin_reads.request(listing.symbols, now) if self._plugin_reads
                   else NO_READS)
        values = CommandStream(self.redis)
        try:
            values.send([*self._value_commands.commands(listing), *request.commands])
            snapshot = parse_values(
                listing, values.take(len(listing.symbols) + len(listing.stress_clusters)),
                now, config.stale_data_sec)
            self._record_inputs(snapshot)
            formula = config.formula
            tick = AllocationTick(
                ts=now, mode=choice.mode, equity_usd=snapshot.equity_usd,
                drawdown=snapshot.drawdown,
                targets=compute_targets(snapshot.equity_usd, snapshot.drawdown,
                                        snapshot.regime, snapshot.symbols, snapshot.clusters,
                                        formula),
                max_symbol_usd=formula.max_symbol_pct * snapshot.equity_usd,
                max_cluster_usd=formula.max_cluster_pct * snapshot.equity_usd,
                config_id=self.config_snapshot.config_id)
            self._publish(tick, now, lambda: self._plugin_replies(request, values))
        finally:
            values.abandon()
        self._fallback_log.update(fallback_pairs(
            tick.targets, (symbol for source, symbol in snapshot.fallbacks
                           if source == "budget")))
        # The exact text of the design's health check (journalctl … | grep).
        log.info("Allocation cycle complete", extra={"count": len(tick.targets),
                                                     "mode": tick.mode})
        return tick

    def _publish(self, tick: AllocationTick, now: float,
                 plugin_reads: Callable[[], dict[str, Reads]]) -> None:
        """Send every write of the tick, run the plugins, then check the write replies.

        One round trip for every write, sent in chunks. The plugins run while Redis is still
        applying them (their commands queue behind ours); the replies are checked after, so
        Redis's time on the writes overlaps the plugins' own work.
        """
        config = self.config
        writes = CommandStream(self.redis)
        enforce = tick.mode == "enforce"
        pending = [*self._errors]
        if self._enforced and not enforce:
            pending.append(("UNLINK", *(TARGET_PREFIX + s for s in self._enforced)))
        try:
            if pending:
                writes.send(pending)
            for chunk in publish_chunks(tick, stream_maxlen=config.stream_maxlen,
                                        target_ttl_sec=config.target_ttl_sec):
                writes.send([chunk])
            self._errors.clear()
            self._enforced = tuple(t.symbol for t in tick.targets) if enforce else ()
            self.metrics.record(tick)
            if tick.targets:
                self.metrics.drawdown_factor.set(tick.targets[0].drawdown_factor)
            self.plugins.allocation_tick(tick, self.redis, now, plugin_reads())
            failed = writes.refusals()
        finally:
            writes.abandon()
        plugin_errors = self._plugin_error_count()
        if plugin_errors > self._plugin_errors:
            self.record_error("plugin", f"{plugin_errors - self._plugin_errors:g} plugin "
                                        "hook call(s) raised (see governor_plugin_errors_total)")
        self._plugin_errors = plugin_errors
        if failed:
            self.metrics.redis_errors.labels(op="write").inc(len(failed))
            log.error("%d allocation writes refused by Redis, e.g. %s", len(failed), failed[0],
                      extra={"count": len(failed)})
            self.record_error("write", f"{len(failed)} writes refused, e.g. {failed[0]}")
            denied = next((error for error in failed if is_access_error(error)), None)
            if denied is not None:  # the ACL refuses a write: run stops, exit status 2
                raise denied

    def _plugin_replies(self, request: ReadRequest, values: CommandStream
                        ) -> dict[str, Reads]:
        """The plugins' reads from round trip 2. If they are lost (the connection dropped
        after the host's own replies), the plugins get ``reads=None`` and may read on
        their own: the tick's writes are already on their way."""
        try:
            return request.reads(values.replies())
        except REDIS_OUTAGE_ERRORS as exc:
            self.metrics.redis_errors.labels(op="read").inc()
            log.error("plugin reads lost, plugins called without them: %s", exc)
            self.record_error("read", f"plugin reads lost: {exc}")
            return {}

    def _record_inputs(self, snapshot: Snapshot) -> None:
        metrics = self.metrics
        for source, count in Counter(source for source, _ in snapshot.fallbacks).items():
            metrics.fallbacks.labels(data_source=source).inc(count)
        formula = self.config.formula
        metrics.regime_factor.set(regime_factor(snapshot.regime, formula)[1])
        metrics.cluster_factor.set_all({cluster: cluster_factor(data.stress, formula)
                                        for cluster, data in snapshot.clusters.items()})
        metrics.unmapped.set(len(snapshot.unmapped))
        new = [symbol for symbol in snapshot.unmapped if symbol not in self._unmapped_logged]
        if new:
            self._unmapped_logged.update(new)
            names = ", ".join(new[:UNMAPPED_LOG_NAMES])
            more = f" and {len(new) - UNMAPPED_LOG_NAMES} more" if len(new) > 20 else ""
            log.warning("symbols without a cluster mapping, each its own cluster: %s%s",
                        names, more, extra={"count": len(new)})
