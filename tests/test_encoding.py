"""The hot paths' hand-made shortcuts give exactly what the plain code gives.

RESP spliced from cached text (:class:`Packed`) and from templates (:class:`RowTemplate`)
against hiredis's own packer; the allocation and shadow writers' commands, decoded, against
the plain field functions and their field tuples; the
regex-free number fast path against the regex; :class:`SymbolSeries` against the
exposition of a labelled prometheus_client metric.
"""

from __future__ import annotations

import math

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p29_shadow.formula import (
    PROPOSAL_FIELDS,
    ShadowConfig,
    proposal_chunks,
    proposal_fields,
    propose,
)
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from governor_core.allocation.inputs import Listing, _decimal_column, parse_values
from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.allocation.publish import (
    DECISION_FIELDS,
    DECISION_STREAM,
    TARGET_FIELDS,
    decision_fields,
    publish_chunks,
    publish_commands,
)
from governor_core.efficiency import EfficiencyReading
from governor_core.formats import fmt_usd, fmt_usd_column
from governor_core.metrics import SymbolSeries
from governor_core.parsing import _DECIMAL, parse_decimal, parse_signed_decimal
from governor_core.templates import CommandTemplate, Group, RowTemplate, Slot, field_pairs
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


def _packed(*commands: tuple[str, ...]) -> bytes:
    return b"".join(hiredis.pack_command(command) for command in commands)


def _encode(template: RowTemplate, **values) -> Packed:
    (packed,) = template.chunks(**values)
    return packed


# Values whose byte length differs from their length in characters, and texts that look
# like the template's own syntax.
_ODD_TEXTS = ["", "BTCUSDT", "mäjörs-€", "日本語", "🚀", "a\r\nb", "$3\r\n", "*2", "{value0}",
              "{literal0}", "\\r\\n", "é" * 300]


@pytest.mark.parametrize("text", _ODD_TEXTS)
@pytest.mark.parametrize("source", ["tick", "column", "group"])
def test_template_counts_and_byte_lengths(text, source):
    template = RowTemplate(CommandTemplate("HSET", "key:€", "field", Slot("value"), "n",
                                           Slot("n")))
    values = {"tick": {}, "columns": {"n": ["1", "22"]}, "groups": ()}
    if source == "tick":
        values["tick"] = {"value": text}
    elif source == "column":
        values["columns"]["value"] = [text, "plain"]
    else:
        values["groups"] = [Group(["a", "b"], lambda keys: {
            "value": [text if key == "a" else "plain" for key in keys]})]
    packed = _encode(template, **values)
    second = "plain" if source != "tick" else text
    assert packed.wire == _packed(("HSET", "key:€", "field", text, "n", "1"),
                                  ("HSET", "key:€", "field", second, "n", "22"))
    assert packed.count == 2


@pytest.mark.parametrize(("commands", "parts"), [
    # literals only: one text
    ([CommandTemplate("SET", "k", "v")], ("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",)),
    # a slot between literals; the count covers it
    ([CommandTemplate("SET", Slot("key"), "v")],
     ("*3\r\n$3\r\nSET\r\n", Slot("key"), "$1\r\nv\r\n")),
    # the literal end of one command and the start of the next are one text
    ([CommandTemplate("DEL", Slot("key")), CommandTemplate("EXPIRE", Slot("key"), "60")],
     ("*2\r\n$3\r\nDEL\r\n", Slot("key"), "*3\r\n$6\r\nEXPIRE\r\n", Slot("key"),
      "$2\r\n60\r\n")),
    # field pairs: each name a literal, merged with what comes before it
    ([CommandTemplate("HSET", Slot("key"), *field_pairs(("a", "bb")))],
     ("*6\r\n$4\r\nHSET\r\n", Slot("key"), "$1\r\na\r\n", Slot("a"), "$2\r\nbb\r\n",
      Slot("bb"))),
])
def test_template_merges_adjacent_literals_at_construction(commands, parts):
    template = RowTemplate(*commands)
    assert template.parts == parts
    assert template.slots == tuple(dict.fromkeys(p.name for p in parts if isinstance(p, Slot)))
    assert template.commands_per_row == len(commands)


def test_tick_values_merge_with_the_literals_around_them():
    template = RowTemplate(CommandTemplate("XADD", Slot("stream"), "*", "a", Slot("a"),
                                           "b", Slot("b")))
    packed = _encode(template, tick={"stream": "s", "a": "1"}, columns={"b": ["x", "yy"]})
    assert packed.commands() == [("XADD", "s", "*", "a", "1", "b", "x"),
                                 ("XADD", "s", "*", "a", "1", "b", "yy")]


def test_template_refuses_a_command_without_a_name():
    with pytest.raises(ValueError, match="starts with the command's name"):
        CommandTemplate(Slot("command"), "key")


