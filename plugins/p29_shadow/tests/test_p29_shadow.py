"""p29_shadow: the multiplier table, its properties, config, throttling, never a live target."""

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from p29_shadow.formula import ShadowConfig, propose, shadow_multiplier
from p29_shadow.plugin import ShadowProposerPlugin
from prometheus_client import CollectorRegistry, generate_latest

from governor_core.allocation.model import AllocationTarget, AllocationTick
from governor_core.config import ConfigError, EnvReader
from governor_core.efficiency import (
    REASONS,
    EfficiencyReading,
    read_efficiencies,
    read_efficiency,
)
from governor_core.hookspecs import Reads
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import execute_commands

NOW = 1_800_000_000.0
DEFAULTS = ShadowConfig()


@pytest.mark.parametrize(("score", "multiplier"), [
    (0.0, 0.5), (0.3, 0.8), (0.5, 1.0), (0.9, 1.4), (1.0, 1.5)])
def test_multiplier_table(score, multiplier):
    reading = EfficiencyReading("ok", score, 0.9)
    assert shadow_multiplier(reading, DEFAULTS) == pytest.approx(multiplier)
    assert propose(1000.0, reading, DEFAULTS).proposed_target == pytest.approx(1000 * multiplier)


def test_multiplier_clamps_with_a_larger_scale():
    config = ShadowConfig(scale=3.0)
    assert shadow_multiplier(EfficiencyReading("ok", 0.9, 0.9), config) == 1.5
    assert shadow_multiplier(EfficiencyReading("ok", 0.1, 0.9), config) == 0.5
    assert shadow_multiplier(EfficiencyReading("ok", 0.6, 0.9), config) == pytest.approx(1.3)


@pytest.mark.parametrize("reason", ["missing_eff", "stale_eff", "low_conf", "invalid_eff",
                                    "redis_error"])
def test_fail_open_reasons_give_one(reason):
    proposal = propose(500.0, EfficiencyReading(reason, 0.9, 0.1), DEFAULTS)
    assert (proposal.multiplier, proposal.proposed_target, proposal.reason) == (1.0, 500.0,
                                                                                reason)


text = st.one_of(st.none(), st.text(max_size=12), st.floats().map(str),
                 st.floats(0, 1).map(str), st.just("nan"), st.just("inf"))


@given(fields=st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["efficiency_score", "confidence", "ts", "mode"]), text)),
    now=st.floats(0, 2e9))
def test_any_efficiency_hash_gives_a_valid_bounded_proposal(fields, now):
    fields = {k: v for k, v in (fields or {}).items() if v is not None} or None
    reading = read_efficiency(fields, now, min_conf=0.65, stale_sec=600)
    proposal = propose(1000.0, reading, DEFAULTS)
    assert proposal.reason in REASONS
    assert DEFAULTS.min_mult <= proposal.multiplier <= DEFAULTS.max_mult


@pytest.mark.parametrize(("env", "variable"), [
    ({"P31_MIN_MULT": "2", "P31_MAX_MULT": "1"}, "P31_MAX_MULT"),
    ({"P31_MIN_CONF": "1.5"}, "P31_MIN_CONF"),
    ({"PROPOSE_KEY_TTL": "0"}, "PROPOSE_KEY_TTL"),
    ({"PROPOSE_STREAM_NAME": "quantum:stream:allocation.decision"}, "PROPOSE_STREAM_NAME"),
    ({"PROPOSE_STREAM_NAME": "quantum:allocation:target:X"}, "PROPOSE_STREAM_NAME")])
def test_bad_config_names_the_variable(env, variable):
    with pytest.raises(ConfigError) as err:
        ShadowConfig.from_env(EnvReader(env))
    assert err.value.name == variable


def test_bad_config_disables_the_plugin_and_creates_no_metrics():
    registry = CollectorRegistry()
    host = build_plugin_host("allocation", {"P31_MAX_MULT": "x"}, registry,
                             load_entrypoints=False,
                             extra_plugins=[("p29_shadow", ShadowProposerPlugin())])
    assert host.active == []
    assert "P31_MAX_MULT" in host.statuses[0].why
    assert "p29_shadow_loops_total" not in generate_latest(registry).decode()


def target(symbol: str, usd: float) -> AllocationTarget:
    return AllocationTarget(symbol, symbol, usd, "TREND", 1.2, 1.0, "LOW", 1.0, 1.0, usd,
                            False, 1.0, usd, usd / 100_000, 1.0, ())


def configured(env=None):
    plugin = ShadowProposerPlugin()
    registry = CollectorRegistry()
    plugin.on_configure("allocation", env or {}, registry)
    return plugin, registry


def tick(mode: str, now: float = NOW) -> AllocationTick:
    return AllocationTick(now, mode, 100_000.0, 0.0,
                          (target("BTCUSDT", 20_000.0), target("ETHUSDT", 10_000.0),
                           target("XRPUSDT", 5_000.0), target("ADAUSDT", 1_000.0)),
                          40_000.0, 60_000.0, config_id="0123456789ab")


