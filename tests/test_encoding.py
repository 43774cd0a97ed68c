"""The hot paths' hand-made shortcuts give exactly what the plain code gives.

RESP spliced from cached text (:class:`Packed`) against hiredis's own packer; the
allocation and shadow writers' commands, decoded, against the plain field functions; the
regex-free number fast path against the regex; :class:`SymbolSeries` against the
exposition of a labelled prometheus_client metric.
"""

from __future__ import annotations

import math

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p29_shadow.formula import ShadowConfig, proposal_chunks, proposal_fields, propose
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from governor_core.allocation.inputs import Listing, _decimal_column, parse_values
from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.allocation.publish import (
    DECISION_STREAM,
    TARGET_FIELDS,
    decision_fields,
    fmt_usd,
    fmt_usd_column,
    publish_chunks,
    publish_commands,
)
from governor_core.efficiency import EfficiencyReading
from governor_core.metrics import SymbolSeries
from governor_core.plans import _DECIMAL, parse_decimal
from governor_core.wire import Packed, bulk

NOW = 1_800_000_000.0


@given(st.lists(st.text(), min_size=1, max_size=8))
def test_packed_matches_hiredis_and_decodes_back(args):
    packed = Packed.of(*map(bulk, args))
    assert packed.wire == hiredis.pack_command(tuple(args))
    assert packed.commands() == [tuple(args)]


def test_packed_refuses_a_wrong_command_count():
    packed = Packed(Packed.of(bulk("PING")).wire * 2, count=3)
    with pytest.raises(ValueError, match="2 commands encoded, 3 declared"):
        packed.commands()


def _target(symbol: str, cluster: str, usd: float, *, raw: float | None = None,
            fallbacks: tuple[str, ...] = ()) -> AllocationTarget:
    raw = usd if raw is None else raw
    return AllocationTarget(symbol, cluster, 50_000.0, "TREND", 1.2, 0.8, "MID", 0.7, 0.6225,
                            raw, raw > usd, 1.0, usd, usd / 100_000, 0.9, fallbacks)


@pytest.mark.parametrize("mode", ["shadow", "enforce"])
def test_allocation_writes_decode_to_the_documented_fields(mode):
    targets = (_target("BTCUSDT", "majors", 20914.63352838),
               _target("ETHUSDT", "mäjörs-€", 40000.0, raw=41829.25, fallbacks=("alpha",)))
    tick = AllocationTick(NOW, mode, 100_000.0, 0.07, targets, 40_000.0, 60_000.0)
    commands = publish_commands(tick, stream_maxlen=100, target_ttl_sec=300)
    assert len(commands) == (2 if mode == "shadow" else 6)
    entries = [c for c in commands if c[0] == "XADD"]
    assert [c[:6] for c in entries] == [
        ("XADD", "quantum:stream:allocation.decision", "MAXLEN", "~", "100", "*")] * 2
    second = dict(zip(entries[1][6::2], entries[1][7::2], strict=True))
    assert second == {
        "symbol": "ETHUSDT", "target_usd": "40000", "weight": "0.400000",
        "cluster_id": "mäjörs-€", "regime": "TREND", "drawdown_zone": "MID",
        "confidence": "0.9000", "timestamp": "1800000000.000", "mode": mode,
        "base_budget": "50000", "regime_factor": "1.200000", "cluster_factor": "0.800000",
        "drawdown": "0.070000", "drawdown_factor": "0.700000",
        "performance_factor": "0.622500", "raw_target_usd": "41829.25",
        "equity_usd": "100000", "symbol_cap_usd": "40000", "symbol_cap_applied": "1",
        "cluster_cap_usd": "60000", "cluster_scale": "1.000000", "cluster_cap_applied": "0",
        "fallbacks": "alpha"}
    if mode == "enforce":
        hset, expire = commands[4], commands[5]
        assert hset[:2] == ("HSET", "quantum:allocation:target:ETHUSDT")
        assert dict(zip(hset[2::2], hset[3::2], strict=True)) == {
            name: second[name] for name in TARGET_FIELDS}
        assert expire == ("EXPIRE", "quantum:allocation:target:ETHUSDT", "300")


READINGS = [EfficiencyReading("ok", 0.9, 0.8), EfficiencyReading("stale_eff", 0.2, 0.9, True),
            EfficiencyReading("missing_eff"), EfficiencyReading("invalid_eff", None, 0.7),
            EfficiencyReading("ok", 0.0, 1.0)]


@given(st.lists(st.tuples(st.sampled_from(READINGS),
                          st.floats(min_value=0, max_value=1e12, allow_nan=False)),
                min_size=1, max_size=12),
       st.integers(min_value=1, max_value=5))
