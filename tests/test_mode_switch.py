"""Runtime switches without a restart: the mode key, rollback, the kill switch, and what the
allocation service logs and exports at every change.

The end-to-end test runs the real ``quantum-allocation run`` and ``quantum-governor run``
processes against a real redis-server and drives them with the real operator commands.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.mode import ModeChoice, resolve_mode
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.keys import LEDGER_STREAM, MODE_KEY
from governor_core.plugins import build_plugin_host
from governor_core.testing import free_port, wait_for

pytestmark = pytest.mark.redis

BIN = Path(sys.executable).parent
PLANS = "quantum:stream:apply.plan"
TARGET = "quantum:allocation:target:BTCUSDT"
INTERVAL = 0.2


@pytest.mark.parametrize(("env_mode", "reply", "expected"), [
    ("shadow", None, ModeChoice("shadow", "env")),
    ("enforce", None, ModeChoice("enforce", "env")),
    ("shadow", "enforce", ModeChoice("enforce", "key")),
    ("enforce", " Shadow\n", ModeChoice("shadow", "key")),
    ("shadow", b"enforce", ModeChoice("enforce", "key")),
])
def test_the_key_overrides_p29_mode(env_mode, reply, expected) -> None:
    assert resolve_mode(env_mode, reply) == expected


@pytest.mark.parametrize("reply", ["enforced", "", "1", b"\xff\xfe",
                                   redis.ResponseError("WRONGTYPE Operation against a key"),
                                   ["a", "list"]])
@pytest.mark.parametrize("env_mode", ["shadow", "enforce"])
def test_an_unusable_key_fails_safe_to_shadow(env_mode, reply) -> None:
    choice = resolve_mode(env_mode, reply)
    assert (choice.mode, choice.source) == ("shadow", "key_invalid") and choice.problem


# -- the service, cycle by cycle ------------------------------------------------------

def seed(client: redis.Redis, now: float, *, alpha: str | None = "0.02",
         symbols=("BTCUSDT", "ETHUSDT")) -> None:
    client.hset("quantum:state:portfolio",
                mapping={"equity_usd": 100_000, "drawdown": 0.0, "timestamp": now})
    client.xadd("quantum:stream:regime.state", {"regime": "MEAN_REVERSION", "ts": now})
    stress = {"stress": 0.0, "timestamp": now}
    if alpha is not None:
        stress["alpha"] = alpha
    client.hset("quantum:cluster:stress:majors", mapping=stress)
    for symbol in symbols:
        client.hset(f"quantum:portfolio:budget:{symbol}",
                    mapping={"budget_usd": 20_000, "timestamp": now})
        client.hset("quantum:config:symbol.cluster", symbol, "majors")


def service(client: redis.Redis, clock: Callable[[], float], **env: str):
    env = {"P29_STREAM_MAXLEN": "1000", "LOOP_INTERVAL_SEC": "0", **env}
    registry = CollectorRegistry()
    config = AllocationConfig.from_env(EnvReader(env))
    plugins = build_plugin_host("allocation", env, registry,
                                disabled=config.common.disabled_plugins,
                                load_entrypoints=False)
    return AllocationService(config, client, plugins, registry, clock=clock), registry


def mode_samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {(s.labels["mode"], s.labels["source"]): s.value
            for metric in registry.collect() if metric.name == "p29_mode"
            for s in metric.samples}


def test_the_mode_switches_at_the_next_cycle_and_is_exported(real_redis, caplog) -> None:
    now = 1_800_000_000.0
    seed(real_redis, now)
    svc, registry = service(real_redis, lambda: now)
    caplog.set_level(logging.INFO, logger="quantum.allocation")
    assert svc.step().mode == "shadow" and not real_redis.exists(TARGET)
    assert mode_samples(registry)[("shadow", "env")] == 1
    real_redis.set(MODE_KEY, "enforce")
    assert svc.step().mode == "enforce" and real_redis.exists(TARGET)
    samples = mode_samples(registry)
    assert samples[("enforce", "key")] == 1 and sum(samples.values()) == 1
    assert len(samples) == 6  # every mode x source, 0 but the one in force
    real_redis.set(MODE_KEY, "shadow")
    assert svc.step().mode == "shadow"
    assert not real_redis.exists(TARGET)  # the shadow cycle after enforce unlinks them
    svc.step()
    changes = [r.getMessage() for r in caplog.records if "allocation mode" in r.getMessage()]
    assert changes == [
        "allocation mode shadow from P29_MODE (was -)",
        "allocation mode enforce from quantum:config:allocation.mode (was shadow (env))",
        "allocation mode shadow from quantum:config:allocation.mode (was enforce (key))"]
    assert "p29_mode{" in generate_latest(registry).decode()


def test_an_invalid_key_is_shadow_with_one_error_log_and_one_error_entry(real_redis,
                                                                        caplog) -> None:
    now = 1_800_000_000.0
    seed(real_redis, now)
    real_redis.hset(MODE_KEY, "mode", "enforce")  # a hash: wrong type
    svc, registry = service(real_redis, lambda: now, P29_MODE="enforce")
    for _ in range(3):
        assert svc.step().mode == "shadow"
    assert not real_redis.exists(TARGET)
    assert mode_samples(registry)[("shadow", "key_invalid")] == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "mode key" in
              r.getMessage()]
    assert len(errors) == 1 and "fail safe" in errors[0].getMessage()
    recorded = real_redis.xrange("quantum:stream:allocation.errors")
    assert [fields["kind"] for _id, fields in recorded] == ["mode"]


def test_errors_are_recorded_for_readiness(real_redis) -> None:
    """A plugin that raises is logged and counted; the next write round trip also appends
    it to quantum:stream:allocation.errors."""
    from governor_core import hookimpl

    class Raising:
        @hookimpl
        def on_allocation_tick(self, tick):
            raise RuntimeError("boom")

    now = 1_800_000_000.0
    seed(real_redis, now)
    env = {"P29_STREAM_MAXLEN": "1000"}
    registry = CollectorRegistry()
    config = AllocationConfig.from_env(EnvReader(env))
    plugins = build_plugin_host("allocation", env, registry, disabled=frozenset(),
                                load_entrypoints=False, extra_plugins=[("raising", Raising())])
    svc = AllocationService(config, real_redis, plugins, registry, clock=lambda: now)
    svc.step()
    assert real_redis.xlen("quantum:stream:allocation.errors") == 0  # kept for the next one
    svc.step()
    kinds = [f["kind"] for _id, f in real_redis.xrange("quantum:stream:allocation.errors")]
    assert kinds == ["plugin"]


def fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("fallback ") and r.levelno == logging.WARNING]


def test_fallbacks_are_logged_when_they_start_and_end_not_every_tick(real_redis,
                                                                     caplog) -> None:
    clock = [1_800_000_000.0]
    seed(real_redis, clock[0], alpha=None, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    real_redis.hset("quantum:config:symbol.cluster", "SOLUSDT", "sol")
    real_redis.hset("quantum:cluster:stress:sol",
                    mapping={"stress": 0.1, "alpha": 0.3, "timestamp": clock[0]})
    svc, _ = service(real_redis, lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="quantum.allocation")
    for _ in range(5):
        svc.step()
    assert fallback_lines(caplog) == [
        "fallback started: data source alpha for 2 symbol(s): BTCUSDT, ETHUSDT"]
    caplog.clear()
    # The regime goes stale (ticks 30 s on, its ts stays): one line, then silence.
    real_redis.delete("quantum:stream:regime.state")
    for _ in range(4):
        svc.step()
    assert fallback_lines(caplog) == [
        "fallback started: data source regime for 3 symbol(s): BTCUSDT, ETHUSDT, SOLUSDT"]
    caplog.clear()
    real_redis.hset("quantum:cluster:stress:majors", "alpha", "0.1")
    real_redis.xadd("quantum:stream:regime.state", {"regime": "TREND", "ts": clock[0]})
    real_redis.delete("quantum:portfolio:budget:ETHUSDT")
    real_redis.hset("quantum:portfolio:budget:ETHUSDT", "timestamp", clock[0])  # no budget
    for _ in range(3):
        svc.step()
    assert fallback_lines(caplog) == [
        "fallback started: data source budget for 1 symbol(s): ETHUSDT",
        "fallback ended: data source alpha for 2 symbol(s): BTCUSDT, ETHUSDT",
        "fallback ended: data source regime for 3 symbol(s): BTCUSDT, ETHUSDT, SOLUSDT"]


# -- end to end: the real services and the real commands ---------------------------------

def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return reply.read().decode()


def cycles_after_last_entry(client: redis.Redis) -> list[str]:
    """The modes of the cycles whose decisions were written after the newest ledger entry
    (stream ids are Redis's clock), in order."""
    (last_id, _fields), = client.xrevrange(LEDGER_STREAM, count=1)
    modes: dict[str, str] = {}
    for _id, fields in client.xrange("quantum:stream:allocation.decision", min=f"({last_id}"):
        modes.setdefault(fields["timestamp"], fields["mode"])
    return list(modes.values())


def cycles_since_last_entry(client: redis.Redis) -> int:
    return len(cycles_after_last_entry(client))


def cycles_to_switch(client: redis.Redis, mode: str) -> int:
    """How many cycles after the newest ledger entry still ran in the old mode: the one in
    flight when the command ran may; every later one must be in ``mode``."""
    modes = cycles_after_last_entry(client)
    assert mode in modes, modes
    first = modes.index(mode)
    assert all(m == mode for m in modes[first:]), modes
    return first


class Stack:
    def __init__(self, url: str, client: redis.Redis) -> None:
        self.url, self.client = url, client
        self.alloc_port, self.gov_port = free_port(), free_port()
        base = {**os.environ, "REDIS_URL": url, "LOG_FORMAT": "text"}
        self.alloc = subprocess.Popen(
            [str(BIN / "quantum-allocation"), "run"], stderr=subprocess.PIPE, text=True,
            env={**base, "P29_INTERVAL_SEC": str(INTERVAL), "LOOP_INTERVAL_SEC": "0",
                 "P29_METRICS_PORT": str(self.alloc_port)})
        self.gov = subprocess.Popen(
            [str(BIN / "quantum-governor"), "run"], stderr=subprocess.PIPE, text=True,
            env={**base, "GOVERNOR_BLOCK_MS": "20", "GOVERNOR_METRICS_PORT": str(self.gov_port)})
        self.plans = 0

    def command(self, program: str, *argv: str) -> subprocess.CompletedProcess:
        result = subprocess.run([str(BIN / program), *argv], capture_output=True, text=True,
                                timeout=60, env={**os.environ, "REDIS_URL": self.url,
                                                 "USER": "ops-tester"})
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def permit(self, notional: str = "15000") -> dict[str, str]:
        self.plans += 1
        plan_id = f"switch-{self.plans}"
        self.client.xadd(PLANS, {"plan_id": plan_id, "symbol": "BTCUSDT", "side": "BUY",
                                 "notional_usd": notional, "ts": f"{time.time():.3f}"})
        key = f"quantum:permit:{plan_id}"
        wait_for(lambda: self.client.exists(key), 10, f"the permit of {plan_id}")
        return self.client.hgetall(key)

    def stop(self) -> None:
        for process in (self.alloc, self.gov):
            process.terminate()
        for process in (self.alloc, self.gov):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.mark.slow
def test_promote_rollback_kill_against_the_running_services(redis_server, real_redis) -> None:
    seed(real_redis, time.time())
    stack = Stack(redis_server.url, real_redis)
    try:
        wait_for(lambda: real_redis.xlen("quantum:stream:allocation.decision") >= 4, 20,
                 "decisions")
        wait_for(lambda: 'p29_mode{mode="shadow",source="env"} 1.0' in scrape(stack.alloc_port),
                 10, "the shadow mode metric")
        assert not real_redis.exists(TARGET)
        before = stack.permit()
        assert (before["cap_source"], before["decision"]) == ("budget", "ALLOW")

        # promote (forced: this run has minutes, not the design's 24 h, of evidence)
        stack.command("quantum-allocation", "promote", "--reason", "canary", "--force",
                      "--window", "1m")
        wait_for(lambda: real_redis.exists(TARGET), 10, "the live target")
        assert cycles_to_switch(real_redis, "enforce") <= 1
        target = float(real_redis.hget(TARGET, "target_usd"))
        assert target == pytest.approx(20_000 * (1 / (1 + 2.718281828459045 ** -0.02)))
        enforced = stack.permit()
        assert (enforced["cap_source"], enforced["decision"]) == ("allocation", "CLAMP")
        assert float(enforced["allowed_notional_usd"]) == pytest.approx(target)
        assert 'p29_mode{mode="enforce",source="key"} 1.0' in scrape(stack.alloc_port)

        # rollback: the targets go at once; the next batch caps from the budget
        stack.command("quantum-allocation", "rollback", "--reason", "caps too tight")
        live = (TARGET, "quantum:allocation:target:ETHUSDT")
        wait_for(lambda: not real_redis.exists(*live), 10, "the targets to be deleted")
        wait_for(lambda: cycles_since_last_entry(real_redis) >= 3, 10, "three more cycles")
        assert not real_redis.exists(*live)  # and no cycle wrote them again
        assert cycles_to_switch(real_redis, "shadow") <= 1
        after = stack.permit()
        assert (after["cap_source"], after["decision"]) == ("budget", "ALLOW")
        assert 'p29_mode{mode="shadow",source="key"} 1.0' in scrape(stack.alloc_port)

        # kill on / off
        stack.command("quantum-governor", "kill", "on", "--reason", "drill")
        killed = stack.permit()
        assert (killed["decision"], killed["reason"]) == ("DENY", "kill_switch")
        stack.command("quantum-governor", "kill", "off", "--reason", "drill over")
        resumed = stack.permit("500")
        assert (resumed["decision"], resumed["reason"]) == ("ALLOW", "within_cap")
    finally:
        stack.stop()
    ledger = [fields for _id, fields in real_redis.xrange(LEDGER_STREAM)]
    assert [(e["action"], e["who"], e["why"], e["before"], e["after"]) for e in ledger] == [
        ("promote", "ops-tester", "canary", "(absent)", "enforce"),
        ("rollback", "ops-tester", "caps too tight", "enforce", "shadow"),
        ("kill_on", "ops-tester", "drill", "(absent)", "1"),
        ("kill_off", "ops-tester", "drill over", "1", "(absent)")]
    assert json.loads(ledger[0]["detail"])["forced"] is True
    assert json.loads(ledger[1]["detail"])["targets_deleted"] >= 1
    log = stack.alloc.stderr.read()
    assert "allocation mode enforce from quantum:config:allocation.mode" in log


def test_plugins_and_check_config_show_the_mode_and_its_source(redis_server,
                                                               real_redis) -> None:
    env = {**os.environ, "REDIS_URL": redis_server.url, "P29_MODE": "shadow"}

    def run(*argv: str) -> str:
        return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True,
                              text=True, timeout=60, env=env).stdout

    assert "allocation mode shadow (P29_MODE; quantum:config:allocation.mode is not set)" in (
        run("quantum-governor", "plugins"))
    real_redis.set(MODE_KEY, "enforce")
    line = ("allocation mode enforce (from quantum:config:allocation.mode, overriding "
            "P29_MODE=shadow)")
    assert line in run("quantum-governor", "plugins")
    assert f"ok     {line}" in run("quantum-allocation", "check-config")
    real_redis.set(MODE_KEY, "yes please")
    assert "WARN   allocation mode shadow (fail safe: quantum:config:allocation.mode has " \
           "the value 'yes please'" in run("quantum-governor", "check-config")