def host_reads(plugin, client, symbols, now):
    """What the allocation host does for a plugin's ``read_commands``: run them in its own
    round trip and hand the replies back as ``reads``."""
    asked = plugin.read_commands(host="allocation", symbols=symbols, now=now)
    if asked is None:
        return None
    return Reads(tuple(symbols), execute_commands(client, list(asked)))


@pytest.mark.redis
@pytest.mark.parametrize("read_by", ["host", "plugin"])
@pytest.mark.parametrize("mode", ["shadow", "enforce"])
def test_plugin_writes_only_its_own_keys_in_either_mode(real_redis, mode, read_by):
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": 0.9, "confidence": 0.9, "ts": NOW})
    real_redis.hset("quantum:capital:efficiency:ETHUSDT",
                    mapping={"efficiency_score": 0.3, "confidence": 0.5, "ts": NOW})
    real_redis.hset("quantum:capital:efficiency:XRPUSDT",
                    mapping={"efficiency_score": 0.3, "confidence": 0.9, "ts": NOW - 601})
    real_redis.set("quantum:capital:efficiency:ADAUSDT", "not a hash")
    plugin, registry = configured({"PROPOSE_KEY_TTL": "300"})
    # Read by the host: every budgeted symbol (a superset of the targets), in order.
    budgeted = ["ADAUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "XRPUSDT"]
    reads = host_reads(plugin, real_redis, budgeted, NOW) if read_by == "host" else None
    before = set(real_redis.keys("*"))
    plugin.on_allocation_tick(tick(mode), real_redis, NOW, reads)
    new = set(real_redis.keys("*")) - before
    assert new == {"quantum:stream:allocation.target.proposed",
                   *(f"quantum:allocation:target:proposed:{s}"
                     for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT"))}
    assert real_redis.keys("quantum:allocation:target:[A-Z]*") == []
    entries = {f["symbol"]: f for _, f in real_redis.xrange(
        "quantum:stream:allocation.target.proposed")}
    assert entries["BTCUSDT"] == {
        "ts_epoch": "1800000000", "symbol": "BTCUSDT", "base_target": "20000",
        "proposed_target": "28000", "multiplier": "1.4000", "eff_score": "0.9000",
        "eff_confidence": "0.9000", "eff_stale": "0", "reason": "ok", "mode": "shadow",
        "config_id": "0123456789ab"}  # the host's, from the tick (SPEC 8)
    assert entries["ETHUSDT"]["reason"] == "low_conf"
    assert (entries["XRPUSDT"]["reason"], entries["XRPUSDT"]["eff_stale"]) == ("stale_eff", "1")
    assert entries["ADAUSDT"]["reason"] == "invalid_eff"
    key = real_redis.hgetall("quantum:allocation:target:proposed:BTCUSDT")
    assert key["last_update_ts_epoch"] == "1800000000" and key["multiplier"] == "1.4000"
    assert 0 < real_redis.ttl("quantum:allocation:target:proposed:BTCUSDT") <= 300
    text = generate_latest(registry).decode()
    assert "p29_shadow_loops_total 1.0" in text
    assert 'p29_shadow_proposed_total{reason="ok"} 1.0' in text
    assert 'p29_shadow_multiplier{symbol="BTCUSDT"} 1.4' in text
    assert 'p29_shadow_eff_score{symbol="BTCUSDT"} 0.9' in text
    assert 'p29_shadow_eff_confidence{symbol="BTCUSDT"} 0.9' in text


@pytest.mark.redis
def test_throttled_by_loop_interval_and_stream_capped(real_redis):
    plugin, registry = configured({"LOOP_INTERVAL_SEC": "10", "PROPOSE_STREAM_MAXLEN": "100"})
    symbols = [target.symbol for target in tick("shadow").targets]
    asked = []
    for offset in (0, 5, 9.9, 10, 15, 20):
        reads = host_reads(plugin, real_redis, symbols, NOW + offset)
        asked.append(reads is not None)
        plugin.on_allocation_tick(tick("shadow"), real_redis, NOW + offset, reads)
    # It asks the host to read only on the ticks it runs.
    assert asked == [True, False, False, True, False, True]
    assert "p29_shadow_loops_total 3.0" in generate_latest(registry).decode()
    assert real_redis.xlen("quantum:stream:allocation.target.proposed") == 12
    for offset in range(200):
        plugin.on_allocation_tick(tick("shadow"), real_redis, NOW + 100 + 10 * offset, None)
    assert real_redis.xlen("quantum:stream:allocation.target.proposed") < 300


def test_redis_error_on_read_is_a_reason_not_an_exception():
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.2, decode_responses=True)
    readings = read_efficiencies(unreachable, ["BTCUSDT"], NOW, min_conf=0.65, stale_sec=600)
    assert [r.reason for r in readings] == ["redis_error"]


def test_inactive_on_the_governor_host():
    plugin = ShadowProposerPlugin()
    registry = CollectorRegistry()
    plugin.on_configure("governor", {}, registry)
    assert plugin.config is None
    assert "p29_shadow" not in generate_latest(registry).decode()
    assert plugin.read_commands(host="governor", symbols=["BTCUSDT"], now=NOW) is None
    plugin.on_allocation_tick(tick("shadow"), None, NOW, None)  # does nothing
