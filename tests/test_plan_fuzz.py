"""Fuzzing the plan parser against SPEC 3.1 (issue 14, item 3).

The oracle below is written from the spec's words, not from the parser: ``plan_id``
required, 1-128 of ``A-Za-z0-9._:-``; ``symbol`` required, 2-32 of ``A-Z0-9``; ``side``
``BUY`` or ``SELL``; ``notional_usd`` finite and > 0, a plain decimal string of ASCII digits
(SPEC 2, ``docs/schema.md``); ``ts`` optional, epoch seconds as a plain decimal; other
fields allowed. A byte that is not UTF-8 (a lone surrogate, as the Redis layer decodes it)
in any name or value is ``bad_encoding`` first. Rules are checked in that order; the first
failing one is the code. Every fuzzed entry must be a :class:`Plan` equal to the oracle's or
the oracle's rejection, with a bounded message naming the field and writable fields.
"""

from __future__ import annotations

import math
import string

from hypothesis import example, given, settings
from hypothesis import strategies as st

from governor_core.plans import Plan, PlanRejection, parse_plan

ID_CHARS = set(string.ascii_letters + string.digits + "._:-")
SYMBOL_CHARS = set(string.ascii_uppercase + string.digits)
DIGITS = set(string.digits)


def plain_decimal(text: str) -> float | None:
    """SPEC 2's "decimal string", as the schema page words it: ASCII digits, at most one
    dot, an optional leading ``+``, finite; None otherwise."""
    body = text[1:] if text.startswith("+") else text
    whole, _, fraction = body.partition(".")
    if not (whole or fraction) or not set(whole + fraction) <= DIGITS:
        return None
    value = float(body)
    return value if math.isfinite(value) else None


def undecodable(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


def oracle(fields: dict[str, str]) -> str | tuple:
    """The rejection code, or the plan's ``(plan_id, symbol, side, notional, ts)``."""
    if any(undecodable(name) or undecodable(value) for name, value in fields.items()):
        return "bad_encoding"
    plan_id = fields.get("plan_id")
    if plan_id is None or not 1 <= len(plan_id) <= 128 or not set(plan_id) <= ID_CHARS:
        return "bad_plan_id"
    symbol = fields.get("symbol")
    if symbol is None or not 2 <= len(symbol) <= 32 or not set(symbol) <= SYMBOL_CHARS:
        return "bad_symbol"
    side = fields.get("side")
    if side not in ("BUY", "SELL"):
        return "bad_side"
    notional = plain_decimal(fields.get("notional_usd", ""))
    if notional is None or not notional > 0:
        return "bad_notional"
    ts = None
    if "ts" in fields:
        ts = plain_decimal(fields["ts"])
        if ts is None:
            return "bad_ts"
    return (plan_id, symbol, side, notional, ts)


_CHARS = st.one_of(st.characters(), st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF,
                                                  categories=["Cs"]),
                   st.sampled_from("0123456789.+-eE \t\n_\u0661\uff11\u0968\u00a0"))
_NUMBERS = st.one_of(
    st.from_regex(r"\+?[0-9]{0,20}(\.[0-9]{0,8})?", fullmatch=True),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-10**30, max_value=10**400).map(str),
    st.sampled_from(["NaN", "nan", "inf", "-inf", "infinity", "1e308", "1e309", "-1", "0",
                     "0.0", "-0", "+0", ".0", "5.", ".5", "+.5", " 5", "5 ", "1_000", "",
                     "\u0661\u0662\u0663", "\uff11\uff12", "12\udcff", "9" * 400]),
    st.just("9" * 1_000_000))
_VALUES = st.one_of(st.text(_CHARS, max_size=40), _NUMBERS,
                    st.sampled_from(["BUY", "SELL", "buy", "Buy", " BUY", "HOLD", "BTCUSDT",
                                     "A" * 32, "A" * 33, "p-1", "a" * 128, "a" * 129, "X",
                                     "\udcff", "BTC\udcffUSDT"]),
                    st.from_regex(r"[A-Za-z0-9._:-]{1,130}", fullmatch=True),
                    st.from_regex(r"[A-Z0-9]{1,34}", fullmatch=True))
_CORE = ("plan_id", "symbol", "side", "notional_usd", "ts")
_NAMES = st.one_of(st.sampled_from(_CORE), st.text(_CHARS, max_size=12),
                   st.sampled_from(["error", "error_code", "source_id", "Plan_id", "ts\udcff"]))


@st.composite
def entries(draw) -> dict[str, str]:
    """Mostly-valid plans with some fields dropped, replaced or added."""
    fields = {"plan_id": draw(st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True)),
              "symbol": draw(st.from_regex(r"[A-Z0-9]{2,32}", fullmatch=True)),
              "side": draw(st.sampled_from(["BUY", "SELL"])),
              "notional_usd": draw(st.from_regex(r"[1-9][0-9]{0,6}(\.[0-9]{1,4})?",
                                                 fullmatch=True))}
    if draw(st.booleans()):
        fields["ts"] = draw(st.from_regex(r"1[0-9]{9}(\.[0-9]{1,3})?", fullmatch=True))
    for name in draw(st.lists(st.sampled_from(_CORE), max_size=2)):
        fields.pop(name, None)
    for name, value in draw(st.lists(st.tuples(_NAMES, _VALUES), max_size=3)):
        fields[name] = value
    return fields


def check(fields: dict[str, str]) -> None:
    expected = oracle(fields)
    parsed = parse_plan("1-0", fields)
    if isinstance(expected, tuple):
        assert parsed == Plan("1-0", *expected)
        return
    assert isinstance(parsed, PlanRejection) and parsed.code == expected, (parsed, expected)
    # bounded: a 1 MB field is echoed as 64 characters and its size; so is the plan_id
    # a log line gives as context
    assert len(parsed.message) < 1000
    assert parsed.plan_id is None or len(parsed.plan_id) <= 129
    # writable: every name and value encodes (the dead letter gets exactly these)
    for name, value in parsed.fields.items():
        name.encode(), value.encode()
    if expected != "bad_encoding":
        field = expected.removeprefix("bad_").replace("notional", "notional_usd")
        assert parsed.message.startswith(field) and parsed.fields == fields
        return
    # every original field is kept, its bad bytes written as \xNN
    assert len(parsed.fields) == len(fields)
    kept = list(parsed.fields.items())
    for (name, value), (kept_name, kept_value) in zip(fields.items(), kept, strict=True):
        assert kept_value == _escaped(value) and kept_name.startswith(_escaped(name))
    assert "not valid UTF-8" in parsed.message


def _escaped(text: str) -> str:
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return raw.decode("utf-8", "backslashreplace")


@settings(max_examples=400, deadline=None)
@given(entries())
@example({"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY",
          "notional_usd": "\u0661\u0662\u0663"})
@example({"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1e308"})
@example({"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "9" * 10**6})
@example({"plan_id": "p\udcff1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1"})
@example({"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1",
          "a\udcff": "x", "a\\xff": "y"})
def test_fuzzed_plans_match_the_spec(fields: dict[str, str]) -> None:
    check(fields)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_NAMES, _VALUES, max_size=7))
def test_arbitrary_field_maps_match_the_spec(fields: dict[str, str]) -> None:
    check(fields)
