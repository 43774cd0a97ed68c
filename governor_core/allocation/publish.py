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


def decision_fields(target: AllocationTarget, tick: AllocationTick) -> dict[str, str]:
    """A decision stream entry: the target fields, then every input, factor and cap."""
    return dict(_decision_pairs(target, tick, _TickText.of(tick), {}))


class _TickText:
    """Strings that are the same for every target of a tick, formatted once."""

    __slots__ = ("cluster_cap", "drawdown", "equity", "mode", "symbol_cap", "timestamp")

    @classmethod
    def of(cls, tick: AllocationTick) -> _TickText:
        text = cls()
        text.timestamp, text.mode = fmt_ts(tick.ts), tick.mode
        text.drawdown, text.equity = fmt_factor(tick.drawdown), fmt_usd(tick.equity_usd)
        text.symbol_cap = fmt_usd(tick.max_symbol_usd)
        text.cluster_cap = fmt_usd(tick.max_cluster_usd)
        return text


def _decision_pairs(target: AllocationTarget, tick: AllocationTick, text: _TickText,
                    factor_text: dict[float, str]) -> tuple[tuple[str, str], ...]:
    def factor(value: float) -> str:
        # Factors repeat across a cluster's symbols: format each distinct value once.
        formatted = factor_text.get(value)
        if formatted is None:
            formatted = factor_text[value] = fmt_factor(value)
        return formatted

    target_usd = fmt_usd(target.target_usd)
    return (
        ("symbol", target.symbol),
        ("target_usd", target_usd),
        ("weight", fmt_factor(target.weight)),
        ("cluster_id", target.cluster_id),
        ("regime", target.regime),
        ("drawdown_zone", target.drawdown_zone),
        ("confidence", f"{target.confidence:.4f}"),
        ("timestamp", text.timestamp),
        ("mode", text.mode),
        ("base_budget", fmt_usd(target.base_budget)),
        ("regime_factor", factor(target.regime_factor)),
        ("cluster_factor", factor(target.cluster_factor)),
        ("drawdown", text.drawdown),
        ("drawdown_factor", factor(target.drawdown_factor)),
        ("performance_factor", factor(target.performance_factor)),
        ("raw_target_usd", fmt_usd(target.raw_target_usd)
         if target.raw_target_usd != target.target_usd else target_usd),
        ("equity_usd", text.equity),
        ("symbol_cap_usd", text.symbol_cap),
        ("symbol_cap_applied", "1" if target.symbol_cap_applied else "0"),
        ("cluster_cap_usd", text.cluster_cap),
        ("cluster_scale", factor(target.cluster_scale)),
        ("cluster_cap_applied", "1" if target.cluster_scale < 1.0 else "0"),
        ("fallbacks", ",".join(target.fallbacks) or "none"),
    )


def publish_commands(tick: AllocationTick, *, stream_maxlen: int,
                     target_ttl_sec: int) -> list[Command]:
    """Every write of the cycle, in symbol order, for one round trip."""
    head = ("XADD", DECISION_STREAM, "MAXLEN", "~", str(stream_maxlen), "*")
    ttl = str(target_ttl_sec)
    text = _TickText.of(tick)
    factor_text: dict[float, str] = {}
    commands: list[Command] = []
    enforce = tick.mode == "enforce"
    for target in tick.targets:
        pairs = _decision_pairs(target, tick, text, factor_text)
        commands.append((*head, *[part for pair in pairs for part in pair]))
        if enforce:
            key = TARGET_KEY.format(target.symbol)
            # pairs[1:9] are the target fields, in TARGET_FIELDS order.
            commands.append(("HSET", key, *[part for pair in pairs[1:9] for part in pair]))
            commands.append(("EXPIRE", key, ttl))
    return commands