_ROW = RowTemplate(
    CommandTemplate("XADD", Slot("stream"), "*", *field_pairs(("name", "cluster", "size",
                                                                "zone", "ts"))),
    CommandTemplate("HSET", Slot("key"), *field_pairs(("name", "size", "cluster", "zone"))),
    CommandTemplate("EXPIRE", Slot("key"), Slot("ttl")))
_CELL = st.one_of(st.sampled_from(_ODD_TEXTS), st.text(max_size=6),
                  st.from_regex(r"[0-9.]{1,8}", fullmatch=True))


@settings(max_examples=200)
@given(st.lists(st.tuples(_CELL, _CELL, st.integers(0, 3)), max_size=12),
       st.lists(st.tuples(_CELL, _CELL), min_size=4, max_size=4), _CELL,
       st.integers(min_value=1, max_value=5))
def test_template_rows_equal_the_naive_encoding(rows, group_values, stream, chunk):
    """Columns, a group (its values computed once per distinct key), tick values, three
    commands a row, a column used twice: the bytes hiredis would pack, in chunks."""
    calls = []

    def cluster_columns(keys):
        calls.append(keys)
        return {"cluster": [group_values[key][0] for key in keys],
                "zone": [group_values[key][1] for key in keys]}

    keys = [f"k:{name}" for name, _, _ in rows]
    chunks = list(_ROW.chunks(
        tick={"stream": stream, "ts": "1.5", "ttl": "60"},
        columns={"name": [name for name, _, _ in rows], "size": [size for _, size, _ in rows],
                 "key": keys},
        groups=[Group([group for _, _, group in rows], cluster_columns)], chunk_rows=chunk))
    naive = []
    for (name, size, group), key in zip(rows, keys, strict=True):
        cluster, zone = group_values[group]
        naive += [("XADD", stream, "*", "name", name, "cluster", cluster, "size", size,
                   "zone", zone, "ts", "1.5"),
                  ("HSET", key, "name", name, "size", size, "cluster", cluster, "zone", zone),
                  ("EXPIRE", key, "60")]
    assert b"".join(packed.wire for packed in chunks) == _packed(*naive)
    assert [packed.count for packed in chunks] == [
        3 * min(chunk, len(rows) - start) for start in range(0, len(rows), chunk)]
    assert calls == [list(dict.fromkeys(group for _, _, group in rows))]


def test_group_is_encoded_once_per_distinct_key():
    template = RowTemplate(CommandTemplate("HSET", Slot("key"), "zone", Slot("zone")))
    seen = []

    def zones(keys):
        seen.extend(keys)
        return {"zone": [f"zone-{key}" for key in keys]}

    packed = _encode(template, columns={"key": ["a", "b", "c", "d"]},
                     groups=[Group([2, 1, 2, 2], zones)])
    assert seen == [2, 1]
    assert packed.commands() == [("HSET", "a", "zone", "zone-2"), ("HSET", "b", "zone", "zone-1"),
                                 ("HSET", "c", "zone", "zone-2"), ("HSET", "d", "zone", "zone-2")]


def test_a_field_added_to_the_tuple_is_encoded():
    target = _target("BTCUSDT", "majors", 20914.63352838)
    tick = AllocationTick(NOW, "shadow", 100_000.0, 0.07, (target,), 40_000.0, 60_000.0)
    fields = {**decision_fields(tick, target), "new_field": "€42"}
    template = RowTemplate(CommandTemplate("XADD", DECISION_STREAM, "*",
                                           *field_pairs((*DECISION_FIELDS, "new_field"))))
    packed = _encode(template, tick=dict(list(fields.items())[1:]),
                     columns={"symbol": [target.symbol]})
    assert packed.wire.startswith(f"*{3 + 2 * len(fields)}\r\n".encode())
    assert packed.commands() == [("XADD", DECISION_STREAM, "*",
                                  *(item for pair in fields.items() for item in pair))]


@pytest.mark.parametrize(("values", "error"), [
    ({"tick": {"a": "1"}}, r"no per-row values"),
    ({"columns": {"a": ["1"]}}, r"missing \['b'\]"),
    ({"columns": {"a": ["1"], "b": ["2"], "c": ["3"]}}, r"not a slot \['c'\]"),
    ({"tick": {"a": "1"}, "columns": {"a": ["1"], "b": ["2"]}}, r"given twice \['a'\]"),
    ({"columns": {"a": ["1", "2"], "b": ["2"]}}, r"column 'b': fewer values"),
    ({"columns": {"a": ["1"]}, "groups": [Group([0, 0], lambda keys: {"b": ["x", "y"]})]},
     r"column 'a'"),
    ({"columns": {"a": ["1", "2"]}, "groups": [Group([0, 0], lambda keys: {"b": []})]},
     r"group 0: slots \['b'\] need one value for each of the 1 distinct keys"),
])
def test_template_errors_name_the_slot(values, error):
    template = RowTemplate(CommandTemplate("HSET", "k", "a", Slot("a"), "b", Slot("b")))
    with pytest.raises(ValueError, match=error):
        list(template.chunks(**values))


