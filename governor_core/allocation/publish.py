"""A cycle's writes, as RESP (pure: the same tick gives the same bytes).

* ``quantum:stream:allocation.decision`` (both modes): one entry per symbol, ``XADD MAXLEN ~
  P29_STREAM_MAXLEN``, with the target fields and every factor, cap and fallback
  (:func:`decision_fields` is the plain definition).
* ``quantum:allocation:target:{symbol}`` (``enforce`` only): the SPEC 4 target fields, TTL
  ``TARGET_TTL_SEC``.

Stream entry ids are left to Redis (``*``), as for every stream of this project; all else a
cycle sends is a function of the tick alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from operator import attrgetter

from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.wire import Packed, bulk, bulk_column

DECISION_STREAM = "quantum:stream:allocation.decision"
TARGET_PREFIX = "quantum:allocation:target:"
TARGET_KEY = TARGET_PREFIX + "{}"
TARGET_FIELDS = ("target_usd", "weight", "cluster_id", "regime", "drawdown_zone",
                 "confidence", "timestamp", "mode")


def fmt_usd(value: float) -> str:
    """USD amounts: fixed point, at most 8 decimals, no trailing zeros (as on permits)."""
    text = f"{value:.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_usd_column(values: Sequence[float]) -> list[str]:
    """``[fmt_usd(v) for v in values]``, without a Python call per value."""
    texts = [f"{value:.8f}".rstrip("0").rstrip(".") for value in values]
    if "-0" in texts:  # e.g. -0.0 or -1e-9; "" cannot occur ("0.0…" keeps its "0")
        texts = ["0" if text == "-0" else text for text in texts]
    return texts


def fmt_factor(value: float) -> str:
    return f"{value:.6f}"


def fmt_ts(value: float) -> str:
    """Unix seconds with millisecond precision (as on permits)."""
    return f"{value:.3f}"


def decision_fields(tick: AllocationTick, target: AllocationTarget) -> dict[str, str]:
    """One decision entry, field by field: the definition :func:`publish_chunks` encodes
    (a test compares the two on random ticks). The first eight fields after ``symbol``
    are :data:`TARGET_FIELDS`, which is also what a live target holds."""
    return {
        "symbol": target.symbol,
        "target_usd": fmt_usd(target.target_usd),
        "weight": fmt_factor(target.weight),
        "cluster_id": target.cluster_id,
        "regime": target.regime,
        "drawdown_zone": target.drawdown_zone,
        "confidence": f"{target.confidence:.4f}",
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
    }


def _pairs(*items: str) -> str:
    return "".join(map(bulk, items))


#: The fields a decision shares with every symbol of its cluster (and budget freshness).
_SHARED = attrgetter("cluster_id", "regime", "regime_factor", "cluster_factor",
                     "drawdown_zone", "drawdown_factor", "performance_factor",
                     "cluster_scale", "confidence", "fallbacks")


class _SharedText:
    """The encoded fields of each :data:`_SHARED` group, in the three runs they take in an
    entry: after ``weight``, after ``base_budget`` (up to the ``raw_target_usd`` name) and
    after ``symbol_cap_applied``. The tick-constant fields are encoded once per tick."""

    def __init__(self, tick: AllocationTick) -> None:
        self._tail = _pairs("timestamp", fmt_ts(tick.ts), "mode", tick.mode)
        self._drawdown = _pairs("drawdown", fmt_factor(tick.drawdown))
        self._cluster_cap = _pairs("cluster_cap_usd", fmt_usd(tick.max_cluster_usd))

    def __call__(self, shared: tuple) -> tuple[str, str, str]:
        (cluster_id, regime, r_factor, c_factor, zone, d_factor, p_factor, scale, confidence,
         fallbacks) = shared
        return (f"$10\r\ncluster_id\r\n{bulk(cluster_id)}$6\r\nregime\r\n{bulk(regime)}"
                f"$13\r\ndrawdown_zone\r\n{bulk(zone)}"
                f"$10\r\nconfidence\r\n{bulk(f'{confidence:.4f}')}{self._tail}",
                f"$13\r\nregime_factor\r\n{bulk(fmt_factor(r_factor))}"
                f"$14\r\ncluster_factor\r\n{bulk(fmt_factor(c_factor))}{self._drawdown}"
                f"$15\r\ndrawdown_factor\r\n{bulk(fmt_factor(d_factor))}"
                f"$18\r\nperformance_factor\r\n{bulk(fmt_factor(p_factor))}"
                "$14\r\nraw_target_usd\r\n",
                f"{self._cluster_cap}$13\r\ncluster_scale\r\n{bulk(fmt_factor(scale))}"
                f"$19\r\ncluster_cap_applied\r\n$1\r\n{'1' if scale < 1.0 else '0'}\r\n"
                f"$9\r\nfallbacks\r\n{bulk(','.join(fallbacks) or 'none')}")


#: Symbols encoded per send: Redis applies one chunk while the next is being encoded.
CHUNK_SYMBOLS = 500


def publish_chunks(tick: AllocationTick, *, stream_maxlen: int, target_ttl_sec: int,
                   chunk_symbols: int = CHUNK_SYMBOLS) -> Iterator[Packed]:
    """Every write of the cycle in symbol order (per symbol: the decision entry; in
    ``enforce`` mode then the live target's ``HSET`` and ``EXPIRE``), in chunks of
    ``chunk_symbols`` symbols. All chunks go out on one connection before any reply is
    read: one round trip.

    Encoded column by column, which at 10⁴ symbols is several times cheaper than entry by
    entry: each column of amounts is formatted in one list comprehension, the fields a
    cluster's symbols share (:data:`_SHARED`) are encoded once per cluster, and each
    entry is one f-string over the columns.
    """
    targets = tick.targets
    if not targets:
        return
    column = dict(zip(AllocationTarget._fields, zip(*targets, strict=True), strict=True))
    symbols = column["symbol"]
    shared = list(map(_SHARED, targets))
    texts = dict.fromkeys(shared)
    encode = _SharedText(tick)
    for key in texts:
        texts[key] = encode(key)
    groups = list(map(texts.__getitem__, shared))
    usd = fmt_usd_column(column["target_usd"])
    base = fmt_usd_column(column["base_budget"])
    raw = fmt_usd_column(column["raw_target_usd"])
    weight = [f"{value:.6f}" for value in column["weight"]]
    flags = ["1" if flag else "0" for flag in column["symbol_cap_applied"]]
    names = bulk_column(symbols)
    head = "*52\r\n" + _pairs("XADD", DECISION_STREAM, "MAXLEN", "~", str(stream_maxlen),
                               "*", "symbol")
    caps = _pairs("equity_usd", fmt_usd(tick.equity_usd),
                  "symbol_cap_usd", fmt_usd(tick.max_symbol_usd), "symbol_cap_applied")
    enforce = tick.mode == "enforce"
    keys = bulk_column([TARGET_PREFIX + symbol for symbol in symbols]) if enforce else names
    hset, expire = "*18\r\n$4\r\nHSET\r\n", "*3\r\n$6\r\nEXPIRE\r\n"
    ttl = bulk(str(target_ttl_sec))
    per_symbol = 3 if enforce else 1
    for start in range(0, len(targets), chunk_symbols):
        end = start + chunk_symbols
        rows = zip(names[start:end], usd[start:end], weight[start:end], base[start:end],
                   raw[start:end], flags[start:end], groups[start:end], keys[start:end],
                   strict=True)
        if enforce:
            wire = "".join([
                f"{head}{n}$10\r\ntarget_usd\r\n${len(u)}\r\n{u}\r\n$6\r\nweight\r\n"
                f"${len(w)}\r\n{w}\r\n{g[0]}$11\r\nbase_budget\r\n${len(b)}\r\n{b}\r\n"
                f"{g[1]}${len(r)}\r\n{r}\r\n{caps}$1\r\n{f}\r\n{g[2]}"
                f"{hset}{k}$10\r\ntarget_usd\r\n${len(u)}\r\n{u}\r\n$6\r\nweight\r\n"
                f"${len(w)}\r\n{w}\r\n{g[0]}{expire}{k}{ttl}"
                for n, u, w, b, r, f, g, k in rows])
        else:
            wire = "".join([
                f"{head}{n}$10\r\ntarget_usd\r\n${len(u)}\r\n{u}\r\n$6\r\nweight\r\n"
                f"${len(w)}\r\n{w}\r\n{g[0]}$11\r\nbase_budget\r\n${len(b)}\r\n{b}\r\n"
                f"{g[1]}${len(r)}\r\n{r}\r\n{caps}$1\r\n{f}\r\n{g[2]}"
                for n, u, w, b, r, f, g, _ in rows])
        yield Packed(wire.encode(), per_symbol * (min(end, len(targets)) - start))


def publish_commands(tick: AllocationTick, *, stream_maxlen: int,
                     target_ttl_sec: int) -> list[tuple[str, ...]]:
    """:func:`publish_chunks`, decoded into plain commands (tests, ``explain``-style use)."""
    return [command for packed in publish_chunks(tick, stream_maxlen=stream_maxlen,
                                                 target_ttl_sec=target_ttl_sec)
            for command in packed.commands()]
