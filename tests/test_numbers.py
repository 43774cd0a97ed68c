"""Numbers are ASCII plain decimals everywhere (issue 14, item 2): one table of strings, and
every place that reads a number from Redis (plans, efficiency incl. ``ts``, the governor's
caps, the allocation inputs, the P3.1 plugins through the efficiency reader) reads each
string exactly as :func:`~governor_core.parsing.parse_decimal` says.

Plan fields are exact; hash values are read after trimming surrounding ASCII whitespace
(the ``hash`` columns), by the governor and the allocation service alike.
"""

from __future__ import annotations

import math

import pytest

from governor_core.allocation.inputs import Listing, parse_listing, parse_values
from governor_core.efficiency import read_efficiency
from governor_core.governor.gates import NO_CAP, Cap
from governor_core.governor.inputs import judge_gates
from governor_core.parsing import parse_decimal, parse_signed_decimal, trim
from governor_core.plans import Plan, parse_plan

NOW = 1_800_000_000.0
SAME = object()  # the hash column equals the exact one

# text, parse_decimal, parse_signed_decimal, in a hash (trimmed): decimal, signed
TABLE = [
    ("123", 123.0, 123.0, SAME, SAME),
    ("0.25", 0.25, 0.25, SAME, SAME),
    ("+5", 5.0, 5.0, SAME, SAME),
    (".5", 0.5, 0.5, SAME, SAME),
    ("5.", 5.0, 5.0, SAME, SAME),
    ("007", 7.0, 7.0, SAME, SAME),
    ("-0", None, -0.0, SAME, SAME),
    ("-2.5", None, -2.5, SAME, SAME),
    # other scripts' digits: Arabic-Indic, full-width, Devanagari, mixed
    ("\u0661\u0662\u0663", None, None, SAME, SAME),
    ("\uff11\uff12", None, None, SAME, SAME),
    ("1\u0968", None, None, SAME, SAME),
    ("\u0663.\u0665", None, None, SAME, SAME),
    ("-\u0661", None, None, SAME, SAME),
    # what float() takes and a plain decimal is not
    ("1e3", None, None, SAME, SAME),
    ("1E-3", None, None, SAME, SAME),
    ("1_000", None, None, SAME, SAME),
    ("nan", None, None, SAME, SAME),
    ("NaN", None, None, SAME, SAME),
    ("inf", None, None, SAME, SAME),
    ("-inf", None, None, SAME, SAME),
    ("infinity", None, None, SAME, SAME),
    ("9" * 400, None, None, SAME, SAME),  # overflows to inf
    ("0x10", None, None, SAME, SAME),
    # not numbers at all
    ("", None, None, SAME, SAME),
    (".", None, None, SAME, SAME),
    ("+", None, None, SAME, SAME),
    ("-", None, None, SAME, SAME),
    ("-+5", None, None, SAME, SAME),
    ("+-5", None, None, SAME, SAME),
    ("--5", None, None, SAME, SAME),
    ("1.2.3", None, None, SAME, SAME),
    ("5\x00", None, None, SAME, SAME),
    # whitespace: refused exactly, ignored around a hash value if it is ASCII whitespace
    (" 5", None, None, 5.0, 5.0),
    ("5 ", None, None, 5.0, 5.0),
    ("\t0.5\r\n", None, None, 0.5, 0.5),
    (" -1 ", None, None, None, -1.0),
    ("5 5", None, None, None, None),
    ("\u00a05", None, None, None, None),  # no-break space
    ("5\u3000", None, None, None, None),  # ideographic space
    ("\x1c5", None, None, None, None),  # str.strip() would drop this separator
    ("\u20035", None, None, None, None),  # em space
    # bad bytes, as the Redis layer decodes them (surrogateescape)
    ("\udcff", None, None, SAME, SAME),
    ("5\udcff", None, None, SAME, SAME),
    ("\udcff5", None, None, SAME, SAME),
    ("1\udce9.5", None, None, SAME, SAME),
    (" 5\udcff ", None, None, SAME, SAME),
]
ROWS = [(text, decimal, signed, decimal if in_hash is SAME else in_hash,
         signed if in_hash_signed is SAME else in_hash_signed)
        for text, decimal, signed, in_hash, in_hash_signed in TABLE]
IDS = [ascii(row[0])[:24] for row in ROWS]


def same(value: float | None, expected: float | None) -> bool:
    return value == expected and (value is None or math.copysign(1, value) == math.copysign(
        1, expected))


@pytest.mark.parametrize(("text", "decimal", "signed", "in_hash", "in_hash_signed"), ROWS,
                         ids=IDS)
def test_the_shared_parser(text, decimal, signed, in_hash, in_hash_signed) -> None:
    assert same(parse_decimal(text), decimal)
    assert same(parse_signed_decimal(text), signed)
    assert same(parse_decimal(trim(text)), in_hash)
    assert same(parse_signed_decimal(trim(text)), in_hash_signed)