@pytest.mark.parametrize("values", [{"tick": {"a": 1}, "columns": {"b": ["2"]}},
                                    {"columns": {"a": ["1"], "b": [2.0]}}])
def test_template_refuses_values_that_are_not_text(values):
    template = RowTemplate(CommandTemplate("HSET", "k", "a", Slot("a"), "b", Slot("b")))
    with pytest.raises(TypeError, match="slot"):
        list(template.chunks(**values))


def test_no_rows_no_chunks():
    template = RowTemplate(CommandTemplate("DEL", Slot("key")))
    assert list(template.chunks(columns={"key": []}, chunk_rows=10)) == []


def test_plain_definitions_follow_the_field_tuples():
    target = _target("BTCUSDT", "majors", 20914.63352838)
    tick = AllocationTick(NOW, "enforce", 100_000.0, 0.07, (target,), 40_000.0, 60_000.0)
    assert tuple(decision_fields(tick, target)) == DECISION_FIELDS
    assert DECISION_FIELDS[1:1 + len(TARGET_FIELDS)] == TARGET_FIELDS
    reading = READINGS[0]
    proposal = propose(100.0, reading, ShadowConfig())
    assert tuple(proposal_fields("BTCUSDT", 100.0, proposal, reading, 1)) == PROPOSAL_FIELDS


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
        "fallbacks": "alpha", "config_id": ""}
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


@pytest.mark.parametrize(("text", "value", "signed"), [
    ("1000", 1000.0, 1000.0), ("-2.5", None, -2.5), ("+.5", 0.5, 0.5),
    # no exponent, in either function, on either path
    ("1e3", None, None), ("-1e3", None, None), ("1E+3", None, None), ("5e-1", None, None),
    ("1000e0", None, None), ("-.5E1", None, None),
    # ASCII digits only (Arabic-Indic, fullwidth, Devanagari)
    ("\u0661\u0662", None, None), ("-\u0661", None, None), ("\uff11.5", None, None),
    ("1\u0968", None, None),
])
def test_decimal_rules_refuse_exponents_and_other_digits(text, value, signed):
    assert parse_decimal(text) == value
    assert parse_signed_decimal(text) == signed
    assert bool(_DECIMAL.fullmatch(text.lstrip("-"))) is (signed is not None)


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


def test_permit_chunk_encodes_like_hiredis():
    """The issue script's call, spliced by the writer, is the command hiredis would pack
    from the documented ARGV layout (governor_core/lua/issue_permits.lua)."""
    from governor_core.config import EnvReader
    from governor_core.governor.config import GovernorConfig
    from governor_core.governor.drafting import PermitDraft
    from governor_core.governor.extensions import NO_FIELDS, PluginFields
    from governor_core.governor.gates import CORE_FIELDS
    from governor_core.governor.writer import PermitWriter
    from governor_core.plans import Plan
    from governor_core.scripts import SCRIPTS

    config = GovernorConfig.from_env(EnvReader({"GOVERNOR_CONSUMER": "c"}))
    extra = PluginFields(("eff",), bulk("é 0.5"), ({"eff": "é 0.5"},))
    drafts = []
    for number, fields in enumerate((NO_FIELDS, extra, extra)):
        plan = Plan(f"{number}-0", f"plan-{number}", "BTCUSDT", "BUY", 10.0, None)
        permit = {name: f"{name[:3]}-{number * 7}" for name in CORE_FIELDS}
        drafts.append(PermitDraft(plan, permit, fields))
    expected = ("EVALSHA", SCRIPTS["issue_permits"].sha, "5",
                "quantum:stream:permit.issued", "quantum:stream:apply.plan",
                "quantum:permit:plan-0", "quantum:permit:plan-1", "quantum:permit:plan-2",
                config.group, str(config.permit_ttl_sec), str(config.stream_maxlen), "",
                str(len(CORE_FIELDS)), *CORE_FIELDS,
                "1", "1", "eff",  # one layout: its names
                "1", "1", "é 0.5",  # one set of values, of layout 1
                *[arg for number, draft in enumerate(drafts)
                  for arg in (draft.plan.entry_id, "0" if number == 0 else "1",
                              *draft.permit.values())])
    packed = PermitWriter(config).issue(drafts)
    assert packed.wire == hiredis.pack_command(expected)
    assert packed.commands() == [expected]
