"""Values the allocation host hands to plugins (the ``on_allocation_tick`` contract)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AllocationTarget:
    """One symbol's P2.9 target with every factor that produced it (SPEC 4).

    ``fallbacks`` names each data source that was missing or stale for this symbol
    (``budget``, ``regime``, ``cluster_stress``, ``alpha``), in that order.
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
    """

    ts: float
    mode: str
    equity_usd: float
    drawdown: float
    targets: tuple[AllocationTarget, ...]
