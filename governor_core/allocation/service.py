"""The allocation loop (P2.9): every ``P29_INTERVAL_SEC``, inputs in, targets out.

One cycle is two Redis round trips, whatever the number of symbols: one pipeline that reads
everything (:mod:`governor_core.allocation.inputs`) and one that writes everything
(:mod:`governor_core.allocation.publish`). Then each plugin's ``on_allocation_tick`` is
called on its own (by contract one read and one write pipeline each); a plugin that raises is
logged and counted, and the cycle is complete without it.

A stale or missing portfolio skips the cycle: nothing is written and no plugin is called.
Redis outages are waited out with :class:`Backoff`; the loop resumes when Redis returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.formula import cluster_factor, compute_targets, regime_factor
from governor_core.allocation.inputs import Snapshot, parse_snapshot, snapshot_commands
from governor_core.allocation.model import AllocationTick
from governor_core.allocation.publish import publish_commands
from governor_core.plugins import PluginHost
from governor_core.redis_io import REDIS_OUTAGE_ERRORS, Backoff, execute_commands

log = logging.getLogger("quantum.allocation")

DATA_SOURCES = ("portfolio", "budget", "regime", "cluster_stress", "alpha")
#: How many newly unmapped symbols one log line names (the rest are counted).
UNMAPPED_LOG_NAMES = 20


class AllocationMetrics:
    """The metrics of ``design/p29_capital_allocation.md`` (exact names), plus
    ``p29_unmapped_symbols`` and ``p29_redis_errors_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.computed = Counter("p29_targets_computed_total", "Targets computed, per symbol",
                                ["symbol"], registry=registry)
        self.shadow_pass = Counter("p29_shadow_pass_total",
                                   "Cycles completed in shadow mode (no live target written)",
                                   registry=registry)
        self.overrides = Counter("p29_enforce_overrides_total",
                                 "Live targets written in enforce mode, per symbol",
                                 ["symbol"], registry=registry)
        self.fallbacks = Counter("p29_stale_fallback_total",
                                 "Missing or stale inputs replaced by their fallback",
                                 ["data_source"], registry=registry)
        self.confidence = Gauge("p29_allocation_confidence", "Allocation confidence [0, 1]",
                                ["symbol"], registry=registry)
        self.target = Gauge("p29_target_usd", "Latest computed target in USD", ["symbol"],
                            registry=registry)
        self.regime_factor = Gauge("p29_regime_factor", "Current regime multiplier",
                                   registry=registry)
        self.cluster_factor = Gauge("p29_cluster_factor", "Current cluster multiplier",
                                    ["cluster"], registry=registry)
        self.drawdown_factor = Gauge("p29_drawdown_factor", "Current drawdown multiplier",
                                     registry=registry)
        self.duration = Histogram("p29_loop_duration_seconds",
                                  "Allocation cycle duration, plugins included",
                                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
                                           5.0), registry=registry)
        self.unmapped = Gauge("p29_unmapped_symbols",
                              "Budgeted symbols with no cluster mapping (own cluster)",
                              registry=registry)
        self.redis_errors = Counter("p29_redis_errors_total",
                                    "Redis failures of the allocation loop, by operation",
                                    ["op"], registry=registry)
        for source in DATA_SOURCES:
            self.fallbacks.labels(data_source=source)
        # Per-symbol children, cached: label lookup dominates at 10⁴ symbols.
        self._symbols: dict[str, tuple[Counter, Gauge, Gauge]] = {}
        self._overrides: dict[str, Counter] = {}

    def record(self, tick: AllocationTick) -> None:
        seen = set()
        for target in tick.targets:
            children = self._symbols.get(target.symbol)
            if children is None:
                symbol = target.symbol
                children = (self.computed.labels(symbol=symbol),
                            self.confidence.labels(symbol=symbol),
                            self.target.labels(symbol=symbol))
                self._symbols[symbol] = children
            children[0].inc()
            children[1].set(target.confidence)
            children[2].set(target.target_usd)
            seen.add(target.symbol)
        for symbol in set(self._symbols) - seen:  # gone symbols leave no stale gauges
            del self._symbols[symbol]
            self.confidence.remove(symbol)
            self.target.remove(symbol)
        if tick.mode == "enforce":
            for target in tick.targets:
                child = self._overrides.get(target.symbol)
                if child is None:
                    child = self._overrides[target.symbol] = self.overrides.labels(
                        symbol=target.symbol)
                child.inc()
        else:
            self.shadow_pass.inc()


