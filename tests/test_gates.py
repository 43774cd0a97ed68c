"""Table tests of the governor's gates and the core permit (SPEC 3.2)."""

from __future__ import annotations

import pytest

from governor_core.formats import fmt_ts, fmt_usd
from governor_core.governor.gates import (
    CORE_FIELDS,
    NO_CAP,
    Cap,
    choose_cap,
    core_permit,
    decide,
    is_stale,
    plan_time,
    refused_fields,
)
from governor_core.plans import Plan


@pytest.mark.parametrize(("target", "budget", "cap"), [
    ("500", "1000", Cap(500.0, "allocation")),
    ("0", "1000", Cap(0.0, "allocation")),
    (None, "1000", Cap(1000.0, "budget")),
    (None, "0", Cap(0.0, "budget")),
    (None, None, NO_CAP),
    # a malformed or negative target falls back to the budget, and then to none
    ("abc", "1000", Cap(1000.0, "budget")),
    ("nan", "1000", Cap(1000.0, "budget")),
    ("inf", "1000", Cap(1000.0, "budget")),
    ("-5", "1000", Cap(1000.0, "budget")),
    ("", "1000", Cap(1000.0, "budget")),
    ("1_000", "1000", Cap(1000.0, "budget")),
    ("abc", "xyz", NO_CAP),
    (None, "-1", NO_CAP),
])
def test_choose_cap(target: str | None, budget: str | None, cap: Cap) -> None:
    assert choose_cap(target, budget) == cap


@pytest.mark.parametrize(("notional", "kill", "cap", "decision", "reason", "allowed"), [
    (100.0, True, Cap(500.0, "allocation"), "DENY", "kill_switch", 0.0),
    (100.0, True, NO_CAP, "DENY", "kill_switch", 0.0),
    (100.0, False, NO_CAP, "ALLOW", "no_cap", 100.0),
    (100.0, False, Cap(500.0, "allocation"), "ALLOW", "within_cap", 100.0),
    (500.0, False, Cap(500.0, "allocation"), "ALLOW", "within_cap", 500.0),  # exactly the cap
    (500.01, False, Cap(500.0, "allocation"), "CLAMP", "above_cap", 500.0),
    (2000.0, False, Cap(1000.0, "budget"), "CLAMP", "above_cap", 1000.0),
    (1.0, False, Cap(0.0, "budget"), "CLAMP", "above_cap", 0.0),
])
def test_decide(notional: float, kill: bool, cap: Cap, decision: str, reason: str,
                allowed: float) -> None:
    gate = decide(notional, kill, cap)
    assert (gate.decision, gate.reason, gate.allowed_notional_usd, gate.cap) == (
        decision, reason, allowed, cap)


@pytest.mark.parametrize(("notional", "kill", "stale", "cap", "decision", "reason", "allowed"), [
    # gate 1a: a stale plan is denied whatever its cap...
    (100.0, False, True, NO_CAP, "DENY", "stale_plan", 0.0),
    (100.0, False, True, Cap(500.0, "allocation"), "DENY", "stale_plan", 0.0),
    (2000.0, False, True, Cap(1000.0, "budget"), "DENY", "stale_plan", 0.0),
    # ... the kill switch (gate 1) has precedence...
    (100.0, True, True, Cap(500.0, "allocation"), "DENY", "kill_switch", 0.0),
    (100.0, True, True, NO_CAP, "DENY", "kill_switch", 0.0),
    # ... and a fresh plan goes on to the cap
    (100.0, False, False, NO_CAP, "ALLOW", "no_cap", 100.0),
    (2000.0, False, False, Cap(1000.0, "budget"), "CLAMP", "above_cap", 1000.0),
])
def test_decide_with_the_plan_age_gate(notional: float, kill: bool, stale: bool, cap: Cap,
                                       decision: str, reason: str, allowed: float) -> None:
    gate = decide(notional, kill, cap, stale=stale)
    assert (gate.decision, gate.reason, gate.allowed_notional_usd, gate.cap) == (
        decision, reason, allowed, cap)


NOW = 1_700_000_000.0


