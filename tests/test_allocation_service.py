"""The allocation service against a real redis-server: modes, TTLs, caps, fallbacks,
plugin isolation, round trips, determinism."""

from __future__ import annotations

import dataclasses
import gc
import math

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from governor_core import hookimpl
from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.publish import publish_commands
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.plugins import build_plugin_host
from governor_core.testing import RoundTrips, start_redis

pytestmark = pytest.mark.redis

NOW = 1_800_000_000.0
DECISIONS = "quantum:stream:allocation.decision"
PROPOSED = "quantum:stream:allocation.target.proposed"


def seed(client: redis.Redis, *, symbols=("BTCUSDT", "ETHUSDT"), now=NOW, regime="TREND"):
    client.hset("quantum:state:portfolio",
                mapping={"equity_usd": 100_000, "drawdown": 0.07, "timestamp": now})
    client.xadd("quantum:stream:regime.state", {"regime": regime, "ts": now})
    client.hset("quantum:cluster:stress:majors",
                mapping={"stress": 0.2, "alpha": 0.5, "timestamp": now})
    for symbol in symbols:
        client.hset(f"quantum:portfolio:budget:{symbol}",
                    mapping={"budget_usd": 50_000, "timestamp": now})
        client.hset("quantum:config:symbol.cluster", symbol, "majors")


def make(client, env=None, *, plugins=(), entrypoints=False, now=NOW):
    env = {"P29_STREAM_MAXLEN": "100", **(env or {})}
    registry = CollectorRegistry()
    config = AllocationConfig.from_env(EnvReader(env))
    host = build_plugin_host("allocation", env, registry, disabled=config.common.disabled_plugins,
                             load_entrypoints=entrypoints, extra_plugins=plugins)
    clock = now if callable(now) else (lambda: now)
    return AllocationService(config, client, host, registry, clock=clock), registry


def test_shadow_streams_decisions_and_never_writes_targets(real_redis):
    seed(real_redis)
    service, registry = make(real_redis)
    tick = service.step()
    assert tick is not None and [t.symbol for t in tick.targets] == ["BTCUSDT", "ETHUSDT"]
    assert real_redis.keys("quantum:allocation:target:*") == []
    entries = real_redis.xrange(DECISIONS)
    assert len(entries) == 2
    fields = entries[0][1]
    for name in ("target_usd", "weight", "cluster_id", "regime", "drawdown_zone", "confidence",
                 "timestamp", "mode", "regime_factor", "cluster_factor", "drawdown_factor",
                 "performance_factor", "symbol_cap_usd", "cluster_cap_usd", "cluster_scale",
                 "fallbacks", "base_budget", "raw_target_usd"):
        assert name in fields
    # 2 × 20,914.63 = 41,829 < 60,000: no cluster cap.
    assert fields["target_usd"] == "20914.63352838" and fields["mode"] == "shadow"
    text = generate_latest(registry).decode()
    assert "p29_shadow_pass_total 1.0" in text
    assert 'p29_targets_computed_total{symbol="BTCUSDT"} 1.0' in text


def test_enforce_writes_targets_with_ttl(real_redis):
    seed(real_redis)
    service, registry = make(real_redis, {"P29_MODE": "enforce", "TARGET_TTL_SEC": "120"})
    service.step()
    target = real_redis.hgetall("quantum:allocation:target:BTCUSDT")
    assert list(target) == ["target_usd", "weight", "cluster_id", "regime", "drawdown_zone",
                            "confidence", "timestamp", "mode"]
    assert target["mode"] == "enforce" and target["cluster_id"] == "majors"
    assert 0 < real_redis.ttl("quantum:allocation:target:BTCUSDT") <= 120
    assert 'p29_enforce_overrides_total{symbol="BTCUSDT"} 1.0' in generate_latest(
        registry).decode()


def test_decision_stream_is_capped(real_redis):
    seed(real_redis, symbols=[f"S{i:03d}USDT" for i in range(150)])
    service, _ = make(real_redis, {"P29_STREAM_MAXLEN": "100"})
    for _ in range(5):
        service.step()
    assert real_redis.xlen(DECISIONS) < 750
    assert real_redis.xlen(DECISIONS) <= 100 + 150  # MAXLEN ~ trims whole nodes


@pytest.mark.parametrize("portfolio", [None, {"equity_usd": 1, "drawdown": 0.1,
                                              "timestamp": NOW - 61},
                                       {"equity_usd": "abc", "drawdown": 0.1, "timestamp": NOW}])
