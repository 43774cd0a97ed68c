"""The governor's gates and the core permit: pure functions of plain values (SPEC 3.2).

Decisions, in this order:

* kill switch on → ``DENY`` / ``kill_switch`` (``allowed_notional_usd`` 0);
* plan older than ``GOVERNOR_MAX_PLAN_AGE_SEC`` (gate 1a, :func:`is_stale`) → ``DENY`` /
  ``stale_plan`` (``allowed_notional_usd`` 0): a backlog after an outage, a crash or a
  stopped governor never becomes a burst of permits at stale prices;
* no cap known → ``ALLOW`` / ``no_cap`` (fail-open: the cap gate never blocks on missing data);
* ``notional_usd <= cap`` → ``ALLOW`` / ``within_cap``;
* above the cap → ``CLAMP`` / ``above_cap`` with ``allowed_notional_usd = cap``.

The cap is the live allocation target when one exists (``cap_source=allocation``), else the
P2.8 budget (``budget``), else none (``none``). A target or budget that is not a finite
number ≥ 0 is ignored, as if absent, so the next source is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from governor_core.formats import fmt_ts, fmt_usd
from governor_core.parsing import parse_decimal
from governor_core.plans import Plan

CORE_FIELDS = ("plan_id", "symbol", "side", "notional_usd", "decision", "reason",
               "allowed_notional_usd", "cap_usd", "cap_source", "cooldown_sec", "issued_ts",
               "expires_ts")
CORE_FIELD_SET = frozenset(CORE_FIELDS)
DECISIONS = ("ALLOW", "CLAMP", "DENY")
#: Every reason a permit can have, and its decision.
REASON_DECISIONS = {"kill_switch": "DENY", "stale_plan": "DENY", "no_cap": "ALLOW",
                    "within_cap": "ALLOW", "above_cap": "CLAMP"}


@dataclass(frozen=True, slots=True)
class Cap:
    usd: float | None
    source: str  # "allocation", "budget" or "none"


NO_CAP = Cap(None, "none")


@dataclass(frozen=True, slots=True)
class GateDecision:
    decision: str
    reason: str
    allowed_notional_usd: float
    cap: Cap


def choose_cap(target_usd: str | None, budget_usd: str | None) -> Cap:
    target = parse_decimal(target_usd)
    if target is not None:
        return Cap(target, "allocation")
    budget = parse_decimal(budget_usd)
    if budget is not None:
        return Cap(budget, "budget")
    return NO_CAP


def plan_time(plan: Plan) -> float:
    """When the plan was made: its ``ts``, else its stream entry id's millisecond time (the
    time Redis appended it)."""
    if plan.ts is not None:
        return plan.ts
    millis, _dash, _seq = plan.entry_id.partition("-")
    return int(millis) / 1000 if millis.isascii() and millis.isdigit() else 0.0


def is_stale(plan: Plan, now: float, max_age_sec: float) -> bool:
    """Gate 1a: whether the plan is older than ``max_age_sec`` at ``now`` (0: the gate is
    off). A plan stamped in the future (clock skew) is not stale: its age is negative."""
    return max_age_sec > 0 and now - plan_time(plan) > max_age_sec


def decide(notional_usd: float, kill_switch: bool, cap: Cap, *,
           stale: bool = False) -> GateDecision:
    """The gates of SPEC 3.2 in order: the kill switch (it takes precedence), then a stale
    plan, then the cap."""
    if kill_switch:
        return GateDecision("DENY", "kill_switch", 0.0, cap)
    if stale:
        return GateDecision("DENY", "stale_plan", 0.0, cap)
    if cap.usd is None:
        return GateDecision("ALLOW", "no_cap", notional_usd, cap)
    if notional_usd <= cap.usd:
        return GateDecision("ALLOW", "within_cap", notional_usd, cap)
    return GateDecision("CLAMP", "above_cap", cap.usd, cap)


def core_permit(plan: Plan, gate: GateDecision, *, cooldown_sec: int, ttl_sec: int,
                now: float) -> dict[str, str]:
    """The permit's core fields, in :data:`CORE_FIELDS` order; all values are strings."""
    return {
        "plan_id": plan.plan_id,
        "symbol": plan.symbol,
        "side": plan.side,
        "notional_usd": fmt_usd(plan.notional_usd),
        "decision": gate.decision,
        "reason": gate.reason,
        "allowed_notional_usd": fmt_usd(gate.allowed_notional_usd),
        "cap_usd": "" if gate.cap.usd is None else fmt_usd(gate.cap.usd),
        "cap_source": gate.cap.source,
        "cooldown_sec": str(cooldown_sec),
        "issued_ts": fmt_ts(now),
        "expires_ts": fmt_ts(now + ttl_sec),
    }


def refused_fields(fields: Mapping[str, str], declared: frozenset[str]) -> list[str]:
    """The names in a plugin's returned fields that the host will not write.

    A field is refused when it is a core field, was not declared by the plugin's
    ``permit_fields``, or is not a ``str`` → ``str`` pair.
    """
    return [str(name) for name, value in fields.items()
            if not isinstance(name, str) or not isinstance(value, str)
            or name in CORE_FIELD_SET or name not in declared]
