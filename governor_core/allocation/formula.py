"""The P2.9 allocation formula (SPEC 4): plain values and a config in, targets out.

No Redis, no clock, no metrics. The service reads inputs, decides which are missing or stale
(``None`` here means "unavailable, use the fallback"), calls :func:`compute_targets` and
publishes what it returns.

::

    target_usd = base_budget × regime_factor × cluster_factor × drawdown_factor
                 × performance_factor
    regime_factor      TREND 1.2, MEAN_REVERSION 1.0, CHOP 0.6; 1.0 if unavailable/unknown
    cluster_factor     clamp(1 - stress, CLUSTER_STRESS_MIN, CLUSTER_STRESS_MAX);
                       1.0 if stress unavailable
    drawdown_factor    LOW  drawdown <  DD_LOW_THRESHOLD                       → DD_FACTOR_LOW
                       MID  DD_LOW_THRESHOLD ≤ drawdown ≤ DD_HIGH_THRESHOLD    → DD_FACTOR_MID
                       HIGH drawdown >  DD_HIGH_THRESHOLD                      → DD_FACTOR_HIGH
                       (so exactly 0.05 is MID and exactly 0.15 is still MID)
    performance_factor 1 / (1 + exp(-alpha)); 1.0 if alpha unavailable

The performance quirk, kept on purpose because the design states it: a *missing* alpha gives
1.0 (neutral pass-through) while an alpha of exactly 0 gives sigmoid(0) = 0.5, i.e. a
cluster with a known, perfectly average alpha gets half the allocation of one with no alpha.

A symbol whose budget is stale gets ``target = base_budget`` with every factor 1.0 (the
design's "pass-through"); caps still apply.

Caps, in order: each target is limited to ``MAX_SYMBOL_PCT × equity``; then each cluster whose
sum exceeds ``MAX_CLUSTER_PCT × equity`` has all its targets scaled by
``max_cluster / cluster_total``.

Confidence (our rule; the design leaves it open): ``1 - Σ penalty`` over the fallbacks used
for the symbol, with penalties budget 0.5, regime 0.2, cluster_stress 0.2, alpha 0.1, floored
at 0. A fully informed target has 1.0; a stale-budget pass-through has 0.5 (its other inputs
are not used, so they add no penalty); every factor on its default also gives 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from governor_core.allocation.model import AllocationTarget
from governor_core.config import setting

REGIMES = ("TREND", "MEAN_REVERSION", "CHOP")
UNKNOWN_REGIME = "UNKNOWN"
ZONES = ("LOW", "MID", "HIGH")
#: Data sources that can fall back for one symbol, in the order ``fallbacks`` lists them.
FALLBACK_PENALTY = {"budget": 0.5, "regime": 0.2, "cluster_stress": 0.2, "alpha": 0.1}


@dataclass(frozen=True, slots=True)
class FormulaConfig:
    """The formula's parameters, with the design's defaults and their variables."""

    regime_trend: float = setting("REGIME_FACTOR_TREND", 1.2, min=0.0)
    regime_mr: float = setting("REGIME_FACTOR_MR", 1.0, min=0.0)
    regime_chop: float = setting("REGIME_FACTOR_CHOP", 0.6, min=0.0)
    dd_low_threshold: float = setting("DD_LOW_THRESHOLD", 0.05, min=0.0, max=1.0)
    dd_high_threshold: float = setting("DD_HIGH_THRESHOLD", 0.15, min=0.0, max=1.0)
    dd_factor_low: float = setting("DD_FACTOR_LOW", 1.0, min=0.0)
    dd_factor_mid: float = setting("DD_FACTOR_MID", 0.7, min=0.0)
    dd_factor_high: float = setting("DD_FACTOR_HIGH", 0.4, min=0.0)
    cluster_stress_min: float = setting("CLUSTER_STRESS_MIN", 0.3, min=0.0, max=1.0)
    cluster_stress_max: float = setting("CLUSTER_STRESS_MAX", 1.0, min=0.0, max=1.0)
    max_symbol_pct: float = setting("MAX_SYMBOL_PCT", 0.40, min=0.0, max=1.0)
    max_cluster_pct: float = setting("MAX_CLUSTER_PCT", 0.60, min=0.0, max=1.0)

    def regime_factors(self) -> dict[str, float]:
        return {"TREND": self.regime_trend, "MEAN_REVERSION": self.regime_mr,
                "CHOP": self.regime_chop}


class SymbolInput(NamedTuple):
    """One budgeted symbol. ``budget_fresh`` is False when the budget is stale.

    A named tuple for the same reason as :class:`AllocationTarget` (10⁴ per tick)."""

    symbol: str
    cluster_id: str
    base_budget: float
    budget_fresh: bool = True


@dataclass(frozen=True, slots=True)
class ClusterInput:
    """A cluster's stress and alpha; ``None`` means missing or stale (use the fallback)."""

    stress: float | None = None
    alpha: float | None = None