def test_missing_stale_or_bad_portfolio_skips_the_cycle(real_redis, portfolio):
    seed(real_redis)
    real_redis.delete("quantum:state:portfolio")
    if portfolio:
        real_redis.hset("quantum:state:portfolio", mapping=portfolio)
    service, registry = make(real_redis, {"P29_MODE": "enforce"})
    assert service.step() is None
    assert real_redis.xlen(DECISIONS) == 0
    assert real_redis.keys("quantum:allocation:target:*") == []
    assert 'p29_stale_fallback_total{data_source="portfolio"} 1.0' in generate_latest(
        registry).decode()


def test_input_fallbacks_are_counted_and_recorded(real_redis):
    seed(real_redis, now=NOW - 100)  # regime, stress and budgets stale
    real_redis.hset("quantum:state:portfolio", "timestamp", NOW)
    real_redis.hset("quantum:portfolio:budget:XRPUSDT",
                    mapping={"budget_usd": 10_000, "timestamp": NOW})  # fresh, unmapped
    real_redis.hset("quantum:portfolio:budget:ADAUSDT", "timestamp", NOW)  # no budget_usd
    service, registry = make(real_redis)
    tick = service.step()
    by_symbol = {t.symbol: t for t in tick.targets}
    assert set(by_symbol) == {"BTCUSDT", "ETHUSDT", "XRPUSDT"}  # ADAUSDT skipped
    assert by_symbol["BTCUSDT"].fallbacks == ("budget",)
    assert by_symbol["BTCUSDT"].target_usd == 30_000.0  # 50k pass-through, cluster cap 60k
    xrp = by_symbol["XRPUSDT"]
    assert xrp.cluster_id == "XRPUSDT"
    assert xrp.fallbacks == ("regime", "cluster_stress", "alpha")
    assert xrp.target_usd == pytest.approx(7_000.0) and xrp.confidence == pytest.approx(0.5)
    text = generate_latest(registry).decode()
    assert 'p29_stale_fallback_total{data_source="budget"} 3.0' in text
    assert 'p29_stale_fallback_total{data_source="regime"} 1.0' in text
    assert 'p29_stale_fallback_total{data_source="cluster_stress"} 1.0' in text
    assert 'p29_stale_fallback_total{data_source="alpha"} 1.0' in text
    assert "p29_unmapped_symbols 1.0" in text
    entry = real_redis.xrevrange(DECISIONS, count=1)[0][1]
    assert entry["symbol"] == "XRPUSDT" and entry["fallbacks"] == "regime,cluster_stress,alpha"


def test_cluster_map_file_replaces_the_hash(real_redis, tmp_path):
    seed(real_redis)
    path = tmp_path / "map.json"
    path.write_text('{"BTCUSDT": "filecluster"}')
    service, _ = make(real_redis, {"P29_CLUSTER_MAP_FILE": str(path)})
    tick = service.step()
    assert {t.symbol: t.cluster_id for t in tick.targets} == {"BTCUSDT": "filecluster",
                                                              "ETHUSDT": "ETHUSDT"}


class Raising:
    @hookimpl
    def on_allocation_tick(self, tick):
        raise RuntimeError("boom")


class Recording:
    def __init__(self):
        self.ticks = []

    @hookimpl
    def on_allocation_tick(self, tick, now):
        self.ticks.append((tick, now))


def test_raising_plugin_is_isolated(real_redis):
    seed(real_redis)
    recorder = Recording()
    service, registry = make(real_redis, {"P29_MODE": "enforce"},
                             plugins=[("raiser", Raising()), ("recorder", recorder)])
    assert service.step() is not None
    assert real_redis.exists("quantum:allocation:target:BTCUSDT")
    assert len(recorder.ticks) == 1 and recorder.ticks[0][1] == NOW
    assert ('governor_plugin_errors_total{hook="on_allocation_tick",plugin="raiser"} 1.0'
            in generate_latest(registry).decode())


class Reading:
    """Names a read per budgeted symbol; records the ``reads`` it is handed."""

    def __init__(self):
        self.asked_for, self.reads = [], []

    @hookimpl
    def read_commands(self, host, symbols, now):
        self.asked_for.append((host, tuple(symbols), now))
        return [("HGET", f"quantum:portfolio:budget:{symbol}", "budget_usd")
                for symbol in symbols]

    @hookimpl
    def on_allocation_tick(self, tick, reads):
        self.reads.append(reads)


