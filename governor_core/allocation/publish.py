"""A cycle's writes, as one batch of commands (pure: the same tick gives the same bytes).

* ``quantum:stream:allocation.decision`` (both modes): one entry per symbol, ``XADD MAXLEN ~
  P29_STREAM_MAXLEN``, with the target fields and every factor, cap and fallback.
* ``quantum:allocation:target:{symbol}`` (``enforce`` only): the SPEC 4 target fields, TTL
  ``TARGET_TTL_SEC``.

Stream entry ids are left to Redis (``*``), as for every stream of this project; all else a
cycle sends is a function of the tick alone.
"""

from __future__ import annotations

from collections.abc import Iterator

from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.redis_io import Packed, bulk

DECISION_STREAM = "quantum:stream:allocation.decision"
TARGET_KEY = "quantum:allocation:target:{}"
TARGET_FIELDS = ("target_usd", "weight", "cluster_id", "regime", "drawdown_zone",
                 "confidence", "timestamp", "mode")


def fmt_usd(value: float) -> str:
    """USD amounts: fixed point, at most 8 decimals, no trailing zeros (as on permits)."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_factor(value: float) -> str:
    return f"{value:.6f}"


def fmt_ts(value: float) -> str:
    """Unix seconds with millisecond precision (as on permits)."""
    return f"{value:.3f}"


def _pairs(*items: str) -> str:
    return "".join(map(bulk, items))


class _DecisionWriter:
    """Encodes decision entries (and live targets) for one tick, straight to RESP.

    Most of an entry is the same for every symbol of a cluster (factors, caps, fallbacks,
    confidence: they depend on the cluster and the budget's freshness only), so those
    parts are formatted and encoded once per distinct set of values, and only the symbol's
    own amounts per symbol. At 10⁴ symbols, formatting each entry and packing its 52
    arguments one by one was two fifths of the host's tick.
    """

    def __init__(self, tick: AllocationTick, stream_maxlen: int, target_ttl_sec: int) -> None:
        self._timestamp, self._mode = fmt_ts(tick.ts), tick.mode
        self._drawdown = fmt_factor(tick.drawdown)
        self._xadd = "*52\r\n" + _pairs("XADD", DECISION_STREAM, "MAXLEN", "~",
                                           str(stream_maxlen), "*", "symbol")
        self._caps = _pairs("equity_usd", fmt_usd(tick.equity_usd),
                            "symbol_cap_usd", fmt_usd(tick.max_symbol_usd),
                            "symbol_cap_applied")
        self._cluster_cap = fmt_usd(tick.max_cluster_usd)
        self._hset = "*18\r\n" + bulk("HSET")
        self._expire = "*3\r\n" + bulk("EXPIRE")
        self._ttl = bulk(str(target_ttl_sec))
        self._groups: dict[tuple, tuple[str, str, str]] = {}

    def _group(self, target: AllocationTarget) -> tuple[str, str, str]:
        key = (target.cluster_id, target.regime, target.drawdown_zone, target.confidence,
               target.regime_factor, target.cluster_factor, target.drawdown_factor,
               target.performance_factor, target.cluster_scale, target.fallbacks)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = (
                _pairs("cluster_id", target.cluster_id, "regime", target.regime,
                       "drawdown_zone", target.drawdown_zone,
                       "confidence", f"{target.confidence:.4f}",
                       "timestamp", self._timestamp, "mode", self._mode),
                _pairs("regime_factor", fmt_factor(target.regime_factor),
                       "cluster_factor", fmt_factor(target.cluster_factor),
                       "drawdown", self._drawdown,
                       "drawdown_factor", fmt_factor(target.drawdown_factor),
                       "performance_factor", fmt_factor(target.performance_factor),
                       "raw_target_usd"),
                _pairs("cluster_cap_usd", self._cluster_cap,
                       "cluster_scale", fmt_factor(target.cluster_scale),
                       "cluster_cap_applied", "1" if target.cluster_scale < 1.0 else "0",
                       "fallbacks", ",".join(target.fallbacks) or "none"))
        return group

    def commands(self, target: AllocationTarget, enforce: bool) -> list[Packed]:
        """The decision entry; in enforce mode also the live target and its TTL."""
        fields, factors, cluster_cap = self._group(target)
        usd = fmt_usd(target.target_usd)
        weight = fmt_factor(target.weight)
        raw = usd if target.raw_target_usd == target.target_usd else fmt_usd(
            target.raw_target_usd)
        base = fmt_usd(target.base_budget)
        flag = "1" if target.symbol_cap_applied else "0"
        # The SPEC 4 target fields, in TARGET_FIELDS order (numbers are ASCII).
        target_fields = (f"$10\r\ntarget_usd\r\n${len(usd)}\r\n{usd}\r\n"
                         f"$6\r\nweight\r\n${len(weight)}\r\n{weight}\r\n{fields}")
        symbol = bulk(target.symbol)
        entry = Packed(
            f"{self._xadd}{symbol}{target_fields}$11\r\nbase_budget\r\n"
            f"${len(base)}\r\n{base}\r\n{factors}"
            f"${len(raw)}\r\n{raw}\r\n{self._caps}$1\r\n{flag}\r\n{cluster_cap}".encode())
        if not enforce:
            return [entry]
        key = bulk(TARGET_KEY.format(target.symbol))
        return [entry,
                Packed(f"{self._hset}{key}{target_fields}".encode()),
                Packed(f"{self._expire}{key}{self._ttl}".encode())]


#: Symbols encoded per send: Redis applies one chunk while the next is being encoded.
CHUNK_SYMBOLS = 500


def publish_chunks(tick: AllocationTick, *, stream_maxlen: int, target_ttl_sec: int,
                   chunk_symbols: int = CHUNK_SYMBOLS) -> Iterator[list[Packed]]:
    """Every write of the cycle, in symbol order, in chunks of ``chunk_symbols`` targets.

    All chunks go out on one connection before any reply is read: one round trip."""
    writer = _DecisionWriter(tick, stream_maxlen, target_ttl_sec)
    enforce = tick.mode == "enforce"
    targets = tick.targets
    for start in range(0, len(targets), chunk_symbols):
        chunk: list[Packed] = []
        extend = chunk.extend
        for target in targets[start:start + chunk_symbols]:
            extend(writer.commands(target, enforce))
        yield chunk


def publish_commands(tick: AllocationTick, *, stream_maxlen: int,
                     target_ttl_sec: int) -> list[tuple[str, ...]]:
    """:func:`publish_chunks`, decoded into plain commands (tests, ``explain``-style use)."""
    return [command for chunk in publish_chunks(tick, stream_maxlen=stream_maxlen,
                                                target_ttl_sec=target_ttl_sec)
            for packed in chunk for command in packed.commands()]
