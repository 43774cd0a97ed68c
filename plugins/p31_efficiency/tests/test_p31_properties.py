"""Property tests: whatever the efficiency hash holds, the P3.1 path never raises and always
gives a valid, non-blocking hint."""

from __future__ import annotations

import math

import fakeredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from p31_efficiency.formula import EfficiencyConfig, downsize_hint, hint_fields
from p31_efficiency.plugin import EfficiencyPlugin
from prometheus_client import CollectorRegistry

from governor_core.efficiency import REASONS, read_efficiency
from governor_core.hookspecs import Reads
from governor_core.plans import Plan
from governor_core.redis_io import execute_commands

NOW = 1_700_000_000.0
CONFIG = EfficiencyConfig()
FIELD_NAMES = ("efficiency_score", "confidence", "ts", "mode")

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-2, max_value=2).map(str),
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e309", "", " ", "abc", "0x1",
                     "1_0", "0.2", "0", "1", "-0", "+0.5", ".5", "5."]),
)
timestamps = st.one_of(
    st.floats(min_value=NOW - 10_000, max_value=NOW + 10_000).map(repr),
    st.just(repr(NOW * 1000)),  # milliseconds
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
)
hash_values = st.fixed_dictionaries(
    {},
    optional={"efficiency_score": st.one_of(numbers, st.text(max_size=12)),
              "confidence": st.one_of(numbers, st.text(max_size=12)),
              "ts": timestamps,
              "mode": st.text(max_size=8)},
)
hashes = st.one_of(
    st.none(),
    hash_values,
    st.builds(lambda base, extra: {**extra, **base}, hash_values,
              st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10),
                              max_size=4)),
)
configs = st.builds(
    EfficiencyConfig,
    min_conf=st.floats(0, 1),
    downsize_threshold=st.floats(0.001, 1),
    min_factor=st.floats(0, 1),
    max_extra_cooldown_sec=st.integers(0, 10_000),
    eff_ttl_sec=st.floats(0, 10_000),
)


def assert_valid(fields: dict[str, str], config: EfficiencyConfig) -> None:
    assert fields["eff_action"] in ("NONE", "DOWNSIZE")
    assert fields["eff_reason"] in REASONS
    factor = float(fields["eff_factor"])
    assert math.isfinite(factor)
    # four decimals: the floor is checked at that precision
    assert round(config.min_factor, 4) <= factor <= 1.0
    assert fields["downsize_factor"] == fields["eff_factor"]
    assert fields["eff_stale"] in ("0", "1")
    cooldown = int(fields["extra_cooldown_sec"])
    assert 0 <= cooldown <= config.max_extra_cooldown_sec
    if fields["eff_reason"] != "ok":
        assert (fields["eff_action"], fields["eff_factor"], cooldown) == ("NONE", "1.0000", 0)
    if fields["eff_action"] == "DOWNSIZE":
        assert fields["eff_reason"] == "ok"
    for name in ("eff_score", "eff_confidence"):
        if fields[name]:
            assert 0.0 <= float(fields[name]) <= 1.0


@given(hashes, st.floats(min_value=0, max_value=4e9), configs)
@settings(max_examples=400, deadline=None)
def test_formula_path_never_raises(fields: dict[str, str] | None, now: float,
                                   config: EfficiencyConfig) -> None:
    reading = read_efficiency(fields, now, min_conf=config.min_conf,
                              stale_sec=config.eff_ttl_sec)
    assert_valid(hint_fields(reading, downsize_hint(reading, config)), config)


def configured_plugin() -> tuple[EfficiencyPlugin, CollectorRegistry]:
    plugin = EfficiencyPlugin()
    registry = CollectorRegistry()
    plugin.on_configure(host="governor", env={}, registry=registry)
    return plugin, registry