def test_plugin_reads_ride_round_trip_2_and_come_back_in_order(real_redis):
    seed(real_redis, symbols=("ETHUSDT", "BTCUSDT"))
    real_redis.hset("quantum:portfolio:budget:ETHUSDT", "budget_usd", "123.5")
    reader = Reading()
    service, _ = make(real_redis, plugins=[("reader", reader)])
    assert service.step() is not None
    assert reader.asked_for == [("allocation", ("BTCUSDT", "ETHUSDT"), NOW)]
    [reads] = reader.reads
    assert (reads.symbols, reads.replies) == (("BTCUSDT", "ETHUSDT"), ["50000", "123.5"])


def test_lost_plugin_reads_leave_the_tick_published(real_redis, monkeypatch):
    """The connection drops after the host's own replies: the tick is still published, the
    loss is counted, and the plugins are called with ``reads=None``."""
    from governor_core.plugin_reads import ReadRequest

    def lost(self, replies):
        raise redis.ConnectionError("gone")

    seed(real_redis)
    reader = Reading()
    service, registry = make(real_redis, {"P29_MODE": "enforce"},
                             plugins=[("reader", reader)])
    monkeypatch.setattr(ReadRequest, "reads", lost)
    assert service.step() is not None
    assert reader.reads == [None]
    assert real_redis.hget("quantum:allocation:target:BTCUSDT", "target_usd")
    assert registry.get_sample_value("p29_redis_errors_total", {"op": "read"}) == 1.0


def test_round_trips_are_constant_whatever_the_symbol_count(real_redis, redis_server):
    counts = []
    for size in (3, 1200):  # 1,200 symbols: writes go out in several chunks
        real_redis.flushall()
        seed(real_redis, symbols=[f"S{i:04d}USDT" for i in range(size)])
        for i in range(size):
            real_redis.hset(f"quantum:capital:efficiency:S{i:04d}USDT",
                            mapping={"efficiency_score": 0.9, "confidence": 0.9, "ts": NOW})
        trips = RoundTrips()
        ticks = iter((NOW, NOW + 10))
        service, _ = make(trips.client(redis_server.url), {"P29_MODE": "enforce"},
                          entrypoints=True, now=ticks.__next__)
        service.step()  # the first tick also opens the connection (handshake)
        with trips:
            service.step()
        counts.append(trips.count)
        assert real_redis.xlen(PROPOSED) == 2 * size
    # host: 2 reads (what exists; its values and p29_shadow's efficiency hashes, asked for
    # in read_commands) + 1 write; p29_shadow: 1 write.
    assert counts == [4, 4]


def test_same_inputs_and_now_give_identical_writes(real_redis):
    seed(real_redis)
    first, _ = make(real_redis, {"P29_MODE": "enforce"})
    second, _ = make(real_redis, {"P29_MODE": "enforce"})
    a, b = first.step(), second.step()
    assert a == b
    assert publish_commands(a, stream_maxlen=100, target_ttl_sec=300) == publish_commands(
        b, stream_maxlen=100, target_ttl_sec=300)


def test_disabling_p29_shadow_removes_it_and_leaves_decisions_unchanged(real_redis):
    outputs = []
    for env in ({}, {"QUANTUM_DISABLE_PLUGINS": "p29_shadow"}):
        real_redis.flushall()
        seed(real_redis)
        service, registry = make(real_redis, {"P29_MODE": "enforce", **env}, entrypoints=True)
        tick = service.step()
        text = generate_latest(registry).decode()
        outputs.append((tick, real_redis.xlen(PROPOSED),
                        real_redis.keys("quantum:allocation:target:proposed:*"),
                        "p29_shadow_loops_total" in text,
                        [fields for _, fields in real_redis.xrange(DECISIONS)]))
    (tick_on, n_on, keys_on, metric_on, dec_on), (tick_off, n_off, keys_off, metric_off,
                                                   dec_off) = outputs
    assert (n_on, len(keys_on), metric_on) == (2, 2, True)
    assert (n_off, keys_off, metric_off) == (0, [], False)
    # The same decisions; only the configuration they name differs (its snapshot lists
    # the active plugins, SPEC 8).
    assert tick_on.config_id != tick_off.config_id
    assert dataclasses.replace(tick_on, config_id="") == dataclasses.replace(tick_off,
                                                                           config_id="")
    assert [{**fields, "config_id": ""} for fields in dec_on] == [
        {**fields, "config_id": ""} for fields in dec_off]
    assert {fields["config_id"] for fields in dec_on} == {tick_on.config_id}


