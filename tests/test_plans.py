"""Table tests of plan validation (SPEC 3.1): parse_plan never raises, every rule is enforced."""

from __future__ import annotations

import pytest

from governor_core.parsing import parse_decimal
from governor_core.plans import Plan, PlanRejection, parse_plan

GOOD = {"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "100"}


def with_(**changes: str | None) -> dict[str, str]:
    fields = dict(GOOD)
    for name, value in changes.items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


@pytest.mark.parametrize(("fields", "expected"), [
    (GOOD, Plan("1-0", "p-1", "BTCUSDT", "BUY", 100.0, None)),
    (with_(side="SELL", notional_usd="0.5", ts="1700000000.25"),
     Plan("1-0", "p-1", "BTCUSDT", "SELL", 0.5, 1700000000.25)),
    (with_(plan_id="A" * 128), Plan("1-0", "A" * 128, "BTCUSDT", "BUY", 100.0, None)),
    (with_(plan_id="a.B_c:9-z"), Plan("1-0", "a.B_c:9-z", "BTCUSDT", "BUY", 100.0, None)),
    (with_(plan_id="x"), Plan("1-0", "x", "BTCUSDT", "BUY", 100.0, None)),
    (with_(symbol="BT"), Plan("1-0", "p-1", "BT", "BUY", 100.0, None)),
    (with_(symbol="A" * 32), Plan("1-0", "p-1", "A" * 32, "BUY", 100.0, None)),
    (with_(symbol="1000PEPEUSDT"), Plan("1-0", "p-1", "1000PEPEUSDT", "BUY", 100.0, None)),
    (with_(notional_usd="1e3"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 1000.0, None)),
    (with_(notional_usd="+2.5"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 2.5, None)),
    (with_(notional_usd=".5"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 0.5, None)),
    (with_(notional_usd="0.000001"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 1e-6, None)),
    ({**GOOD, "extra": "ignored"}, Plan("1-0", "p-1", "BTCUSDT", "BUY", 100.0, None)),
], ids=["minimal", "sell-with-ts", "plan-id-128", "plan-id-charset", "plan-id-1",
        "symbol-2", "symbol-32", "symbol-digits", "exponent", "plus-sign", "leading-dot",
        "tiny", "extra-field"])
def test_valid_plans(fields: dict[str, str], expected: Plan) -> None:
    assert parse_plan("1-0", fields) == expected


@pytest.mark.parametrize(("fields", "code"), [
    (with_(plan_id=None), "bad_plan_id"),
    (with_(plan_id=""), "bad_plan_id"),
    (with_(plan_id="A" * 129), "bad_plan_id"),
    (with_(plan_id="has space"), "bad_plan_id"),
    (with_(plan_id="slash/no"), "bad_plan_id"),
    (with_(plan_id="p-1\n"), "bad_plan_id"),
    (with_(plan_id="ünicode"), "bad_plan_id"),
    (with_(plan_id="{braces}"), "bad_plan_id"),
    (with_(symbol=None), "bad_symbol"),
    (with_(symbol="btcusdt"), "bad_symbol"),
    (with_(symbol="BTCusdt"), "bad_symbol"),
    (with_(symbol="B"), "bad_symbol"),
    (with_(symbol="A" * 33), "bad_symbol"),
    (with_(symbol="BTC-USDT"), "bad_symbol"),
    (with_(symbol=" BTCUSDT"), "bad_symbol"),
    (with_(side=None), "bad_side"),
    (with_(side="buy"), "bad_side"),
    (with_(side="LONG"), "bad_side"),
    (with_(side=""), "bad_side"),
    (with_(notional_usd=None), "bad_notional"),
    (with_(notional_usd=""), "bad_notional"),
    (with_(notional_usd="1_000"), "bad_notional"),
    (with_(notional_usd=" 5"), "bad_notional"),
    (with_(notional_usd="5 "), "bad_notional"),
    (with_(notional_usd="nan"), "bad_notional"),
    (with_(notional_usd="NaN"), "bad_notional"),
    (with_(notional_usd="inf"), "bad_notional"),
    (with_(notional_usd="infinity"), "bad_notional"),
    (with_(notional_usd="1e999"), "bad_notional"),
    (with_(notional_usd="-1"), "bad_notional"),
    (with_(notional_usd="0"), "bad_notional"),
    (with_(notional_usd="0.0"), "bad_notional"),
    (with_(notional_usd="-0"), "bad_notional"),
    (with_(notional_usd="0x10"), "bad_notional"),
    (with_(notional_usd="1,000"), "bad_notional"),
    (with_(notional_usd="$100"), "bad_notional"),
    (with_(ts=""), "bad_ts"),
    (with_(ts="yesterday"), "bad_ts"),
    (with_(ts="nan"), "bad_ts"),
    (with_(ts="inf"), "bad_ts"),
    (with_(ts="-5"), "bad_ts"),
    # the first failing rule wins, in field order
    ({"symbol": "lower", "side": "HOLD"}, "bad_plan_id"),
    (with_(symbol="x", side="HOLD", notional_usd="nan"), "bad_symbol"),
    (with_(side="HOLD", notional_usd="nan"), "bad_side"),
    ({}, "bad_plan_id"),
])
def test_rejections(fields: dict[str, str], code: str) -> None:
    result = parse_plan("7-1", fields)
    assert isinstance(result, PlanRejection)
    assert result.code == code
    assert result.entry_id == "7-1"
    assert dict(result.fields) == fields  # the original fields go to the dead letter
    field = code.removeprefix("bad_").replace("notional", "notional_usd")
    assert field in result.message


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1.0), ("1.5", 1.5), ("1e3", 1000.0), ("1E-3", 0.001), (".5", 0.5), ("5.", 5.0),
    (None, None), ("", None), ("nan", None), ("inf", None), ("1_0", None), (" 1", None),
    ("1e999", None), ("abc", None), ("--1", None),
])
def test_parse_decimal(text: str | None, value: float | None) -> None:
    assert parse_decimal(text) == value
