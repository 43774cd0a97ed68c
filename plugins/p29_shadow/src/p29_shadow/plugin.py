"""Hook implementations: propose efficiency-adjusted targets beside the live ones.

Active on the allocation host only. At most once per ``LOOP_INTERVAL_SEC`` of the tick's
``now`` (the first tick always runs), for every target of the tick: one pipelined read of all
efficiency hashes (named in ``read_commands``, so the host reads them in its own round trip),
one pipelined write of the proposals (a stream entry per symbol and the
TTL'd ``quantum:allocation:target:proposed:{symbol}`` hash). It writes nothing else; in
particular never ``quantum:allocation:target:{symbol}``, in either mode.

A failed read gives every symbol ``redis_error`` and multiplier 1.0 (the proposals are still
attempted); a failed write raises, so the host logs and counts it against this plugin.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from redis.exceptions import RedisError

from governor_core import hookimpl
from governor_core.plugin_api import (
    EFFICIENCY_REASONS,
    AllocationTick,
    CommandStream,
    EfficiencyReader,
    EfficiencyReading,
    EnvReader,
    Reads,
    SymbolSeries,
)
from p29_shadow.formula import ShadowConfig, proposal_chunks, shadow_multiplier

CHUNK_SYMBOLS = 500


class ShadowMetrics:
    """The five ``p29_shadow_*`` metrics. The per-symbol gauges are
    :class:`~governor_core.metrics.SymbolSeries`: set once per loop, not once per symbol."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.loops = Counter("p29_shadow_loops_total", "Shadow proposal loops completed",
                             registry=registry)
        self.proposed = Counter("p29_shadow_proposed_total", "Shadow proposals, by reason",
                                ["reason"], registry=registry)
        self.multiplier = SymbolSeries("p29_shadow_multiplier", "Latest shadow multiplier",
                                       registry=registry)
        self.confidence = SymbolSeries("p29_shadow_eff_confidence",
                                       "Latest efficiency confidence (NaN when unknown)",
                                       registry=registry)
        self.score = SymbolSeries("p29_shadow_eff_score",
                                  "Latest efficiency score (NaN when unknown)",
                                  registry=registry)
        self.reasons = {reason: self.proposed.labels(reason=reason)
                        for reason in EFFICIENCY_REASONS}

    def record(self, symbols: list[str], multipliers: list[float],
               readings: list[EfficiencyReading]) -> None:
        nan = math.nan
        self.multiplier.set_all(dict(zip(symbols, multipliers, strict=True)))
        self.confidence.set_all({symbol: nan if reading.confidence is None
                                 else reading.confidence
                                 for symbol, reading in zip(symbols, readings, strict=True)})
        self.score.set_all({symbol: nan if reading.score is None else reading.score
                            for symbol, reading in zip(symbols, readings, strict=True)})
        for reason, count in collections.Counter(reading.reason for reading in readings).items():
            self.reasons[reason].inc(count)


class ShadowProposerPlugin:
    def __init__(self) -> None:
        self.config: ShadowConfig | None = None
        self._last_run: float | None = None

    @hookimpl
    def on_configure(self, host: str, env: Mapping[str, str],
                     registry: CollectorRegistry) -> None:
        self.config = None
        if host != "allocation":
            return
        config = ShadowConfig.from_env(EnvReader(env))
        self.metrics = ShadowMetrics(registry)
        self.reader = EfficiencyReader(min_conf=config.min_conf, stale_sec=config.stale_sec)
        self.config = config
        self._last_run = None

    @hookimpl
    def read_commands(self, host: str, symbols: Sequence[str],
                      now: float) -> list[tuple[str, ...]] | None:
        """Every budgeted symbol's efficiency hash, read in the host's second read round
        trip, when this tick's loop is due."""
        config = self.config
        if config is None or host != "allocation" or not self._due(now, config):
            return None
        return self.reader.commands(symbols)

    @hookimpl
    def on_allocation_tick(self, tick: AllocationTick, redis: Any, now: float,
                           reads: Reads | None) -> None:
        config = self.config
        if config is None or not self._due(now, config):
            return
        self._last_run = now
        symbols = [target.symbol for target in tick.targets]
        readings = self._readings(redis, symbols, now, reads)
        # The multiplier depends on the reading only: once per distinct reading.
        known = dict.fromkeys(readings)
        for reading in known:
            known[reading] = shadow_multiplier(reading, config)
        multipliers = list(map(known.__getitem__, readings))
        # One round trip, sent in chunks: Redis applies one while the next is encoded.
        writes = CommandStream(redis)
        for chunk in proposal_chunks(config, int(now), symbols,
                                     [target.target_usd for target in tick.targets],
                                     multipliers, readings, CHUNK_SYMBOLS,
                                     config_id=tick.config_id):
            writes.send([chunk])
        refused = writes.refusals()
        if refused:
            raise RedisError(f"{len(refused)} proposal writes refused, e.g. {refused[0]}")
        self.metrics.record(symbols, multipliers, readings)
        self.metrics.loops.inc()

    def _readings(self, redis: Any, symbols: list[str], now: float,
                  reads: Reads | None) -> list[EfficiencyReading]:
        """The targets' readings from the host's reads (every budgeted symbol, a superset of
        the targets), or else from one read of its own."""
        if reads is not None:
            by_symbol = dict(zip(reads.symbols, self.reader.judge(reads.replies, now),
                                 strict=True))
            if by_symbol.keys() >= set(symbols):
                return list(map(by_symbol.__getitem__, symbols))
        return self.reader.read(redis, symbols, now)

    def _due(self, now: float, config: ShadowConfig) -> bool:
        last = self._last_run
        # A clock that went backwards runs at once rather than waiting for it to catch up.
        return last is None or now < last or now - last >= config.loop_interval_sec


plugin = ShadowProposerPlugin()
