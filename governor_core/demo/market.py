"""The demo's scripted market: what other services would write to Redis, second by second.

Pure and deterministic: :func:`market_second` is a function of the script second alone (no
randomness, no clock), so two runs write the same inputs and plans. The script lasts
:data:`SCRIPT_SEC` simulated seconds in four phases of a minute each:

* 0:00 calm trend: regime TREND, drawdown 2%, efficiency mostly healthy (PEPEUSDT already
  weak, so its permits get a DOWNSIZE hint from the start);
* 1:00 drawdown rising: drawdown climbs past 5% (zone MID), the regime turns
  MEAN_REVERSION, SOLUSDT's efficiency feed goes silent at 1:30;
* 2:00 choppy market: regime CHOP, MEME stress high, SOLUSDT's efficiency goes stale
  (older than :data:`EFF_STALE_SEC`), PEPEUSDT's turns malformed (``"n/a"``), UNIUSDT's
  confidence sinks below 0.65;
* 3:00 efficiency decays: ETHUSDT and DOGEUSDT fall below 0.45 (DOWNSIZE), one malformed plan
  is dead-lettered.

AAVEUSDT never has an efficiency hash (``missing_eff``); the DEFI cluster never publishes an
alpha (the ``alpha`` fallback of P2.9). One plan a second, round-robin over the symbols, with
notionals from 1,500 to 30,000 USD, so the larger ones are clamped to the cap.

Every plan carries ``ts``, the simulated second it is sent, as a real producer stamps its
plans. The governor's plan-age gate (``GOVERNOR_MAX_PLAN_AGE_SEC``, 30 s, left at its
default) measures a plan's age from ``ts`` against the service's (simulated) clock, so
each demo plan is 0 s old when read and none is denied ``stale_plan``. Without ``ts`` the
gate would fall back to the entry id, i.e. the *real* time of the run, months after the
simulated clock: a plan "from the future", passing for the wrong reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from governor_core.keys import (
    BUDGET_PREFIX,
    CLUSTER_MAP_KEY,
    EFFICIENCY_PREFIX,
    PORTFOLIO_KEY,
    REGIME_STREAM,
    STRESS_PREFIX,
)
from governor_core.redis_io import Command

SCRIPT_SEC = 240
PHASE_SEC = 60
PHASES = ("calm trend", "drawdown rising", "choppy market", "efficiency decays")
#: The demo's P31_EFF_TTL_SEC and P31_STALE_SEC (600 s in production), so that a feed that
#: goes silent within the four-minute script is seen as stale.
EFF_STALE_SEC = 60
#: 2026-01-01T00:00:00Z: the simulated clock's start, fixed so runs are reproducible.
SIM_START = 1_767_225_600.0

CLUSTERS = {
    "BTCUSDT": "L1", "ETHUSDT": "L1", "SOLUSDT": "L1",
    "DOGEUSDT": "MEME", "PEPEUSDT": "MEME",
    "UNIUSDT": "DEFI", "AAVEUSDT": "DEFI",
}
SYMBOLS = tuple(CLUSTERS)
BUDGETS = {"BTCUSDT": 30_000, "ETHUSDT": 20_000, "SOLUSDT": 12_000, "DOGEUSDT": 8_000,
           "PEPEUSDT": 6_000, "UNIUSDT": 9_000, "AAVEUSDT": 7_000}
NOTIONALS = (1_500, 3_000, 6_000, 12_000, 30_000)
START_EQUITY = 100_000.0
#: What to watch for, printed before the table.
SCRIPT_NOTES = (
    "The script, four simulated minutes (watch the table change):",
    "  0:00 calm trend         regime TREND, drawdown 2%; PEPEUSDT's efficiency",
    "                          already weak (DOWNSIZE)",
    "  1:00 drawdown rising    drawdown passes 5% (zone MID, targets x0.7), regime",
    "                          MEAN_REVERSION; SOLUSDT's efficiency feed stops at",
    "                          1:30",
    "  2:00 choppy market      regime CHOP (x0.6), MEME cluster stressed; SOLUSDT's",
    "                          efficiency goes stale, PEPEUSDT's turns malformed",
    "                          (\"n/a\"), UNIUSDT's confidence sinks",
    "  3:00 efficiency decays  ETHUSDT and DOGEUSDT fall below 0.45 (DOWNSIZE); one",
    "                          malformed plan is dead-lettered",
    "  throughout: AAVEUSDT has no efficiency feed; the DEFI cluster publishes no",
    "  alpha (a P2.9 fallback); one plan a second, round-robin over the symbols,",
    "  1.5k to 30k USD: the large ones are clamped",
)
#: The one malformed plan of the script (at this second): it goes to the dead-letter stream.
BAD_PLAN_SEC = 200

PLAN_STREAM_MAXLEN = 10_000


@dataclass(frozen=True, slots=True)
class MarketSecond:
    """One script second: the inputs written, the plans sent, and what a header shows.

    ``writes`` are Redis commands (inputs only: efficiency, budgets, portfolio, stress,
    regime, cluster map); ``plans`` are plan-stream entries, in order.
    """

    second: int
    phase: str
    regime: str
    drawdown: float
    equity_usd: float
    writes: tuple[Command, ...]
    plans: tuple[dict[str, str], ...]


def ramp(t: float, t0: float, t1: float, v0: float, v1: float) -> float:
    """``v0`` until ``t0``, ``v1`` from ``t1``, linear in between."""
    if t <= t0:
        return v0
    if t >= t1:
        return v1
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


def regime_at(t: int) -> str:
    if t < 90:
        return "TREND"
    return "MEAN_REVERSION" if t < 120 else "CHOP"


def drawdown_at(t: int) -> float:
    return round(ramp(t, 60, 140, 0.02, 0.072), 4)


def efficiency_at(symbol: str, t: int) -> tuple[str, str, int] | None:
    """``(efficiency_score, confidence, ts second)`` as the feed writes it at ``t``, or
    ``None`` when it writes nothing (never for AAVEUSDT; after 1:30 for SOLUSDT)."""
    fresh = t - t % 10  # the feed publishes every ten seconds
    if symbol == "BTCUSDT":
        return "0.82", "0.90", fresh
    if symbol == "ETHUSDT":
        return f"{ramp(fresh, 60, 200, 0.70, 0.25):.2f}", "0.88", fresh
    if symbol == "SOLUSDT":
        return ("0.62", "0.85", fresh) if fresh <= 90 else None
    if symbol == "DOGEUSDT":
        return f"{ramp(fresh, 30, 200, 0.56, 0.18):.2f}", "0.80", fresh
    if symbol == "PEPEUSDT":
        return ("n/a" if fresh >= 140 else "0.40"), "0.80", fresh
    if symbol == "UNIUSDT":
        return "0.58", f"{ramp(fresh, 100, 160, 0.85, 0.50):.2f}", fresh
    return None


def cluster_inputs_at(cluster: str, t: int) -> dict[str, str]:
    if cluster == "L1":
        return {"stress": f"{ramp(t, 60, 180, 0.15, 0.30):.3f}",
                "alpha": f"{ramp(t, 60, 200, 0.9, 0.1):.3f}"}
    if cluster == "MEME":
        return {"stress": f"{ramp(t, 60, 160, 0.30, 0.80):.3f}",
                "alpha": f"{ramp(t, 60, 200, 0.4, 0.0):.3f}"}
    return {"stress": "0.250"}  # DEFI publishes no alpha


def plans_at(t: int, start: float = SIM_START) -> tuple[dict[str, str], ...]:
    """The plans sent at script second ``t``, each stamped ``ts`` with the simulated time
    (see the module docstring: the plan-age gate then measures simulated ages)."""
    symbol = SYMBOLS[t % len(SYMBOLS)]
    rnd = t // len(SYMBOLS)
    stamp = str(int(start + t))
    plan = {"plan_id": f"demo-{t:04d}-{symbol}", "symbol": symbol,
            "side": "BUY" if rnd % 2 == 0 else "SELL",
            "notional_usd": str(NOTIONALS[t % len(NOTIONALS)]), "ts": stamp}
    if t != BAD_PLAN_SEC:
        return (plan,)
    bad = {"plan_id": f"demo-{t:04d}-bad", "symbol": "ETHUSDT", "side": "BUY",
           "notional_usd": "lots", "ts": stamp}
    return (plan, bad)


def market_second(t: int, start: float = SIM_START) -> MarketSecond:
    """Everything the market does at script second ``t`` (0 ≤ t < :data:`SCRIPT_SEC`)."""
    now = start + t
    drawdown = drawdown_at(t)
    equity = round(START_EQUITY * (1.0 - (drawdown - 0.02)), 2)
    regime = regime_at(t)
    writes: list[Command] = []
    if t == 0:
        flat = [part for item in CLUSTERS.items() for part in item]
        writes.append(("HSET", CLUSTER_MAP_KEY, *flat))
    if t % 5 == 0:  # portfolio, budgets and cluster stress: every five seconds
        writes.append(("HSET", PORTFOLIO_KEY, "equity_usd", f"{equity:.2f}",
                       "drawdown", f"{drawdown:.4f}", "timestamp", str(int(now))))
        for symbol, budget in BUDGETS.items():
            writes.append(("HSET", BUDGET_PREFIX + symbol,
                           "budget_usd", str(budget), "timestamp", str(int(now))))
        for cluster in sorted(set(CLUSTERS.values())):
            fields = [part for item in cluster_inputs_at(cluster, t).items() for part in item]
            writes.append(("HSET", STRESS_PREFIX + cluster, *fields,
                           "timestamp", str(int(now))))
    if t % 15 == 0:  # the regime detector publishes every fifteen seconds
        writes.append(("XADD", REGIME_STREAM, "MAXLEN", "~", "1000", "*",
                       "regime", regime, "ts", str(int(now))))
    if t % 10 == 0:
        for symbol in SYMBOLS:
            eff = efficiency_at(symbol, t)
            if eff is not None:
                score, conf, ts = eff
                writes.append(("HSET", EFFICIENCY_PREFIX + symbol,
                               "efficiency_score", score, "confidence", conf,
                               "ts", str(int(start + ts)), "mode", "demo"))
    return MarketSecond(t, PHASES[min(t // PHASE_SEC, len(PHASES) - 1)], regime, drawdown,
                        equity, tuple(writes), plans_at(t, start))
