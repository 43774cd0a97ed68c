"""A cycle's writes, as RESP (pure: the same tick gives the same bytes).

* ``quantum:stream:allocation.decision`` (both modes): one entry per symbol, ``XADD MAXLEN ~
  P29_STREAM_MAXLEN``, with the :data:`DECISION_FIELDS`: the target fields and every factor,
  cap and fallback, and the ``config_id`` of the host's configuration snapshot
  (:func:`decision_fields` is the plain definition).
* ``quantum:allocation:target:{symbol}`` (``enforce`` only): the SPEC 4 target fields
  (:data:`TARGET_FIELDS`), TTL ``TARGET_TTL_SEC``.

Stream entry ids are left to Redis (``*``), as for every stream of this project; all else a
cycle sends is a function of the tick alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.formats import fmt4, fmt_factor, fmt_ts, fmt_usd, fmt_usd_column
from governor_core.keys import DECISION_STREAM, TARGET_PREFIX
from governor_core.templates import CommandTemplate, Group, RowTemplate, Slot, field_pairs
from governor_core.wire import Packed

#: What a live target holds; also the decision's fields after ``symbol``, in this order.
TARGET_FIELDS = ("target_usd", "weight", "cluster_id", "regime", "drawdown_zone",
                 "confidence", "timestamp", "mode")
#: A decision entry's fields, in order.
DECISION_FIELDS = ("symbol", *TARGET_FIELDS, "base_budget", "regime_factor", "cluster_factor",
                   "drawdown", "drawdown_factor", "performance_factor", "raw_target_usd",
                   "equity_usd", "symbol_cap_usd", "symbol_cap_applied", "cluster_cap_usd",
                   "cluster_scale", "cluster_cap_applied", "fallbacks", "config_id")


def decision_fields(tick: AllocationTick, target: AllocationTarget) -> dict[str, str]:
    """One decision entry, field by field in :data:`DECISION_FIELDS` order: the definition
    :func:`publish_chunks` encodes (a test compares the two on random ticks)."""
    return {
        "symbol": target.symbol,
        "target_usd": fmt_usd(target.target_usd),
        "weight": fmt_factor(target.weight),
        "cluster_id": target.cluster_id,
        "regime": target.regime,
        "drawdown_zone": target.drawdown_zone,
        "confidence": fmt4(target.confidence),
        "timestamp": fmt_ts(tick.ts),
        "mode": tick.mode,
        "base_budget": fmt_usd(target.base_budget),
        "regime_factor": fmt_factor(target.regime_factor),
        "cluster_factor": fmt_factor(target.cluster_factor),
        "drawdown": fmt_factor(tick.drawdown),
        "drawdown_factor": fmt_factor(target.drawdown_factor),
        "performance_factor": fmt_factor(target.performance_factor),
        "raw_target_usd": fmt_usd(target.raw_target_usd),
        "equity_usd": fmt_usd(tick.equity_usd),
        "symbol_cap_usd": fmt_usd(tick.max_symbol_usd),
        "symbol_cap_applied": "1" if target.symbol_cap_applied else "0",
        "cluster_cap_usd": fmt_usd(tick.max_cluster_usd),
        "cluster_scale": fmt_factor(target.cluster_scale),
        "cluster_cap_applied": "1" if target.cluster_scale < 1.0 else "0",
        "fallbacks": ",".join(target.fallbacks) or "none",
        "config_id": tick.config_id,
    }


_DECISION = CommandTemplate("XADD", DECISION_STREAM, "MAXLEN", "~", Slot("stream_maxlen"), "*",
                            *field_pairs(DECISION_FIELDS))
_SHADOW_ROW = RowTemplate(_DECISION)
_ENFORCE_ROW = RowTemplate(_DECISION,
                           CommandTemplate("HSET", Slot("key"), *field_pairs(TARGET_FIELDS)),
                           CommandTemplate("EXPIRE", Slot("key"), Slot("ttl")))

#: The target's fields that a cluster's symbols share (and budget freshness): the key of
#: the group of :func:`_shared_columns`, encoded once per distinct key.
_SHARED = ("cluster_id", "regime", "regime_factor", "cluster_factor", "drawdown_zone",
           "drawdown_factor", "performance_factor", "cluster_scale", "confidence", "fallbacks")


def _shared_columns(shared: list[tuple]) -> Mapping[str, Sequence[str]]:
    """The decision fields of each distinct :data:`_SHARED` key, one column per field."""
    group = dict(zip(_SHARED, zip(*shared, strict=True), strict=True))
    return {
        "cluster_id": group["cluster_id"],
        "regime": group["regime"],
        "regime_factor": list(map(fmt_factor, group["regime_factor"])),
        "cluster_factor": list(map(fmt_factor, group["cluster_factor"])),
        "drawdown_zone": group["drawdown_zone"],
        "drawdown_factor": list(map(fmt_factor, group["drawdown_factor"])),
        "performance_factor": list(map(fmt_factor, group["performance_factor"])),
        "cluster_scale": list(map(fmt_factor, group["cluster_scale"])),
        "cluster_cap_applied": ["1" if scale < 1.0 else "0" for scale in group["cluster_scale"]],
        "confidence": list(map(fmt4, group["confidence"])),
        "fallbacks": [",".join(sources) or "none" for sources in group["fallbacks"]],
    }


#: Symbols encoded per send: Redis applies one chunk while the next is being encoded.
CHUNK_SYMBOLS = 500


def publish_chunks(tick: AllocationTick, *, stream_maxlen: int, target_ttl_sec: int,
                   chunk_symbols: int = CHUNK_SYMBOLS) -> Iterator[Packed]:
    """Every write of the cycle in symbol order (per symbol: the decision entry; in
    ``enforce`` mode then the live target's ``HSET`` and ``EXPIRE``), in chunks of
    ``chunk_symbols`` symbols. All chunks go out on one connection before any reply is
    read: one round trip.

    Encoded column by column (:class:`~governor_core.wire.RowTemplate`), which at 10⁴
    symbols is several times cheaper than entry by entry: each column of amounts is
    formatted in one list comprehension, and the fields a cluster's symbols share
    (:data:`_SHARED`) are encoded once per cluster.
    """
    targets = tick.targets
    if not targets:
        return
    column = dict(zip(AllocationTarget._fields, zip(*targets, strict=True), strict=True))
    symbols = column["symbol"]
    enforce = tick.mode == "enforce"
    per_tick = {"stream_maxlen": str(stream_maxlen), "timestamp": fmt_ts(tick.ts),
                "mode": tick.mode, "drawdown": fmt_factor(tick.drawdown),
                "equity_usd": fmt_usd(tick.equity_usd),
                "symbol_cap_usd": fmt_usd(tick.max_symbol_usd),
                "cluster_cap_usd": fmt_usd(tick.max_cluster_usd),
                "config_id": tick.config_id}
    per_symbol = {
        "symbol": symbols,
        "target_usd": fmt_usd_column(column["target_usd"]),
        "weight": [f"{weight:.6f}" for weight in column["weight"]],  # fmt_factor, inline
        "base_budget": fmt_usd_column(column["base_budget"]),
        "raw_target_usd": fmt_usd_column(column["raw_target_usd"]),
        "symbol_cap_applied": ["1" if capped else "0"
                               for capped in column["symbol_cap_applied"]],
    }
    if enforce:
        per_tick["ttl"] = str(target_ttl_sec)
        per_symbol["key"] = [TARGET_PREFIX + symbol for symbol in symbols]
    shared = list(zip(*map(column.__getitem__, _SHARED), strict=True))
    yield from (_ENFORCE_ROW if enforce else _SHADOW_ROW).chunks(
        tick=per_tick, columns=per_symbol, groups=[Group(shared, _shared_columns)],
        chunk_rows=chunk_symbols)


def publish_commands(tick: AllocationTick, *, stream_maxlen: int,
                     target_ttl_sec: int) -> list[tuple[str, ...]]:
    """:func:`publish_chunks`, decoded into plain commands (tests, ``explain``-style use)."""
    return [command for packed in publish_chunks(tick, stream_maxlen=stream_maxlen,
                                                 target_ttl_sec=target_ttl_sec)
            for command in packed.commands()]
