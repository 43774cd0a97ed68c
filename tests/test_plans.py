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
    (with_(notional_usd="1000"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 1000.0, None)),
    (with_(notional_usd="+2.5"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 2.5, None)),
    (with_(notional_usd=".5"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 0.5, None)),
    (with_(notional_usd="0.000001"), Plan("1-0", "p-1", "BTCUSDT", "BUY", 1e-6, None)),
    ({**GOOD, "extra": "ignored"}, Plan("1-0", "p-1", "BTCUSDT", "BUY", 100.0, None)),
], ids=["minimal", "sell-with-ts", "plan-id-128", "plan-id-charset", "plan-id-1",
        "symbol-2", "symbol-32", "symbol-digits", "thousand", "plus-sign", "leading-dot",
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
    # no exponent notation (SPEC 2: decimal strings; README: plain decimals)
    (with_(notional_usd="1e3"), "bad_notional"),
    (with_(notional_usd="1E3"), "bad_notional"),
    (with_(notional_usd="2.5e+2"), "bad_notional"),
    (with_(notional_usd="1e-3"), "bad_notional"),
    # ASCII digits only
    (with_(notional_usd="\u0661\u0660\u0660"), "bad_notional"),  # Arabic-Indic 100
    (with_(notional_usd="\uff11\uff10"), "bad_notional"),  # fullwidth 10
    (with_(ts="1.7e9"), "bad_ts"),
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


@pytest.mark.parametrize(("fields", "message"), [
    (with_(notional_usd=None), "notional_usd missing: expected a plain decimal number > 0"),
    (with_(notional_usd="1e3"), "notional_usd '1e3': expected a plain decimal number > 0"),
    (with_(plan_id=None), "plan_id missing: expected 1-128 of A-Za-z0-9._:-"),
    (with_(plan_id=""), "plan_id '': expected 1-128 of A-Za-z0-9._:-"),
    (with_(symbol=None), "symbol missing: expected 2-32 of A-Z0-9"),
    (with_(side=None), "side missing: expected BUY or SELL"),
    (with_(side="buy"), "side 'buy': expected BUY or SELL"),
    (with_(ts="soon"), "ts 'soon': expected Unix epoch seconds"),
])
def test_rejection_messages_say_missing_not_none(fields: dict[str, str], message: str) -> None:
    result = parse_plan("7-1", fields)
    assert isinstance(result, PlanRejection)
    assert result.message.startswith(message)
    assert "None" not in result.message


@pytest.mark.parametrize(("text", "value"), [
    ("1", 1.0), ("1.5", 1.5), (".5", 0.5), ("5.", 5.0), ("+2", 2.0), ("007", 7.0),
    ("1000000.25", 1000000.25),
    (None, None), ("", None), (".", None), ("nan", None), ("inf", None), ("1_0", None),
    (" 1", None), ("1\n", None), ("abc", None), ("--1", None), ("1.2.3", None),
    ("9" * 400, None),  # overflows to inf
    # exponents are refused: "plain decimals" (README), decimal strings (SPEC 2)
    ("1e3", None), ("1E-3", None), ("1e999", None), ("2.5e+2", None), (".5e1", None),
    # ASCII digits only, on the regex path too
    ("\u0661", None), ("\u0661.5", None), ("+\u0661", None), ("\uff15", None),
    ("\u0967\u0968", None),  # Devanagari 12
])
def test_parse_decimal(text: str | None, value: float | None) -> None:
    assert parse_decimal(text) == value
