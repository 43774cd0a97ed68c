"""``quantum-governor feed``: the sample producer writes the schema's inputs, deletes
nothing, and a real governor and allocation service run on what it writes (the allocation
service naming the input it lacks, and logging the design's health-check line)."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading

import pytest
import redis
from prometheus_client import CollectorRegistry

from governor_core import feed
from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.efficiency import read_efficiency
from governor_core.feed import FeedSettings, budget_fields, efficiency_fields, sample_plan
from governor_core.governor.config import GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.parsing import parse_decimal
from governor_core.plans import Plan, parse_plan
from governor_core.plugins import build_plugin_host
from governor_core.runtime import StartupError
from governor_core.testing import RedisServer

NOW = 1_800_000_000.0
PLANS = "quantum:stream:apply.plan"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quantum-governor")
    feed.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["feed", *argv])


# -- the values (pure) --------------------------------------------------------------------


def test_plans_are_valid_and_take_turns() -> None:
    plans = [parse_plan(f"{n}-0", sample_plan(n, SYMBOLS, 1700, NOW)) for n in range(12)]
    assert all(isinstance(plan, Plan) for plan in plans)
    assert [p.symbol for p in plans[:4]] == ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCUSDT"]
    assert [p.side for p in plans[:3]] == ["BUY", "SELL", "BUY"]
    assert [p.notional_usd for p in plans[::3]] == [500.0, 2500.0, 10000.0, 30000.0]
    assert plans[0].plan_id == "feed-1700-000000" and plans[11].plan_id == "feed-1700-000011"
    assert {p.ts for p in plans} == {NOW}
    assert sample_plan(5, SYMBOLS, 1700, NOW) == sample_plan(5, SYMBOLS, 1700, NOW)


def test_hashes_follow_the_schema_with_plain_decimals() -> None:
    for index in range(6):
        fields = efficiency_fields(index, NOW)
        reading = read_efficiency(fields, NOW, min_conf=0.65, stale_sec=600)
        assert reading.reason == "ok"
        assert all(parse_decimal(fields[name]) is not None
                   for name in ("efficiency_score", "confidence", "ts"))
    scores = {read_efficiency(efficiency_fields(i, NOW), NOW, min_conf=0.65,
                              stale_sec=600).score for i in range(5)}
    assert min(scores) < 0.45 < max(scores)  # some symbols get a DOWNSIZE hint
    assert budget_fields(NOW) == {"budget_usd": "20000", "timestamp": "1800000000.000"}


# -- the command line -----------------------------------------------------------------------


def test_options_and_defaults() -> None:
    args = parse()
    assert (args.symbols, args.rate, args.duration, args.redis_url) == (
        "BTCUSDT,ETHUSDT", 5.0, 60.0, None)
    args = parse("--symbols", "BTCUSDT, SOLUSDT", "--rate", "50", "--duration", "2",
                 "--redis-url", "redis://x:1/0")
    assert feed.settings_from(args) == FeedSettings(("BTCUSDT", "SOLUSDT"), 50.0, 2.0)
    assert args.redis_url == "redis://x:1/0"


@pytest.mark.parametrize(("argv", "message"), [
    (("--symbols", "btcusdt"), "--symbols: 'btcusdt' is invalid"),
    (("--symbols", ","), "--symbols is empty"),
    (("--rate", "0"), "--rate 0.0 is invalid"),
    (("--rate", "nan"), "--rate nan is invalid"),
    (("--duration", "-1"), "--duration -1.0 is invalid"),
    (("--duration", "inf"), "--duration inf is invalid"),
])
def test_bad_options_are_one_line(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(StartupError, match="quantum-governor feed: " + message.replace(
            ".", r"\.")):
        feed.settings_from(parse(*argv))


def test_a_bad_url_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(StartupError) as caught:
        feed.redis_settings("redis//:hunter2@localhost:6379/0")
    assert "--redis-url" in str(caught.value) and "hunter2" not in str(caught.value)


# -- against a real redis-server ------------------------------------------------------------


@pytest.mark.redis
def test_feed_writes_at_the_rate_and_deletes_nothing(real_redis: redis.Redis) -> None:
    real_redis.set("prod:orders:important", "keep")
    real_redis.xadd(PLANS, {"plan_id": "someone-elses", "symbol": "BTCUSDT", "side": "BUY",
                            "notional_usd": "1"})
    real_redis.hset("quantum:portfolio:budget:XRPUSDT", "budget_usd", "7")
    client = redis.Redis(port=real_redis.connection_pool.connection_kwargs["port"],
                         decode_responses=True)
    result = feed.feed(client, FeedSettings(SYMBOLS, 20.0, 0.6), stop=threading.Event())
    assert result.plans == 12  # ceil(0.6 s x 20/s)
    assert result.refreshes == 1
    assert 0.6 <= result.seconds < 2
    entries = real_redis.xrange(PLANS)
    assert entries[0][1]["plan_id"] == "someone-elses" and len(entries) == 13
    assert all(isinstance(parse_plan(i, f), Plan) for i, f in entries)
    for symbol in SYMBOLS:
        assert real_redis.hget(f"quantum:capital:efficiency:{symbol}", "confidence") == "0.9000"
        assert real_redis.hget(f"quantum:portfolio:budget:{symbol}", "budget_usd") == "20000"
    assert real_redis.get("prod:orders:important") == "keep"
    assert real_redis.hget("quantum:portfolio:budget:XRPUSDT", "budget_usd") == "7"
    assert not real_redis.exists("quantum:state:portfolio", "quantum:governor:kill")


@pytest.mark.redis
def test_feed_stops_when_asked(real_redis: redis.Redis) -> None:
    stop = threading.Event()
    stop.set()
    result = feed.feed(real_redis, FeedSettings(SYMBOLS, 5.0, 0.0), stop=stop)
    assert result.plans == 0 and real_redis.dbsize() == 0


@pytest.mark.redis
def test_the_command_runs_and_prints_two_lines(redis_server: RedisServer) -> None:
    code = ("import argparse, sys\nfrom governor_core import feed\n"
            "parser = argparse.ArgumentParser(prog='quantum-governor')\n"
            "feed.add_parser(parser.add_subparsers(dest='command'))\n"
            "sys.exit(feed.run(parser.parse_args(sys.argv[1:])))\n")
    client = redis_server.client()
    client.flushall()
    result = subprocess.run(
        [sys.executable, "-c", code, "feed", "--symbols", "BTCUSDT", "--rate", "10",
         "--duration", "0.3", "--redis-url", redis_server.url],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"feeding {redis_server.url}: 10 plans/s over BTCUSDT, for 0.3 s")
    assert lines[1].startswith("fed 3 plans and 1 efficiency/budget refreshes in ")
    assert client.xlen(PLANS) == 3


@pytest.mark.redis
def test_a_governor_issues_permits_for_what_it_feeds(real_redis: redis.Redis) -> None:
    feed.feed(real_redis, FeedSettings(SYMBOLS, 50.0, 0.24), stop=threading.Event())
    env = {"GOVERNOR_CONSUMER": "feed-test", "GOVERNOR_BLOCK_MS": "1"}
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry)
    now = float(real_redis.xrange(PLANS)[-1][1]["ts"])
    service = GovernorService(GovernorConfig.from_env(EnvReader(env)), real_redis, plugins,
                              registry, clock=lambda: now)
    service.ensure_group()
    while service.step():
        pass
    permits = [real_redis.hgetall(key) for key in real_redis.scan_iter("quantum:permit:*")]
    assert len(permits) == 12
    assert {p["decision"] for p in permits} == {"ALLOW", "CLAMP"}  # 30000 > the 20000 budget
    assert {p["cap_source"] for p in permits} == {"budget"}
    if "eff_action" in permits[0]:  # p31_efficiency installed
        assert {p["eff_action"] for p in permits} == {"NONE", "DOWNSIZE"}
        assert {p["eff_reason"] for p in permits} == {"ok"}


def allocation(client: redis.Redis, now: float) -> AllocationService:
    env: dict[str, str] = {}
    registry = CollectorRegistry()
    config = AllocationConfig.from_env(EnvReader(env))
    plugins = build_plugin_host("allocation", env, registry, load_entrypoints=False)
    return AllocationService(config, client, plugins, registry, clock=lambda: now)


@pytest.mark.redis
def test_an_allocation_service_names_the_input_it_lacks_then_runs(
        real_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    feed.feed(real_redis, FeedSettings(SYMBOLS, 10.0, 0.1), stop=threading.Event())
    now = float(real_redis.hget("quantum:portfolio:budget:BTCUSDT", "timestamp"))
    service = allocation(real_redis, now)
    with caplog.at_level(logging.INFO, logger="quantum.allocation"):
        assert service.step() is None
        skipped = [r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("portfolio state")]
        assert skipped[0].startswith("portfolio state missing: quantum:state:portfolio (")
        real_redis.hset("quantum:state:portfolio", mapping={
            "equity_usd": "100000", "drawdown": "0.02", "timestamp": str(now)})
        caplog.clear()
        tick = service.step()
    assert tick is not None and len(tick.targets) == 3
    # the design's health check: journalctl … | grep "Allocation cycle complete"
    assert "Allocation cycle complete" in [r.getMessage() for r in caplog.records]


@pytest.mark.redis
@pytest.mark.parametrize(("portfolio", "problem"), [
    ({"equity_usd": "abc", "drawdown": "0.1"}, "malformed"),
    ({"equity_usd": "100000", "drawdown": "0.1", "timestamp": "1"}, "stale"),
])
def test_a_skipped_cycle_names_the_key_and_the_rule(
        real_redis: redis.Redis, caplog: pytest.LogCaptureFixture,
        portfolio: dict[str, str], problem: str) -> None:
    real_redis.hset("quantum:state:portfolio", mapping=portfolio)
    with caplog.at_level(logging.WARNING, logger="quantum.allocation"):
        assert allocation(real_redis, NOW).step() is None
    [message] = [r.getMessage() for r in caplog.records
                 if r.getMessage().startswith("portfolio state")]
    assert message.startswith(f"portfolio state {problem}: quantum:state:portfolio (")
    assert ("STALE_DATA_SEC=60 s" in message) is (problem == "stale")
