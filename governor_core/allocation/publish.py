"""A cycle's writes, as one batch of commands (pure: the same tick gives the same bytes).

* ``quantum:stream:allocation.decision`` (both modes): one entry per symbol, ``XADD MAXLEN ~
  P29_STREAM_MAXLEN``, with the target fields and every factor, cap and fallback.
* ``quantum:allocation:target:{symbol}`` (``enforce`` only): the SPEC 4 target fields, TTL
  ``TARGET_TTL_SEC``.

Stream entry ids are left to Redis (``*``), as for every stream of this project; all else a
cycle sends is a function of the tick alone.
"""

from __future__ import annotations

from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.redis_io import Command

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


def target_fields(target: AllocationTarget, tick: AllocationTick) -> dict[str, str]:
    """The live target hash of SPEC 4, in :data:`TARGET_FIELDS` order."""
    return {
        "target_usd": fmt_usd(target.target_usd),
        "weight": fmt_factor(target.weight),
        "cluster_id": target.cluster_id,
        "regime": target.regime,
        "drawdown_zone": target.drawdown_zone,
        "confidence": f"{target.confidence:.4f}",
        "timestamp": fmt_ts(tick.ts),
        "mode": tick.mode,
    }


def decision_fields(target: AllocationTarget, tick: AllocationTick) -> dict[str, str]:
    """A decision stream entry: the target fields, then every input, factor and cap."""
    return {
        "symbol": target.symbol,
        **target_fields(target, tick),
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


def publish_commands(tick: AllocationTick, *, stream_maxlen: int,
                     target_ttl_sec: int) -> list[Command]:
    """Every write of the cycle, in symbol order, for one round trip."""
    maxlen = str(stream_maxlen)
    ttl = str(target_ttl_sec)
    commands: list[Command] = []
    enforce = tick.mode == "enforce"
    for target in tick.targets:
        entry = decision_fields(target, tick)
        commands.append(("XADD", DECISION_STREAM, "MAXLEN", "~", maxlen, "*",
                         *[part for item in entry.items() for part in item]))
        if enforce:
            key = TARGET_KEY.format(target.symbol)
            fields = target_fields(target, tick)
            commands.append(("HSET", key, *[part for item in fields.items() for part in item]))
            commands.append(("EXPIRE", key, ttl))
    return commands
