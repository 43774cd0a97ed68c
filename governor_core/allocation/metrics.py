"""The allocation service's metrics: the names of ``design/p29_capital_allocation.md``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from governor_core.allocation.model import AllocationTick
from governor_core.metrics import SymbolSeries

DATA_SOURCES = ("portfolio", "budget", "regime", "cluster_stress", "alpha")


class AllocationMetrics:
    """The metrics of ``design/p29_capital_allocation.md`` (exact names), plus
    ``p29_unmapped_symbols`` and ``p29_redis_errors_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.computed = SymbolSeries("p29_targets_computed_total",
                                     "Targets computed, per symbol", counter=True,
                                     registry=registry)
        self.shadow_pass = Counter("p29_shadow_pass_total",
                                   "Cycles completed in shadow mode (no live target written)",
                                   registry=registry)
        self.overrides = SymbolSeries("p29_enforce_overrides_total",
                                      "Live targets written in enforce mode, per symbol",
                                      counter=True, registry=registry)
        self.fallbacks = Counter("p29_stale_fallback_total",
                                 "Missing or stale inputs replaced by their fallback",
                                 ["data_source"], registry=registry)
        self.confidence = SymbolSeries("p29_allocation_confidence",
                                       "Allocation confidence [0, 1]", registry=registry)
        self.target = SymbolSeries("p29_target_usd", "Latest computed target in USD",
                                   registry=registry)
        self.regime_factor = Gauge("p29_regime_factor", "Current regime multiplier",
                                   registry=registry)
        self.cluster_factor = SymbolSeries("p29_cluster_factor", "Current cluster multiplier",
                                           label="cluster", registry=registry)
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

    def record(self, tick: AllocationTick) -> None:
        """Per-symbol series in a few C-level passes per tick (see
        :mod:`governor_core.metrics`); a symbol gone from the tick leaves no stale gauge."""
        targets = tick.targets
        symbols = [target.symbol for target in targets]
        self.computed.inc_all(symbols)
        self.confidence.set_all(dict(zip(symbols, [t.confidence for t in targets],
                                         strict=True)))
        self.target.set_all(dict(zip(symbols, [t.target_usd for t in targets], strict=True)))
        if tick.mode == "enforce":
            self.overrides.inc_all(symbols)
        else:
            self.shadow_pass.inc()