def test_shadow_writes_decode_to_the_proposal_fields(rows, chunk):
    config = ShadowConfig(stream="quantum:stream:prop{x}", stream_maxlen=500, key_ttl_sec=60)
    symbols = [f"S{index}USDT" for index in range(len(rows))]
    readings = [reading for reading, _ in rows]
    targets = [target for _, target in rows]
    proposals = [propose(target, reading, config) for reading, target in rows]
    chunks = list(proposal_chunks(config, int(NOW), symbols, targets,
                                  [p.multiplier for p in proposals], readings, chunk))
    assert len(chunks) == -(-len(rows) // chunk)
    commands = [command for packed in chunks for command in packed.commands()]
    assert len(commands) == 3 * len(rows)
    for index, (symbol, (reading, target), proposal) in enumerate(zip(
            symbols, rows, proposals, strict=True)):
        xadd, hset, expire = commands[3 * index:3 * index + 3]
        fields = proposal_fields(symbol, target, proposal, reading, int(NOW))
        assert xadd[:6] == ("XADD", "quantum:stream:prop{x}", "MAXLEN", "~", "500", "*")
        assert dict(zip(xadd[6::2], xadd[7::2], strict=True)) == fields
        assert list(xadd[6::2]) == list(fields)  # in the documented order
        assert hset[:2] == ("HSET", f"quantum:allocation:target:proposed:{symbol}")
        assert dict(zip(hset[2::2], hset[3::2], strict=True)) == {
            **fields, "last_update_ts_epoch": str(int(NOW))}
        assert expire == ("EXPIRE", f"quantum:allocation:target:proposed:{symbol}", "60")


_AMOUNTS = st.one_of(st.floats(min_value=0, max_value=1e13, allow_nan=False),
                     st.sampled_from([0.0, -0.0, 1e-9, -1e-9, 20914.75, 123.456789015]))


@given(st.lists(st.tuples(st.sampled_from(["majors", "alts", "mäjörs-€", "a b"]), _AMOUNTS,
                          _AMOUNTS, st.booleans(), st.floats(0, 1), st.sampled_from(
                              [(), ("alpha",), ("budget",), ("regime", "cluster_stress")])),
                min_size=1, max_size=9),
       st.sampled_from(["shadow", "enforce"]), st.integers(min_value=1, max_value=4))
def test_column_encoding_equals_the_plain_decision_fields(rows, mode, chunk):
    targets = tuple(
        AllocationTarget(f"S{index}USDT", cluster, usd * 1.5, "CHOP", 0.6, 0.75, "HIGH", 0.4,
                         0.5, raw, capped, scale, usd, usd / 1e6, 0.7, fallbacks)
        for index, (cluster, usd, raw, capped, scale, fallbacks) in enumerate(rows))
    tick = AllocationTick(NOW + 0.25, mode, 1e6, 0.12, targets, 4e5, 6e5)
    chunks = list(publish_chunks(tick, stream_maxlen=100, target_ttl_sec=300,
                                 chunk_symbols=chunk))
    assert len(chunks) == -(-len(targets) // chunk)
    commands = [command for packed in chunks for command in packed.commands()]
    per_symbol = 3 if mode == "enforce" else 1
    assert len(commands) == per_symbol * len(targets)
    for index, target in enumerate(targets):
        entry = commands[per_symbol * index]
        fields = decision_fields(tick, target)
        assert entry[:6] == ("XADD", DECISION_STREAM, "MAXLEN", "~", "100", "*")
        assert list(zip(entry[6::2], entry[7::2], strict=True)) == list(fields.items())
        if mode == "enforce":
            key = f"quantum:allocation:target:{target.symbol}"
            assert commands[3 * index + 1] == ("HSET", key, *[
                item for name in TARGET_FIELDS for item in (name, fields[name])])
            assert commands[3 * index + 2] == ("EXPIRE", key, "300")


@given(st.lists(_AMOUNTS, max_size=20))
def test_usd_column_equals_fmt_usd(values):
    assert fmt_usd_column(values) == [fmt_usd(value) for value in values]


_TEXTS = st.one_of(st.from_regex(r"[0-9]{1,6}(\.[0-9]{0,4})?", fullmatch=True),
                   st.sampled_from(["", ".", "1.2.3", " 5", "-1", "1e3", "inf", "nan",
                                    "9" * 400, "٣", "+2", "7."]), st.none())


@given(st.lists(_TEXTS, max_size=12))
def test_decimal_column_equals_parse_decimal_or_declines(texts):
    values = _decimal_column(texts)
    if values is not None:
        assert values == [parse_decimal(text) for text in texts]
    elif all(isinstance(t, str) and t.isascii() and t.isdigit() and len(t) < 300
             for t in texts):
        pytest.fail("a column of plain integers must take the column path")


_PLAIN = st.from_regex(r"[0-9]{1,6}(\.[0-9]{0,4})?", fullmatch=True)


# Mostly plain columns (the column path), sometimes one odd value (the per-symbol path).
@settings(max_examples=300)
@given(st.lists(st.tuples(st.one_of(_PLAIN, _PLAIN, _PLAIN, _TEXTS,
                                    st.just(ValueError("WRONGTYPE"))),
                          _TEXTS, st.one_of(st.floats(-100, 100), st.floats(-100, 100),
                                            st.none())), max_size=10))
def test_budget_judgement_is_the_same_rule_per_symbol(rows):
    symbols = tuple(f"S{index}USDT" for index in range(len(rows)))
    replies = []
    for budget, ts_text, age in rows:
        if isinstance(budget, Exception):
            replies.append(budget)
        else:
            replies.append([budget, str(NOW - age) if age is not None else ts_text])
    listing = Listing(1e6, 0.0, None, "TREND", symbols, symbols, symbols, ())
    snapshot = parse_values(listing, [*replies, *[None] * len(symbols)], NOW, 60.0)
    expected, fallbacks = [], []
    for symbol, reply in zip(symbols, replies, strict=True):
        texts = reply if isinstance(reply, list) else [None, None]
        budget = parse_decimal(texts[0].strip() if isinstance(texts[0], str) else None)
        stamp = parse_decimal(texts[1].strip() if isinstance(texts[1], str) else None)
        if budget is None:
            fallbacks.append(("budget", symbol))
            continue
        fresh = stamp is not None and -30.0 <= NOW - stamp <= 60.0
        if not fresh:
            fallbacks.append(("budget", symbol))
        expected.append((symbol, symbol, budget, fresh))
    assert [tuple(item) for item in snapshot.symbols] == expected
    assert [f for f in snapshot.fallbacks if f[0] == "budget"] == fallbacks


def _regex_only(text: str) -> float | None:
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


@given(st.one_of(st.text(max_size=12), st.from_regex(r"[0-9.]{0,400}", fullmatch=True),
                 st.floats(allow_nan=True).map(str)))
def test_number_fast_path_agrees_with_the_regex(text):
    assert parse_decimal(text) == _regex_only(text)


def test_symbol_series_exposes_like_a_labelled_gauge():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    series = SymbolSeries("p29_target_usd", "Latest computed target in USD", registry=ours)
    gauge = Gauge("p29_target_usd", "Latest computed target in USD", ["symbol"],
                  registry=theirs)
    series.set_all({"BTCUSDT": 1.5, "ETHUSDT": 2.0})
    gauge.labels(symbol="BTCUSDT").set(1.5)
    gauge.labels(symbol="ETHUSDT").set(2.0)
    assert generate_latest(ours) == generate_latest(theirs)
    series.set_all({"ETHUSDT": 3.0})  # a symbol gone from the tick: no stale sample
    assert "BTCUSDT" not in generate_latest(ours).decode()
    assert series.value("ETHUSDT") == 3.0 and series.value("BTCUSDT") is None


def test_symbol_series_counts_every_occurrence_and_keeps_old_symbols():
    registry = CollectorRegistry()
    series = SymbolSeries("p29_targets_computed_total", "Targets computed, per symbol",
                          counter=True, registry=registry)
    series.inc_all(["BTCUSDT", "ETHUSDT"])
    series.inc_all(["BTCUSDT"])
    text = generate_latest(registry).decode()
    assert 'p29_targets_computed_total{symbol="BTCUSDT"} 2.0' in text
    assert 'p29_targets_computed_total{symbol="ETHUSDT"} 1.0' in text
    assert "# TYPE p29_targets_computed_total counter" in text


def test_permit_core_values_encode_like_hiredis():
    from governor_core.governor.gates import CORE_FIELDS
    from governor_core.governor.service import ISSUE_SCRIPT, _core_values

    permit = {name: f"{name[:3]}-{index * 7}" for index, name in enumerate(CORE_FIELDS)}
    values = tuple(permit.values())
    assert _core_values(permit) == "".join(map(bulk, values))
    assert f"*{len(values)}\r\n{_core_values(permit)}".encode() == hiredis.pack_command(values)
    # the script holds the names, in the same order
    assert "local names = {" + ", ".join(f"'{n}'" for n in CORE_FIELDS) + "}" in ISSUE_SCRIPT