class AllocationService:
    def __init__(self, config: AllocationConfig, client: redis.Redis, plugins: PluginHost,
                 registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.redis = client
        self.plugins = plugins
        self.clock = clock
        self.stop = stop or threading.Event()
        self.metrics = AllocationMetrics(registry)
        self._tick_impls = plugins.impls("on_allocation_tick")
        self._unmapped_logged: set[str] = set()

    def run(self) -> None:
        """Run a cycle every ``P29_INTERVAL_SEC`` until ``stop`` is set."""
        backoff = Backoff(self.stop)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                self.step()
                backoff.succeeded()
            except REDIS_OUTAGE_ERRORS as exc:
                self.metrics.redis_errors.labels(op="loop").inc()
                backoff.failed("allocation cycle", exc)
                continue
            self.stop.wait(max(0.0, self.config.interval_sec - (time.monotonic() - started)))

    def step(self) -> AllocationTick | None:
        """One cycle. Returns what it published, or None when the cycle was skipped."""
        started = time.perf_counter()
        try:
            return self._cycle(self.clock())
        finally:
            self.metrics.duration.observe(time.perf_counter() - started)

    def _cycle(self, now: float) -> AllocationTick | None:
        config = self.config
        replies = execute_commands(self.redis, snapshot_commands(config.cluster_map is None))
        if isinstance(replies[1], Exception):
            self.metrics.redis_errors.labels(op="read").inc()
            log.error("input read failed, cycle skipped: %s", replies[1])
            return None
        snapshot = parse_snapshot(replies[1:], now, config.stale_data_sec, config.cluster_map)
        self._record_inputs(snapshot)
        if snapshot.portfolio_problem:
            log.warning("portfolio state %s: cycle skipped, nothing written",
                        snapshot.portfolio_problem, extra={"data_source": "portfolio"})
            return None

        formula = config.formula
        tick = AllocationTick(
            ts=now, mode=config.mode, equity_usd=snapshot.equity_usd,
            drawdown=snapshot.drawdown,
            targets=compute_targets(snapshot.equity_usd, snapshot.drawdown, snapshot.regime,
                                    snapshot.symbols, snapshot.clusters, formula),
            max_symbol_usd=formula.max_symbol_pct * snapshot.equity_usd,
            max_cluster_usd=formula.max_cluster_pct * snapshot.equity_usd)
        writes = publish_commands(tick, stream_maxlen=config.stream_maxlen,
                                  target_ttl_sec=config.target_ttl_sec)
        failed = [r for r in execute_commands(self.redis, writes) if isinstance(r, Exception)]
        if failed:
            self.metrics.redis_errors.labels(op="write").inc(len(failed))
            log.error("%d allocation writes refused by Redis, e.g. %s", len(failed), failed[0],
                      extra={"count": len(failed)})
        self.metrics.record(tick)
        if tick.targets:
            self.metrics.drawdown_factor.set(tick.targets[0].drawdown_factor)
        log.info("allocation cycle complete", extra={"count": len(tick.targets),
                                                     "mode": tick.mode})
        kwargs = {"tick": tick, "redis": self.redis, "now": now}
        for impl in self._tick_impls:
            self.plugins.call_isolated("on_allocation_tick", impl, kwargs)
        return tick

    def _record_inputs(self, snapshot: Snapshot) -> None:
        metrics = self.metrics
        for source, count in Tally(source for source, _ in snapshot.fallbacks).items():
            metrics.fallbacks.labels(data_source=source).inc(count)
        if snapshot.fallbacks:
            log.debug("fallbacks used: %s", snapshot.fallbacks)
        formula = self.config.formula
        metrics.regime_factor.set(regime_factor(snapshot.regime, formula)[1])
        for cluster, data in snapshot.clusters.items():
            metrics.cluster_factor.labels(cluster=cluster).set(
                cluster_factor(data.stress, formula))
        metrics.unmapped.set(len(snapshot.unmapped))
        new = [symbol for symbol in snapshot.unmapped if symbol not in self._unmapped_logged]
        if new:
            self._unmapped_logged.update(new)
            names = ", ".join(new[:UNMAPPED_LOG_NAMES])
            more = f" and {len(new) - UNMAPPED_LOG_NAMES} more" if len(new) > 20 else ""
            log.warning("symbols without a cluster mapping, each its own cluster: %s%s",
                        names, more, extra={"count": len(new)})
