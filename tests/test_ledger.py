"""The ops ledger and the commands that write it (kill, promote, rollback), against a real
redis-server: one entry per change of state, with who/why/before/after; nothing written
when nothing changes or when promote is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from governor_core import kill, ledger
from governor_core.keys import KILL_KEY, LEDGER_STREAM, MODE_KEY

pytestmark = pytest.mark.redis

BIN = Path(sys.executable).parent


def command(program: str, *argv: str, url: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SUDO_USER", "USER")}
    return subprocess.run([str(BIN / program), *argv], capture_output=True, text=True,
                          timeout=60, env={**base, "REDIS_URL": url, **env})


def entries(client: redis.Redis) -> list[dict[str, str]]:
    return [fields for _id, fields in client.xrange(LEDGER_STREAM)]


@pytest.mark.parametrize(("env", "who"), [
    ({"SUDO_USER": "alice", "USER": "root"}, "alice"),
    ({"USER": "bob"}, "bob"),
    ({}, "unknown"),
    ({"SUDO_USER": "", "USER": "carol"}, "carol"),
])
def test_who_defaults_to_sudo_user_then_user(env, who) -> None:
    assert ledger.default_who(env) == who


def test_entry_fields_in_order() -> None:
    entry = ledger.ledger_entry("kill_on", "alice", "incident 42", "(absent)", "1",
                                {"b": 1, "a": [2]}, now=1_800_000_000.5)
    assert list(entry) == list(ledger.LEDGER_FIELDS)
    assert entry["ts"] == "1800000000.500" and entry["detail"] == '{"a":[2],"b":1}'


def test_kill_on_off_each_one_entry_and_repeats_none(real_redis) -> None:
    assert kill.switch(real_redis, True, who="alice", why="incident 42").startswith(
        "kill switch ON")
    assert real_redis.get(KILL_KEY) == "1"
    assert "already ON" in kill.switch(real_redis, True, who="alice", why="again")
    assert kill.switch(real_redis, False, who="bob", why="resolved").startswith(
        "kill switch OFF")
    assert real_redis.exists(KILL_KEY) == 0
    assert "already OFF" in kill.switch(real_redis, False, who="bob", why="again")
    got = entries(real_redis)
    assert [(e["action"], e["who"], e["why"], e["before"], e["after"]) for e in got] == [
        ("kill_on", "alice", "incident 42", "(absent)", "1"),
        ("kill_off", "bob", "resolved", "1", "(absent)")]


@pytest.mark.parametrize(("stored", "turn_on", "changes"), [
    ("true", True, True),      # on already, but normalised to 1: a change of the key
    ("1", True, False),
    ("0", False, False),       # reads as off: nothing to do
    ("maybe", False, True),    # unusable: reads as on (fail closed); off deletes it
    ("maybe", True, True),     # on writes a clean 1
])
def test_already_in_that_state_is_judged_as_the_governor_reads_it(real_redis, stored,
                                                                  turn_on, changes) -> None:
    real_redis.set(KILL_KEY, stored)
    kill.switch(real_redis, turn_on, who="x", why="y")
    assert len(entries(real_redis)) == (1 if changes else 0)
    if changes:
        assert entries(real_redis)[0]["before"] == stored


def test_a_hash_in_the_kill_key_is_replaced(real_redis) -> None:
    real_redis.hset(KILL_KEY, "on", "1")
    assert "ON (fail closed" in kill.status(real_redis)
    kill.switch(real_redis, False, who="x", why="cleanup")
    assert real_redis.exists(KILL_KEY) == 0
    assert entries(real_redis)[0]["before"] == "(a hash)"


def test_kill_commands_and_ledger_listing(redis_server, real_redis) -> None:
    url = redis_server.url
    on = command("quantum-governor", "kill", "on", "--reason", "fat finger drill", url=url,
                 SUDO_USER="alice", USER="root")
    assert on.returncode == 0, on.stderr
    status = command("quantum-governor", "kill", "status", url=url)
    assert status.stdout.startswith("kill switch ON") and "alice" in status.stdout
    no_reason = command("quantum-governor", "kill", "off", url=url)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    assert real_redis.get(KILL_KEY) == "1"
    off = command("quantum-governor", "kill", "off", "--reason", "drill over", "--who", "bob",
                  url=url)
    assert off.returncode == 0, off.stderr
    listing = command("quantum-governor", "ledger", "--json", url=url)
    data = json.loads(listing.stdout)
    assert [(e["action"], e["who"], e["why"]) for e in data] == [
        ("kill_on", "alice", "fat finger drill"), ("kill_off", "bob", "drill over")]
    assert set(data[0]) == {"id", *ledger.LEDGER_FIELDS} and isinstance(data[0]["detail"], dict)
    text = command("quantum-governor", "ledger", "--count", "1", url=url).stdout.splitlines()
    assert len(text) == 1 and "kill_off" in text[0] and "bob" in text[0]


def test_the_ledger_is_capped(real_redis) -> None:
    for index in range(600):
        ledger.append_to(real_redis, ledger.ledger_entry("kill_on", "x", str(index), "", ""),
                         maxlen=100)
    assert real_redis.xlen(LEDGER_STREAM) < 300


def seed_healthy_window(client: redis.Redis, *, interval: float, seconds: int) -> None:
    """Decisions for every cycle of the last ``seconds``, stream ids at their times."""
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for k in range(int(seconds / interval)):
        ms = now_ms - int(seconds * 1000) + int((k + 1) * interval * 1000) - 1
        pipe.xadd("quantum:stream:allocation.decision",
                  {"symbol": "BTCUSDT", "timestamp": f"{ms / 1000:.3f}", "target_usd": "100",
                   "base_budget": "100", "confidence": "1.0000", "fallbacks": "none"},
                  id=f"{ms}-0")
    pipe.execute()


def test_promote_refused_writes_nothing(redis_server, real_redis) -> None:
    result = command("quantum-allocation", "promote", "--reason", "go", "--window", "1m",
                     url=redis_server.url)
    assert result.returncode == 1
    assert "promote refused" in result.stdout and "FAIL  cycles" in result.stdout
    assert real_redis.exists(MODE_KEY) == 0 and real_redis.exists(LEDGER_STREAM) == 0


def test_promote_passes_on_a_healthy_window(redis_server, real_redis) -> None:
    seed_healthy_window(real_redis, interval=1.0, seconds=60)
    ready = command("quantum-allocation", "readiness", "--window", "1m", url=redis_server.url,
                    P29_INTERVAL_SEC="1")
    assert ready.returncode == 0, ready.stdout
    result = command("quantum-allocation", "promote", "--reason", "24h clean", "--window", "1m",
                     url=redis_server.url, P29_INTERVAL_SEC="1", USER="carol")
    assert result.returncode == 0, result.stdout + result.stderr
    assert real_redis.get(MODE_KEY) == "enforce"
    (entry,) = entries(real_redis)
    assert (entry["action"], entry["who"], entry["why"], entry["before"], entry["after"]) == (
        "promote", "carol", "24h clean", "(absent)", "enforce")
    assert json.loads(entry["detail"]) == {"forced": False, "passed": True, "failing": [],
                                           "window_sec": 60.0}
    again = command("quantum-allocation", "promote", "--reason", "again", url=redis_server.url)
    assert again.returncode == 0 and "already" in again.stdout
    assert len(entries(real_redis)) == 1


def test_promote_forced_records_the_failing_criteria(redis_server, real_redis) -> None:
    real_redis.set(MODE_KEY, "shadow")
    result = command("quantum-allocation", "promote", "--reason", "exec order", "--force",
                     "--window", "1m", url=redis_server.url, USER="dave")
    assert result.returncode == 0, result.stderr
    assert "FORCED" in result.stdout
    (entry,) = entries(real_redis)
    detail = json.loads(entry["detail"])
    assert detail["forced"] is True and detail["passed"] is False
    assert "cycles=0" in detail["failing"] and entry["before"] == "shadow"


def test_rollback_deletes_live_targets_and_records_the_count(redis_server, real_redis) -> None:
    real_redis.set(MODE_KEY, "enforce")
    for symbol in ("BTCUSDT", "ETHUSDT"):
        real_redis.hset(f"quantum:allocation:target:{symbol}", "target_usd", "1")
    real_redis.hset("quantum:allocation:target:proposed:BTCUSDT", "proposed_target", "1")
    result = command("quantum-allocation", "rollback", "--reason", "bad caps",
                     url=redis_server.url, USER="erin")
    assert result.returncode == 0, result.stderr
    assert real_redis.get(MODE_KEY) == "shadow"
    assert real_redis.keys("quantum:allocation:target:*") == [
        "quantum:allocation:target:proposed:BTCUSDT"]
    (entry,) = entries(real_redis)
    assert (entry["action"], entry["who"], entry["before"], entry["after"]) == (
        "rollback", "erin", "enforce", "shadow")
    assert json.loads(entry["detail"]) == {"targets_deleted": 2}
    again = command("quantum-allocation", "rollback", "--reason", "again", url=redis_server.url)
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert len(entries(real_redis)) == 1


def test_reason_is_required() -> None:
    result = subprocess.run([str(BIN / "quantum-allocation"), "promote"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2 and "--reason" in result.stderr