NO_CLUSTER_DATA = ClusterInput()


def regime_factor(regime: str | None, config: FormulaConfig) -> tuple[str, float]:
    """The regime's name and factor; an unavailable or unknown regime is ``UNKNOWN``, 1.0."""
    factors = config.regime_factors()
    if regime in factors:
        return regime, factors[regime]
    return UNKNOWN_REGIME, 1.0


def drawdown_zone(drawdown: float, config: FormulaConfig) -> tuple[str, float]:
    if drawdown < config.dd_low_threshold:
        return "LOW", config.dd_factor_low
    if drawdown <= config.dd_high_threshold:
        return "MID", config.dd_factor_mid
    return "HIGH", config.dd_factor_high


def cluster_factor(stress: float | None, config: FormulaConfig) -> float:
    if stress is None:
        return 1.0
    return min(config.cluster_stress_max, max(config.cluster_stress_min, 1.0 - stress))


def sigmoid(alpha: float) -> float:
    """1 / (1 + e^-alpha), without overflow for large negative alphas."""
    if alpha >= 0:
        return 1.0 / (1.0 + math.exp(-alpha))
    z = math.exp(alpha)
    return z / (1.0 + z)


def performance_factor(alpha: float | None) -> float:
    """sigmoid(alpha), or 1.0 when alpha is unavailable (see the module docstring)."""
    return 1.0 if alpha is None else sigmoid(alpha)


def confidence(fallbacks: Sequence[str]) -> float:
    return max(0.0, 1.0 - sum(FALLBACK_PENALTY[source] for source in fallbacks))


def compute_targets(equity_usd: float, drawdown: float, regime: str | None,
                    symbols: Sequence[SymbolInput], clusters: Mapping[str, ClusterInput],
                    config: FormulaConfig) -> tuple[AllocationTarget, ...]:
    """Every symbol's target, with its factors, caps and fallbacks, in ``symbols`` order.

    :param equity_usd: portfolio equity, > 0 (the caller skips the cycle otherwise).
    :param drawdown: portfolio drawdown as a fraction (0.07 = 7%).
    :param regime: the current regime, or ``None`` when missing or stale.
    :param clusters: cluster id → its inputs; an absent cluster has no data.
    Every target is finite and ≥ 0 when budgets are finite and ≥ 0.
    """
    regime_name, r_factor = regime_factor(regime, config)
    zone, dd_factor = drawdown_zone(drawdown, config)
    max_symbol = config.max_symbol_pct * equity_usd
    max_cluster = config.max_cluster_pct * equity_usd

    # Factors depend on the cluster only: work them out once per cluster, not per symbol.
    # Each entry: fallbacks, (regime, cluster, drawdown, performance factors), product,
    # confidence.
    Known = tuple[tuple[str, ...], tuple[float, float, float, float], float, float]
    per_cluster: dict[str, Known] = {}
    stale_budget: Known = (("budget",), (1.0, 1.0, 1.0, 1.0), 1.0, confidence(("budget",)))
    drafts = []
    totals: dict[str, float] = {}
    for item in symbols:
        cluster_id = item.cluster_id
        if not item.budget_fresh:
            known = stale_budget
        else:
            known = per_cluster.get(cluster_id)
            if known is None:
                data = clusters.get(cluster_id, NO_CLUSTER_DATA)
                fallbacks = tuple(source for source, missing in (
                    ("regime", regime_name == UNKNOWN_REGIME),
                    ("cluster_stress", data.stress is None),
                    ("alpha", data.alpha is None)) if missing)
                factors = (r_factor, cluster_factor(data.stress, config), dd_factor,
                           performance_factor(data.alpha))
                known = per_cluster[cluster_id] = (fallbacks, factors, math.prod(factors),
                                                   confidence(fallbacks))
        raw = item.base_budget * known[2]
        capped = raw if raw <= max_symbol else max_symbol
        totals[cluster_id] = totals.get(cluster_id, 0.0) + capped
        drafts.append((item, known, raw, capped))

    scales = {cluster: (max_cluster / total if total > max_cluster else 1.0)
              for cluster, total in totals.items()}

    targets = []
    append = targets.append
    for item, (fallbacks, factors, _, conf), raw, capped in drafts:
        scale = scales[item.cluster_id]
        target = capped * scale
        append(AllocationTarget(
            item.symbol, item.cluster_id, item.base_budget, regime_name, factors[0],
            factors[1], zone, factors[2], factors[3], raw, raw > max_symbol, scale, target,
            target / equity_usd, conf, fallbacks))
    return tuple(targets)