@pytest.mark.parametrize(("entry_id", "ts", "max_age", "made", "stale"), [
    # from the plan's ts
    ("1-0", NOW - 29.9, 30, NOW - 29.9, False),
    ("1-0", NOW - 30.0, 30, NOW - 30.0, False),  # exactly the limit: not older than it
    ("1-0", NOW - 30.001, 30, NOW - 30.001, True),
    ("1-0", NOW - 3600, 30, NOW - 3600, True),
    ("1-0", NOW + 5, 30, NOW + 5, False),  # stamped in the future: age < 0
    # without ts, from the stream entry id's milliseconds (the entry id says 1970 above,
    # but a plan's own ts wins)
    (f"{int((NOW - 10) * 1000)}-0", None, 30, NOW - 10, False),
    (f"{int((NOW - 31) * 1000)}-7", None, 30, NOW - 31, True),
    (f"{int((NOW - 30.5) * 1000)}-0", None, 30, NOW - 30.5, True),
    (f"{int((NOW + 60) * 1000)}-0", None, 30, NOW + 60, False),
    # 0 turns the gate off
    ("1-0", NOW - 10**6, 0, NOW - 10**6, False),
    ("1-0", None, 0, 0.001, False),
])
def test_plan_age_gate(entry_id: str, ts: float | None, max_age: int, made: float,
                       stale: bool) -> None:
    plan = Plan(entry_id, "p-1", "BTCUSDT", "BUY", 100.0, ts)
    assert plan_time(plan) == pytest.approx(made)
    assert is_stale(plan, NOW, max_age) is stale


@pytest.mark.parametrize(("value", "text"), [
    (20914.75, "20914.75"), (100.0, "100"), (0.0, "0"), (-0.0, "0"), (0.1 + 0.2, "0.3"),
    (1e-9, "0"), (0.00000001, "0.00000001"), (123456789.123456789, "123456789.12345679"),
    (1e15, "1000000000000000"), (2.5, "2.5"),
])
def test_fmt_usd(value: float, text: str) -> None:
    assert fmt_usd(value) == text


def test_fmt_ts() -> None:
    assert fmt_ts(1700000000.0) == "1700000000.000"
    assert fmt_ts(1700000000.1234) == "1700000000.123"


def test_core_permit_fields_and_values() -> None:
    plan = Plan("1-0", "p-1", "ETHUSDT", "SELL", 2500.5, None)
    gate = decide(plan.notional_usd, False, Cap(1000.0, "budget"))
    permit = core_permit(plan, gate, cooldown_sec=15, ttl_sec=60, now=1700000000.5)
    assert list(permit) == list(CORE_FIELDS)
    assert permit == {
        "plan_id": "p-1", "symbol": "ETHUSDT", "side": "SELL", "notional_usd": "2500.5",
        "decision": "CLAMP", "reason": "above_cap", "allowed_notional_usd": "1000",
        "cap_usd": "1000", "cap_source": "budget", "cooldown_sec": "15",
        "issued_ts": "1700000000.500", "expires_ts": "1700000060.500"}


def test_core_permit_without_cap_has_empty_cap_usd() -> None:
    plan = Plan("1-0", "p-2", "ETHUSDT", "BUY", 10.0, None)
    permit = core_permit(plan, decide(10.0, False, NO_CAP), cooldown_sec=0, ttl_sec=1,
                         now=0.0)
    assert (permit["cap_usd"], permit["cap_source"], permit["decision"]) == ("", "none",
                                                                              "ALLOW")


@pytest.mark.parametrize(("fields", "refused"), [
    ({"eff_score": "1"}, []),
    ({"decision": "ALLOW"}, ["decision"]),
    ({"cap_usd": "1", "eff_score": "1"}, ["cap_usd"]),
    ({"undeclared": "x"}, ["undeclared"]),
    ({"eff_score": 1}, ["eff_score"]),
    ({1: "x"}, ["1"]),
])
def test_refused_fields(fields: dict, refused: list[str]) -> None:
    assert refused_fields(fields, frozenset({"eff_score", "decision", "cap_usd"})) == refused
