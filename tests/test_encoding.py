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
from hypothesis import given
from hypothesis import strategies as st
from p29_shadow.formula import ProposalWriter, ShadowConfig, proposal_fields, propose
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.allocation.publish import TARGET_FIELDS, publish_commands
from governor_core.efficiency import EfficiencyReading
from governor_core.metrics import SymbolSeries
from governor_core.plans import _DECIMAL, parse_decimal
from governor_core.redis_io import Packed, bulk

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


@pytest.mark.parametrize("reading", [
    EfficiencyReading("ok", 0.9, 0.8), EfficiencyReading("stale_eff", 0.2, 0.9, True),
    EfficiencyReading("missing_eff"), EfficiencyReading("invalid_eff", None, 0.7)])
def test_shadow_writes_decode_to_the_proposal_fields(reading):
    config = ShadowConfig(stream="quantum:stream:prop{x}", stream_maxlen=500, key_ttl_sec=60)
    writer = ProposalWriter(config, int(NOW))
    proposal = propose(1234.5, reading, config)
    packed = writer.commands("BTCUSDT", 1234.5, proposal.multiplier, reading)
    xadd, hset, expire = [command for p in packed for command in p.commands()]
    fields = proposal_fields("BTCUSDT", 1234.5, proposal, reading, int(NOW))
    assert xadd[:6] == ("XADD", "quantum:stream:prop{x}", "MAXLEN", "~", "500", "*")
    assert dict(zip(xadd[6::2], xadd[7::2], strict=True)) == fields
    assert hset[:2] == ("HSET", "quantum:allocation:target:proposed:BTCUSDT")
    assert dict(zip(hset[2::2], hset[3::2], strict=True)) == {
        **fields, "last_update_ts_epoch": str(int(NOW))}
    assert expire == ("EXPIRE", "quantum:allocation:target:proposed:BTCUSDT", "60")


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