def test_redis_outage_is_ridden_out(redis_server):
    client = redis.Redis(port=1, decode_responses=True, socket_connect_timeout=0.2)
    service, registry = make(client)
    calls = []

    def fail_then_stop(what, error):
        calls.append(what)
        service.stop.set()

    service_backoff = pytest.MonkeyPatch()
    service_backoff.setattr("governor_core.redis_io.Backoff.failed",
                            lambda self, what, error: fail_then_stop(what, error))
    try:
        service.run()
    finally:
        service_backoff.undo()
    assert calls == ["allocation cycle"]
    assert 'p29_redis_errors_total{op="loop"} 1.0' in generate_latest(registry).decode()


@pytest.mark.parametrize(("alpha", "factor"), [
    ("-0.8", 1 / (1 + math.exp(0.8))),   # a losing cluster gets less, not the 1.0 fallback
    ("0", 0.5),
    ("1.5", 1 / (1 + math.exp(-1.5))),
    ("-+1", 1.0),                       # malformed: the alpha fallback
])
def test_cluster_alpha_is_a_signed_real(real_redis, alpha, factor):
    seed(real_redis, symbols=("BTCUSDT",))
    real_redis.hset("quantum:cluster:stress:majors", "alpha", alpha)
    service, _ = make(real_redis)
    target = service.step().targets[0]
    assert target.performance_factor == pytest.approx(factor)
    assert ("alpha" in target.fallbacks) == (alpha == "-+1")


def test_symbols_are_listed_even_where_keys_is_renamed_away():
    # Hardened servers often rename KEYS; the snapshot script then walks with SCAN.
    server = start_redis(None, "--rename-command", "KEYS", "KEYS_RENAMED_FOR_TEST")
    try:
        client = server.client()
        with pytest.raises(redis.ResponseError):
            client.keys("*")
        seed(client, symbols=[f"S{i:03d}USDT" for i in range(250)])
        service, _ = make(client)
        tick = service.step()
        assert tick is not None and len(tick.targets) == 250
        assert {t.cluster_factor for t in tick.targets} == {0.8}  # stress found too
    finally:
        server.stop()


class CollectorWatch:
    def __init__(self):
        self.seen = []

    @hookimpl
    def on_allocation_tick(self):
        self.seen.append(gc.isenabled())


@pytest.mark.parametrize("enabled_before", [True, False])
def test_gc_is_paused_for_the_cycle_and_restored_after(real_redis, enabled_before):
    seed(real_redis)
    watch = CollectorWatch()
    service, _ = make(real_redis, plugins=[("watch", watch)])
    (gc.enable if enabled_before else gc.disable)()
    try:
        assert service.step() is not None
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()
    assert watch.seen == [False]


def test_a_whole_cycle_on_the_production_client_with_the_health_check_due_mid_stream(
        real_redis, redis_server):
    """Regression: with the production client's health check on, a PING falling due between
    two chunks of one stream read one of the stream's replies as its PONG, and the cycle
    failed. A 1 ms interval makes it fall due between every two sends."""
    from governor_core.redis_io import connect
    from governor_core.redis_settings import RedisSettings

    size = 1200  # writes and p29_shadow's proposals go out in several chunks each
    symbols = [f"S{i:04d}USDT" for i in range(size)]
    seed(real_redis, symbols=symbols)
    for symbol in symbols:
        real_redis.hset(f"quantum:capital:efficiency:{symbol}",
                        mapping={"efficiency_score": 0.9, "confidence": 0.9, "ts": NOW})
    client = connect(RedisSettings(redis_server.url), health_check_interval=0.001)
    ticks = iter((NOW, NOW + 10))  # p29_shadow runs every 10 s
    service, registry = make(client, {"P29_MODE": "enforce", "P29_STREAM_MAXLEN": "10000"},
                             entrypoints=True, now=ticks.__next__)
    for _ in range(2):
        tick = service.step()
        assert tick is not None and len(tick.targets) == size
    assert real_redis.xlen(DECISIONS) == 2 * size
    assert real_redis.xlen(PROPOSED) == 2 * size
    assert registry.get_sample_value("p29_redis_errors_total", {"op": "write"}) in (None, 0)
    assert registry.get_sample_value("governor_plugin_errors_total",
                                     {"plugin": "p29_shadow", "hook": "on_allocation_tick"}
                                     ) in (None, 0)
    assert real_redis.exists("quantum:allocation:target:S1199USDT")
