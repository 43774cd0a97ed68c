"""The kill switch (SPEC 2, ``quantum:governor:kill``): a table of what each value means,
the fail-closed error log, and the ``governor_kill_switch`` gauge of a real governor."""

from __future__ import annotations

import logging

import pytest
import redis
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader
from governor_core.governor import inputs
from governor_core.governor.config import GovernorConfig
from governor_core.governor.inputs import kill_switch_on
from governor_core.governor.service import GovernorService
from governor_core.plugins import build_plugin_host

KILL = "quantum:governor:kill"
NOW = 1_700_000_000.0


@pytest.fixture(autouse=True)
def _fresh_complaints() -> None:
    """Each test starts with no kill-switch problem logged yet."""
    complaints = getattr(inputs, "_Complaints", None)
    if complaints is not None:
        complaints.last = None


@pytest.mark.parametrize(("key_type", "value", "on", "logged"), [
    # on: 1/true/on/yes, any case, trimmed
    ("string", "1", True, False),
    ("string", "true", True, False),
    ("string", "TRUE", True, False),
    ("string", "True", True, False),
    ("string", "on", True, False),
    ("string", "ON", True, False),
    ("string", "yes", True, False),
    ("string", "Yes", True, False),
    ("string", " 1", True, False),
    ("string", "1\n", True, False),
    ("string", "\ton ", True, False),
    # off: absent, 0/false/off/no, empty
    ("none", None, False, False),
    ("string", None, False, False),  # deleted between TYPE and GET
    ("string", "0", False, False),
    ("string", "false", False, False),
    ("string", "FALSE", False, False),
    ("string", "off", False, False),
    ("string", "Off", False, False),
    ("string", "no", False, False),
    ("string", " NO ", False, False),
    ("string", "", False, False),
    ("string", "   ", False, False),
    # anything else: on, with an error log (fail closed)
    ("string", "2", True, True),
    ("string", "maybe", True, True),
    ("string", "-1", True, True),
    ("string", "1.0", True, True),
    ("string", "enabled", True, True),
    ("string", "b'1'", True, True),      # bytes-looking text: str(b"1") from a producer
    ("string", "b'0'", True, True),
    ("string", "\\x31", True, True),
    ("string", "0 # off", True, True),
    ("string", "of", True, True),
    # another Redis type, or a refused read
    ("hash", redis.ResponseError("WRONGTYPE"), True, True),
    ("list", redis.ResponseError("WRONGTYPE"), True, True),
    ("set", redis.ResponseError("WRONGTYPE"), True, True),
    ("stream", redis.ResponseError("WRONGTYPE"), True, True),
    (redis.ResponseError("NOPERM"), redis.ResponseError("NOPERM"), True, True),
    ("string", redis.ResponseError("NOPERM"), True, True),
])
def test_kill_switch_values(key_type: object, value: object, on: bool, logged: bool,
                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="quantum.governor"):
        assert kill_switch_on(key_type, value) is on
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert bool(errors) is logged
    if logged:
        message = errors[0].getMessage()
        assert KILL in message and "treating it as ON" in message
        assert "1/true/on/yes" in message  # says what is accepted


def test_the_error_names_the_value_or_type(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="quantum.governor"):
        kill_switch_on("string", "maybe")
        kill_switch_on("hash", redis.ResponseError("WRONGTYPE"))
    assert "'maybe'" in caplog.records[0].getMessage()
    assert "type hash" in caplog.records[1].getMessage()


def test_one_error_per_distinct_problem_not_per_batch(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="quantum.governor"):
        for _ in range(5):
            assert kill_switch_on("string", "maybe")
        assert len(caplog.records) == 1
        assert kill_switch_on("string", "2")  # another problem: logged
        assert len(caplog.records) == 2
        assert not kill_switch_on("string", "0")  # fixed, then broken again: logged again
        assert kill_switch_on("string", "2")
        assert len(caplog.records) == 3


# -- a real governor --------------------------------------------------------------------


def governor(client: redis.Redis) -> tuple[GovernorService, CollectorRegistry]:
    env = {"GOVERNOR_CONSUMER": "kill-test", "GOVERNOR_BLOCK_MS": "1"}
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry, load_entrypoints=False)
    service = GovernorService(GovernorConfig.from_env(EnvReader(env)), client, plugins,
                              registry, clock=lambda: NOW)
    service.ensure_group()
    return service, registry


def drain(service: GovernorService) -> None:
    while service.step():
        pass


@pytest.mark.redis
@pytest.mark.parametrize(("value", "decision"), [
    ("true", "DENY"), ("ON", "DENY"), ("yes", "DENY"), (" 1", "DENY"), ("2", "DENY"),
    ("maybe", "DENY"), ("0", "ALLOW"), ("off", "ALLOW"), ("", "ALLOW"), (None, "ALLOW"),
])
def test_a_governor_denies_by_the_rule_and_exports_the_gauge(
        real_redis: redis.Redis, value: str | None, decision: str) -> None:
    if value is not None:
        real_redis.set(KILL, value)
    real_redis.xadd("quantum:stream:apply.plan", {"plan_id": "k-1", "symbol": "BTCUSDT",
                                                  "side": "BUY", "notional_usd": "100"})
    service, registry = governor(real_redis)
    drain(service)
    permit = real_redis.hgetall("quantum:permit:k-1")
    assert permit["decision"] == decision
    assert permit["reason"] == ("kill_switch" if decision == "DENY" else "no_cap")
    assert registry.get_sample_value("governor_kill_switch") == (decision == "DENY")


@pytest.mark.redis
def test_the_gauge_follows_the_switch_batch_by_batch(real_redis: redis.Redis) -> None:
    service, registry = governor(real_redis)
    assert registry.get_sample_value("governor_kill_switch") == 0
    for index, (value, gauge) in enumerate([("1", 1), ("0", 0), ("hash", 1), (None, 0)]):
        real_redis.delete(KILL)
        if value == "hash":
            real_redis.hset(KILL, "on", "1")
        elif value is not None:
            real_redis.set(KILL, value)
        real_redis.xadd("quantum:stream:apply.plan", {
            "plan_id": f"g-{index}", "symbol": "ETHUSDT", "side": "SELL",
            "notional_usd": "5"})
        drain(service)
        assert registry.get_sample_value("governor_kill_switch") == gauge, value