@given(st.dictionaries(st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"]), hashes,
                       min_size=1))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_plugin_hooks_never_raise(contents: dict[str, dict[str, str] | None]) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    for symbol, fields in contents.items():
        if fields:
            client.hset(f"quantum:capital:efficiency:{symbol}", mapping=fields)
    plugin, registry = configured_plugin()
    plans = [Plan(f"{i}-0", f"p{i}", symbol, "BUY", 10.0, None)
             for i, symbol in enumerate([*contents, *contents])]
    batch = plugin.on_permit_batch(plans=plans, redis=client, now=NOW, reads=None)
    # The same batch read by the host (read_commands) gives the same fields.
    symbols = sorted(contents)
    other, _ = configured_plugin()
    asked = other.read_commands(host="governor", symbols=symbols, now=NOW)
    hosted = other.on_permit_batch(plans=plans, redis=None, now=NOW, reads=Reads(
        tuple(symbols), execute_commands(client, asked)))
    assert hosted == batch
    for plan in plans:
        fields = plugin.on_issue_permit(plan=plan, batch=batch)
        assert fields is not None
        assert tuple(fields) == plugin.permit_fields()
        assert_valid(dict(fields), CONFIG)
        gauge = registry.get_sample_value("p32_eff_factor", {"symbol": plan.symbol})
        assert gauge == float(fields["eff_factor"]) or abs(gauge - float(
            fields["eff_factor"])) < 5e-5
    applied = sum(registry.get_sample_value("p32_eff_apply_total",
                                            {"action": a, "reason": r}) or 0.0
                  for a in ("NONE", "DOWNSIZE") for r in REASONS)
    assert applied == len(plans)


@given(hashes)
@settings(max_examples=50, deadline=None)
def test_plugin_redis_outage_is_redis_error(fields: dict[str, str] | None) -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server, decode_responses=True)
    if fields:
        client.hset("quantum:capital:efficiency:BTCUSDT", mapping=fields)
    server.connected = False
    plugin, registry = configured_plugin()
    plan = Plan("1-0", "p1", "BTCUSDT", "BUY", 10.0, None)
    batch = plugin.on_permit_batch(plans=[plan], redis=client, now=NOW, reads=None)
    result = plugin.on_issue_permit(plan=plan, batch=batch)
    assert result is not None
    assert result["eff_reason"] == "redis_error"
    assert (result["eff_action"], result["eff_factor"]) == ("NONE", "1.0000")
    assert registry.get_sample_value("p32_eff_apply_total",
                                     {"action": "NONE", "reason": "redis_error"}) == 1.0


def test_wrong_typed_efficiency_key_is_invalid_not_an_exception(fake_redis) -> None:
    fake_redis.set("quantum:capital:efficiency:BTCUSDT", "0.2")
    plugin, _ = configured_plugin()
    plan = Plan("1-0", "p1", "BTCUSDT", "BUY", 10.0, None)
    for reads in (None, Reads(("BTCUSDT",), execute_commands(
            fake_redis, plugin.read_commands(host="governor", symbols=["BTCUSDT"], now=NOW)))):
        batch = plugin.on_permit_batch(plans=[plan], redis=fake_redis, now=NOW, reads=reads)
        fields = plugin.on_issue_permit(plan=plan, batch=batch)
        assert fields is not None
        assert (fields["eff_reason"], fields["eff_action"]) == ("invalid_eff", "NONE")


@given(st.lists(hashes, min_size=1, max_size=6),
       st.lists(st.floats(min_value=NOW - 20_000, max_value=NOW + 20_000), min_size=2,
                max_size=4),
       st.sampled_from([1, 1000]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_remembered_readings_match_the_rules_at_every_now(
        contents: list[dict[str, str] | None], nows: list[float], max_entries: int) -> None:
    """EfficiencyReader keeps parsed numbers between reads; its readings must still be those
    of the pure rules for each read's own ``now`` (nothing clock-dependent remembered)."""
    from governor_core.efficiency import EfficiencyReader, read_efficiency

    client = fakeredis.FakeRedis(decode_responses=True)
    symbols = [f"S{i}USDT" for i in range(len(contents))]
    for symbol, fields in zip(symbols, contents, strict=True):
        if fields:
            client.hset(f"quantum:capital:efficiency:{symbol}", mapping=fields)
    reader = EfficiencyReader(min_conf=CONFIG.min_conf, stale_sec=CONFIG.eff_ttl_sec,
                              max_entries=max_entries)
    for now in nows:
        expected = [read_efficiency(client.hgetall(f"quantum:capital:efficiency:{symbol}"),
                                    now, min_conf=CONFIG.min_conf,
                                    stale_sec=CONFIG.eff_ttl_sec) for symbol in symbols]
        assert reader.read(client, symbols, now) == expected
