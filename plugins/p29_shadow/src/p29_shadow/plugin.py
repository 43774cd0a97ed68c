"""Hook implementations: propose efficiency-adjusted targets beside the live ones.

Active on the allocation host only. At most once per ``LOOP_INTERVAL_SEC`` of the tick's
``now`` (the first tick always runs), for every target of the tick: one pipelined read of all
efficiency hashes, one pipelined write of the proposals (a stream entry per symbol and the
TTL'd ``quantum:allocation:target:proposed:{symbol}`` hash). It writes nothing else; in
particular never ``quantum:allocation:target:{symbol}``, in either mode.

A failed read gives every symbol ``redis_error`` and multiplier 1.0 (the proposals are still
attempted); a failed write raises, so the host logs and counts it against this plugin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

from governor_core import hookimpl
from governor_core.allocation.model import AllocationTick
from governor_core.config import EnvReader
from governor_core.efficiency import (
    EFFICIENCY_KEY,
    REASONS,
    REDIS_ERROR,
    EfficiencyReading,
    read_efficiency,
)
from governor_core.redis_io import Command, execute_commands
from p29_shadow.formula import PROPOSED_KEY, ShadowConfig, proposal_fields, propose

EFFICIENCY_FIELDS = ("efficiency_score", "confidence", "ts")


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loops = Counter("p29_shadow_loops_total", "Shadow proposal loops completed",
                             registry=registry)
        self.proposed = Counter("p29_shadow_proposed_total", "Shadow proposals, by reason",
                                ["reason"], registry=registry)
        self.multiplier = Gauge("p29_shadow_multiplier", "Latest shadow multiplier",
                                ["symbol"], registry=registry)
        self.confidence = Gauge("p29_shadow_eff_confidence",
                                "Latest efficiency confidence (NaN when unknown)", ["symbol"],
                                registry=registry)
        self.score = Gauge("p29_shadow_eff_score",
                           "Latest efficiency score (NaN when unknown)", ["symbol"],
                           registry=registry)
        self.reasons = {reason: self.proposed.labels(reason=reason) for reason in REASONS}
        # Cached per-symbol children: label lookup dominates at 10⁴ symbols.
        self._symbols: dict[str, tuple[Gauge, Gauge, Gauge]] = {}

    def record(self, symbol: str, multiplier: float, reading: EfficiencyReading) -> None:
        children = self._symbols.get(symbol)
        if children is None:
            children = self._symbols[symbol] = (self.multiplier.labels(symbol=symbol),
                                                self.confidence.labels(symbol=symbol),
                                                self.score.labels(symbol=symbol))
        children[0].set(multiplier)
        children[1].set(math.nan if reading.confidence is None else reading.confidence)
        children[2].set(math.nan if reading.score is None else reading.score)
        self.reasons[reading.reason].inc()


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
        self.config = config
        self._last_run = None

    @hookimpl
    def on_allocation_tick(self, tick: AllocationTick, redis: Any, now: float) -> None:
        config = self.config
        if config is None or not self._due(now, config):
            return
        self._last_run = now
        symbols = [target.symbol for target in tick.targets]
        readings = self._read(redis, symbols, now, config)
        ts_epoch = int(now)
        ttl = str(config.key_ttl_sec)
        maxlen = str(config.stream_maxlen)
        commands: list[Command] = []
        records = []
        for target, reading in zip(tick.targets, readings, strict=True):
            proposal = propose(target.target_usd, reading, config)
            fields = proposal_fields(target.symbol, target.target_usd, proposal, reading,
                                     ts_epoch)
            flat = [part for item in fields.items() for part in item]
            key = PROPOSED_KEY.format(target.symbol)
            commands.append(("XADD", config.stream, "MAXLEN", "~", maxlen, "*", *flat))
            commands.append(("HSET", key, *flat, "last_update_ts_epoch", str(ts_epoch)))
            commands.append(("EXPIRE", key, ttl))
            records.append((target.symbol, proposal.multiplier, reading))
        refused = [r for r in execute_commands(redis, commands) if isinstance(r, Exception)]
        if refused:
            raise RedisError(f"{len(refused)} proposal writes refused, e.g. {refused[0]}")
        for record in records:
            self.metrics.record(*record)
        self.metrics.loops.inc()

    def _due(self, now: float, config: ShadowConfig) -> bool:
        last = self._last_run
        # A clock that went backwards runs at once rather than waiting for it to catch up.
        return last is None or now < last or now - last >= config.loop_interval_sec

    @staticmethod
    def _read(redis: Any, symbols: list[str], now: float,
              config: ShadowConfig) -> list[EfficiencyReading]:
        commands: list[Command] = [("HMGET", EFFICIENCY_KEY.format(symbol), *EFFICIENCY_FIELDS)
                                   for symbol in symbols]
        try:
            replies = execute_commands(redis, commands)
        except (RedisError, OSError):
            return [REDIS_ERROR] * len(symbols)
        readings = []
        for reply in replies:
            if not isinstance(reply, list):  # e.g. WRONGTYPE: the hash is not a hash
                readings.append(EfficiencyReading("invalid_eff"))
                continue
            fields = {name: value for name, value in zip(EFFICIENCY_FIELDS, reply, strict=False)
                      if value is not None}
            readings.append(read_efficiency(fields, now, min_conf=config.min_conf,
                                            stale_sec=config.stale_sec))
        return readings


plugin = ShadowProposerPlugin()