@pytest.mark.parametrize("value", [None, b"5", 5, 5.0, ["5"]])
def test_anything_but_text_is_not_a_number(value) -> None:
    assert parse_decimal(value) is None and parse_signed_decimal(value) is None
    assert trim(value) is None


PLAN = {"plan_id": "p-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "100"}


@pytest.mark.parametrize(("text", "decimal", "signed", "in_hash", "in_hash_signed"), ROWS,
                         ids=IDS)
def test_plans_read_the_exact_rule(text, decimal, signed, in_hash, in_hash_signed) -> None:
    notional = parse_plan("1-0", {**PLAN, "notional_usd": text})
    if decimal is not None and decimal > 0:
        assert notional == Plan("1-0", "p-1", "BTCUSDT", "BUY", decimal, None)
    else:
        assert notional.code == ("bad_encoding" if "\udcff" in text or "\udce9" in text
                                 else "bad_notional")
    stamped = parse_plan("1-0", {**PLAN, "ts": text})
    if decimal is not None:
        assert isinstance(stamped, Plan) and stamped.ts == decimal
    else:
        assert not isinstance(stamped, Plan)


@pytest.mark.parametrize(("text", "decimal", "signed", "in_hash", "in_hash_signed"), ROWS,
                         ids=IDS)
def test_efficiency_reads_the_hash_rule(text, decimal, signed, in_hash,
                                        in_hash_signed) -> None:
    def reason(**fields: str) -> str:
        base = {"efficiency_score": "0.5", "confidence": "0.9", "ts": str(NOW)}
        return read_efficiency({**base, **fields}, NOW, min_conf=0.65, stale_sec=600).reason

    unit = in_hash is not None and in_hash <= 1
    assert (reason(efficiency_score=text) != "invalid_eff") is unit
    assert (reason(confidence=text) != "invalid_eff") is unit
    assert (reason(ts=text) == "invalid_eff") is (in_hash is None)  # e.g. ١٢٣: not stale_eff


@pytest.mark.parametrize(("text", "decimal", "signed", "in_hash", "in_hash_signed"), ROWS,
                         ids=IDS)
def test_governor_caps_read_the_hash_rule(text, decimal, signed, in_hash,
                                          in_hash_signed) -> None:
    expected = NO_CAP if in_hash is None else Cap(in_hash, "allocation")
    assert judge_gates(["BTCUSDT"], ["none", None, text, None]).caps["BTCUSDT"] == expected
    expected = NO_CAP if in_hash is None else Cap(in_hash, "budget")
    assert judge_gates(["BTCUSDT"], ["none", None, None, text]).caps["BTCUSDT"] == expected


LISTING = Listing(100_000.0, 0.02, None, "TREND", ("BTCUSDT",), ("majors",), ("majors",), ())


@pytest.mark.parametrize(("text", "decimal", "signed", "in_hash", "in_hash_signed"), ROWS,
                         ids=IDS)
def test_allocation_inputs_read_the_hash_rule(text, decimal, signed, in_hash,
                                              in_hash_signed) -> None:
    stamp = str(NOW)
    budget = parse_values(LISTING, [[text, stamp], ["0.2", "0.5", stamp]], NOW, 60.0)
    assert [item.base_budget for item in budget.symbols] == ([] if in_hash is None
                                                            else [in_hash])
    stamped = parse_values(LISTING, [["100", text], ["0.2", "0.5", stamp]], NOW, 60.0)
    assert stamped.symbols[0].budget_fresh is False  # no row is within 60 s of NOW
    cluster = parse_values(LISTING, [["100", stamp], [text, text, stamp]], NOW, 60.0)
    stress = cluster.clusters["majors"]
    assert stress.stress == (in_hash if in_hash is not None and in_hash <= 1 else None)
    assert same(stress.alpha, in_hash_signed)

    portfolio = {"equity_usd": text, "drawdown": "0.02", "timestamp": stamp}
    listing = parse_listing([[], portfolio, []], NOW, 60.0, {})
    assert listing.portfolio_problem == (None if in_hash else "malformed")
    listing = parse_listing([[], {**portfolio, "equity_usd": "1", "drawdown": text}, []],
                            NOW, 60.0, {})
    ok = in_hash is not None and in_hash <= 1
    assert listing.portfolio_problem == (None if ok else "malformed")


@pytest.mark.parametrize("text", ["\u0661\u0668\u0660\u0660", "1800000000\udcff", "1.8e9",
                                  "\uff11"])
def test_odd_timestamps_are_never_fresh(text) -> None:
    portfolio = {"equity_usd": "1", "drawdown": "0", "timestamp": text}
    assert parse_listing([[], portfolio, []], NOW, 60.0, {}).portfolio_problem == "stale"
    regime = [["1-0", ["regime", "TREND", "ts", text]]]
    assert parse_listing([[], portfolio, regime], NOW, 60.0, {}).regime is None
    stamp = str(NOW)
    assert parse_listing([[], {**portfolio, "timestamp": stamp},
                          [["1-0", ["regime", "TREND", "ts", f" {stamp}\n"]]]], NOW, 60.0,
                         {}).regime == "TREND"
