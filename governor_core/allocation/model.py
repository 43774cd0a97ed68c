"""Values the allocation host hands to plugins (the ``on_allocation_tick`` contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


class AllocationTarget(NamedTuple):
    """One symbol's P2.9 target with every factor that produced it (SPEC 4).

    ``fallbacks`` names each data source that was missing or stale for this symbol
    (``budget``, ``regime``, ``cluster_stress``, ``alpha``), in that order.

    A named tuple, not a frozen dataclass: immutable all the same, and built about seven
    times faster (a frozen dataclass sets each of its 16 fields through
    ``object.__setattr__``), which matters at 10⁴ targets per tick.
    """

    symbol: str
    cluster_id: str
    base_budget: float
    regime: str
    regime_factor: float
    cluster_factor: float
    drawdown_zone: str
    drawdown_factor: float
    performance_factor: float
    raw_target_usd: float
    symbol_cap_applied: bool
    cluster_scale: float
    target_usd: float
    weight: float
    confidence: float
    fallbacks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AllocationTick:
    """Everything one allocation cycle computed, in symbol order.

    ``mode`` is ``shadow`` or ``enforce``; ``ts`` is the cycle's injected clock time.
    ``max_symbol_usd`` and ``max_cluster_usd`` are the cycle's caps (``MAX_SYMBOL_PCT`` and
    ``MAX_CLUSTER_PCT`` × equity). ``targets`` holds every symbol with a usable budget; in
    ``shadow`` mode none of them was written as a live target. ``config_id`` names the
    allocation host's configuration snapshot (``quantum:config:snapshot:{config_id}``,
    SPEC 8), which covers its active plugins' settings too: a plugin records it beside
    what it writes for the tick.
    """

    ts: float
    mode: str
    equity_usd: float
    drawdown: float
    targets: tuple[AllocationTarget, ...]
    max_symbol_usd: float
    max_cluster_usd: float
    config_id: str = ""
