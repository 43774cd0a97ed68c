"""Bad bytes in the names housekeeping and the operator commands handle (issue 14, item 1):
a consumer name, a target key name, a ledger timestamp; and an unreadable cap key is
logged once a minute, not once a batch."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from governor_core.allocation.ops import clear_live_targets
from governor_core.config import RedisSettings
from governor_core.governor.inputs import gate_commands, judge_gates
from governor_core.ledger import format_entries
from governor_core.redis_io import connect, execute_commands
from governor_core.testing import RedisServer
from tests.test_bad_bytes import BAD, PLANS, governor

pytestmark = pytest.mark.redis


@pytest.fixture
def clients(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """The production client and a raw one that writes bytes, on a flushed server."""
    raw = redis.Redis(port=redis_server.port)
    raw.flushall()
    prod = connect(RedisSettings.from_url(redis_server.url))
    yield prod, raw
    prod.close()
    raw.close()


def test_an_idle_consumer_with_a_bad_byte_in_its_name_is_deleted(
        clients: tuple[redis.Redis, redis.Redis]) -> None:
    prod, raw = clients
    service = governor(prod, {"GOVERNOR_CONSUMER_IDLE_DELETE_SEC": "1"})
    raw.xreadgroup("governor", b"dead-" + BAD, {PLANS: ">"}, count=1)
    time.sleep(1.1)
    service.step()  # the first step runs the claim round and its housekeeping
    names = [c["name"] for c in raw.xinfo_consumers(PLANS, "governor")]
    assert b"dead-" + BAD not in names


def test_clear_targets_deletes_a_target_whose_name_has_a_bad_byte(
        clients: tuple[redis.Redis, redis.Redis]) -> None:
    prod, raw = clients
    raw.hset(b"quantum:allocation:target:BTC" + BAD, b"target_usd", b"1")
    raw.hset(b"quantum:allocation:target:ETHUSDT", b"target_usd", b"1")
    raw.hset(b"quantum:allocation:target:proposed:ETHUSDT", b"target_usd", b"1")
    assert clear_live_targets(prod) == 2
    assert raw.keys(b"quantum:allocation:target:*") == [
        b"quantum:allocation:target:proposed:ETHUSDT"]


@pytest.mark.parametrize("ts", ["1e400", "9" * 400, "x\udcff", "", "-5"])
def test_a_ledger_line_with_an_impossible_time_is_shown_as_written(ts: str) -> None:
    (line,) = format_entries([("1-0", {"ts": ts, "action": "kill", "who": "ops"})])
    assert "kill" in line and "ops" in line


def test_an_unreadable_cap_key_is_logged_once_a_minute(
        clients: tuple[redis.Redis, redis.Redis], caplog: pytest.LogCaptureFixture,
        redis_server: RedisServer) -> None:
    prod, raw = clients
    raw.set("quantum:portfolio:budget:ADAUSDT", "a string, not a hash")
    caplog.set_level(logging.WARNING, "quantum.governor")
    for _ in range(50):
        commands = gate_commands(["ADAUSDT"])
        judge_gates(["ADAUSDT"], execute_commands(prod, commands))
    lines = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
