"""The governor loop against a real redis-server, driven batch by batch with a fixed clock."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
import redis
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader
from governor_core.governor.batch import MAX_WRITE_ATTEMPTS
from governor_core.governor.config import GovernorConfig
from governor_core.governor.gates import CORE_FIELDS
from governor_core.governor.service import GovernorService
from governor_core.governor.writer import WRITE_CHUNK
from governor_core.plugins import build_plugin_host
from governor_core.testing import RedisServer, RoundTrips

pytestmark = pytest.mark.redis

NOW = 1_700_000_000.0
PLANS = "quantum:stream:apply.plan"
DEAD = "quantum:stream:apply.plan.dead"
ISSUED = "quantum:stream:permit.issued"
EFF_FIELDS = ("eff_score", "eff_confidence", "eff_stale", "eff_factor", "eff_action",
              "eff_reason", "downsize_factor", "extra_cooldown_sec")


class Governor:
    """A GovernorService with the installed plugins, a settable clock and its registry."""

    def __init__(self, client: redis.Redis, env: Mapping[str, str] | None = None,
                 *, consumer: str = "test-1", now: float = NOW) -> None:
        full_env = {"GOVERNOR_CONSUMER": consumer, "GOVERNOR_BLOCK_MS": "1",
                    **(env or {})}
        self.now = now
        self.client = client
        self.registry = CollectorRegistry()
        self.plugins = build_plugin_host("governor", full_env, self.registry,
                                         disabled=EnvReader(full_env).names(
                                             "QUANTUM_DISABLE_PLUGINS"))
        self.service = GovernorService(GovernorConfig.from_env(EnvReader(full_env)), client,
                                       self.plugins, self.registry, clock=lambda: self.now)
        self.service.ensure_group()

    def drain(self, max_steps: int = 100, *, overlap: bool = False) -> int:
        """Step until two reads in a row come back empty; the number of entries seen."""
        seen = empty = 0
        for _ in range(max_steps):
            count = self.service.step(overlap=overlap)
            seen += count
            empty = 0 if count else empty + 1
            if empty == 2:
                return seen
        raise AssertionError("the governor did not go idle")

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, dict(labels or {})) or 0.0


def plan(client: redis.Redis, plan_id: str, symbol: str = "BTCUSDT", side: str = "BUY",
         notional: str = "100", **extra: str) -> str:
    return client.xadd(PLANS, {"plan_id": plan_id, "symbol": symbol, "side": side,
                               "notional_usd": notional, **extra})


def efficiency(client: redis.Redis, symbol: str, score: str, conf: str = "0.9",
               age: float = 10.0) -> None:
    client.hset(f"quantum:capital:efficiency:{symbol}",
                mapping={"efficiency_score": score, "confidence": conf, "ts": str(NOW - age),
                         "mode": "enforce"})


def pending(client: redis.Redis, group: str = "governor") -> int:
    return client.xpending(PLANS, group)["pending"]


def test_every_permit_field_and_its_value(real_redis: redis.Redis) -> None:
    efficiency(real_redis, "BTCUSDT", "0.2")
    real_redis.hset("quantum:portfolio:budget:BTCUSDT", mapping={"budget_usd": "1000",
                                                                 "timestamp": str(NOW)})
    entry_id = plan(real_redis, "perm-1", notional="2500.5")
    gov = Governor(real_redis, {"GOVERNOR_COOLDOWN_SEC": "15"})
    assert gov.drain() == 1

    permit = real_redis.hgetall("quantum:permit:perm-1")
    expected = {
        "plan_id": "perm-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "2500.5",
        "decision": "CLAMP", "reason": "above_cap", "allowed_notional_usd": "1000",
        "cap_usd": "1000", "cap_source": "budget", "cooldown_sec": "15",
        "issued_ts": "1700000000.000", "expires_ts": "1700000060.000",
        "eff_score": "0.2000", "eff_confidence": "0.9000", "eff_stale": "0",
        "eff_factor": "0.4444", "eff_action": "DOWNSIZE", "eff_reason": "ok",
        "downsize_factor": "0.4444", "extra_cooldown_sec": "96",
        "config_id": gov.service.config_snapshot.config_id,
    }
    assert permit == expected
    assert 55 <= real_redis.ttl("quantum:permit:perm-1") <= 60
    # one stream entry per permit, carrying every field of the permit in the same order
    entries = real_redis.xrange(ISSUED)
    assert len(entries) == 1
    assert list(entries[0][1].items()) == list(expected.items())
    # acknowledged
    assert pending(real_redis) == 0
    assert real_redis.xpending_range(PLANS, "governor", "-", "+", 10) == []
    assert entry_id
    assert gov.metric("governor_permits_issued_total", {"decision": "CLAMP"}) == 1
    assert gov.metric("p32_eff_apply_total", {"action": "DOWNSIZE", "reason": "ok"}) == 1
    assert gov.metric("p32_eff_factor", {"symbol": "BTCUSDT"}) == pytest.approx(0.2 / 0.45)


def test_permit_stream_entry_carries_the_whole_permit(real_redis: redis.Redis) -> None:
    """The stream entry is the durable record of the decision (SPEC 8): the core fields,
    every plugin field and config_id, as on the permit hash, in order."""
    efficiency(real_redis, "BTCUSDT", "0.2")
    plan(real_redis, "stream-1")
    Governor(real_redis).drain()
    entry = real_redis.xrange(ISSUED)[0][1]
    permit = real_redis.hgetall("quantum:permit:stream-1")
    assert list(entry) == [*CORE_FIELDS, *EFF_FIELDS, "config_id"]
    assert list(entry.items()) == list(permit.items())
    assert entry["eff_action"] == "DOWNSIZE"


def test_permit_ttl_is_configurable(real_redis: redis.Redis) -> None:
    plan(real_redis, "ttl-1")
    Governor(real_redis, {"GOVERNOR_PERMIT_TTL_SEC": "5"}).drain()
    assert 1 <= real_redis.ttl("quantum:permit:ttl-1") <= 5
    assert real_redis.hget("quantum:permit:ttl-1", "expires_ts") == "1700000005.000"


@pytest.mark.parametrize(("eff", "action", "reason", "factor"), [
    (("0.8", "0.9", 10.0), "NONE", "ok", "1.0000"),
    (None, "NONE", "missing_eff", "1.0000"),
    (("0.2", "0.3", 10.0), "NONE", "low_conf", "1.0000"),
    (("0.2", "0.9", 3600.0), "NONE", "stale_eff", "1.0000"),
    (("abc", "0.9", 10.0), "NONE", "invalid_eff", "1.0000"),
])
def test_fail_open_cases_in_the_loop(real_redis: redis.Redis, eff: tuple | None,
                                     action: str, reason: str, factor: str) -> None:
    if eff:
        efficiency(real_redis, "ETHUSDT", eff[0], eff[1], eff[2])
    plan(real_redis, "fo-1", symbol="ETHUSDT")
    gov = Governor(real_redis)
    gov.drain()
    permit = real_redis.hgetall("quantum:permit:fo-1")
    assert (permit["decision"], permit["eff_action"], permit["eff_reason"],
            permit["eff_factor"], permit["extra_cooldown_sec"]) == ("ALLOW", action, reason,
                                                                    factor, "0")
    assert gov.metric("p32_eff_apply_total", {"action": action, "reason": reason}) == 1


@pytest.mark.parametrize(("target", "budget", "notional", "decision", "reason", "allowed",
                          "cap", "source"), [
    ("500", "1000", "2000", "CLAMP", "above_cap", "500", "500", "allocation"),
    ("500", "1000", "500", "ALLOW", "within_cap", "500", "500", "allocation"),
    ("abc", "1000", "2000", "CLAMP", "above_cap", "1000", "1000", "budget"),
    (None, "1000", "999.99", "ALLOW", "within_cap", "999.99", "1000", "budget"),
    (None, None, "1000000", "ALLOW", "no_cap", "1000000", "", "none"),
])
def test_caps(real_redis: redis.Redis, target: str | None, budget: str | None, notional: str,
              decision: str, reason: str, allowed: str, cap: str, source: str) -> None:
    if target is not None:
        real_redis.hset("quantum:allocation:target:SOLUSDT", "target_usd", target)
    if budget is not None:
        real_redis.hset("quantum:portfolio:budget:SOLUSDT", "budget_usd", budget)
    plan(real_redis, "cap-1", symbol="SOLUSDT", notional=notional)
    Governor(real_redis).drain()
    permit = real_redis.hgetall("quantum:permit:cap-1")
    assert (permit["decision"], permit["reason"], permit["allowed_notional_usd"],
            permit["cap_usd"], permit["cap_source"]) == (decision, reason, allowed, cap,
                                                         source)


def test_kill_switch_denies_every_plan(real_redis: redis.Redis) -> None:
    real_redis.set("quantum:governor:kill", "1")
    real_redis.hset("quantum:portfolio:budget:BTCUSDT", "budget_usd", "1000000")
    for i, symbol in enumerate(["BTCUSDT", "ETHUSDT", "SOLUSDT", "BTCUSDT"]):
        plan(real_redis, f"kill-{i}", symbol=symbol, side="SELL" if i % 2 else "BUY")
    gov = Governor(real_redis)
    gov.drain()
    for i in range(4):
        permit = real_redis.hgetall(f"quantum:permit:kill-{i}")
        assert (permit["decision"], permit["reason"], permit["allowed_notional_usd"]) == (
            "DENY", "kill_switch", "0")
    assert gov.metric("governor_permits_issued_total", {"decision": "DENY"}) == 4
    # switched off again: the next plan is allowed
    real_redis.set("quantum:governor:kill", "0")
    plan(real_redis, "kill-after")
    gov.drain()
    assert real_redis.hget("quantum:permit:kill-after", "decision") == "ALLOW"


def test_wrong_typed_kill_switch_fails_closed(real_redis: redis.Redis) -> None:
    real_redis.hset("quantum:governor:kill", "on", "1")
    plan(real_redis, "kill-typed")
    Governor(real_redis).drain()
    assert real_redis.hget("quantum:permit:kill-typed", "decision") == "DENY"


@pytest.mark.parametrize(("fields", "code"), [
    ({"symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1"}, "bad_plan_id"),
    ({"plan_id": "d-1", "symbol": "btcusdt", "side": "BUY", "notional_usd": "1"},
     "bad_symbol"),
    ({"plan_id": "d-1", "symbol": "BTCUSDT", "side": "HOLD", "notional_usd": "1"}, "bad_side"),
    ({"plan_id": "d-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1_000"},
     "bad_notional"),
    ({"plan_id": "d-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "nan"},
     "bad_notional"),
    ({"plan_id": "d-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "1", "ts": "x"},
     "bad_ts"),
    ({"plan_id": "d-1", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "-1",
      "error": "producer's own", "source_id": "s"}, "bad_notional"),
])
def test_dead_letters(real_redis: redis.Redis, fields: dict[str, str], code: str) -> None:
    bad_id = real_redis.xadd(PLANS, fields)
    plan(real_redis, "after-dead")
    gov = Governor(real_redis)
    assert gov.drain() == 2

    dead = real_redis.xrange(DEAD)
    assert len(dead) == 1
    letter = dead[0][1]
    assert letter["error_code"] == code
    assert letter["source_id"] == bad_id
    assert letter["error"]
    for name, value in fields.items():
        key = f"orig_{name}" if name in ("error", "error_code", "source_id") else name
        assert letter[key] == value
    assert not real_redis.exists("quantum:permit:d-1")
    assert pending(real_redis) == 0  # the bad plan is acknowledged
    assert real_redis.hget("quantum:permit:after-dead", "decision") == "ALLOW"  # loop goes on
    assert gov.metric("governor_dead_letters_total", {"reason": code}) == 1


def test_duplicate_plan_id_gets_one_permit(real_redis: redis.Redis) -> None:
    plan(real_redis, "dup-1", notional="100")
    plan(real_redis, "dup-1", notional="999")
    gov = Governor(real_redis)
    gov.drain()
    plan(real_redis, "dup-1", notional="555")  # and again in a later batch
    gov.drain()
    assert real_redis.hget("quantum:permit:dup-1", "notional_usd") == "100"
    assert real_redis.xlen(ISSUED) == 1
    assert gov.metric("governor_duplicate_plans_total") == 2
    assert gov.metric("governor_permits_issued_total", {"decision": "ALLOW"}) == 1
    assert pending(real_redis) == 0


def test_plans_queued_before_the_first_start_are_processed(real_redis: redis.Redis) -> None:
    assert not real_redis.exists(PLANS)
    for i in range(5):
        plan(real_redis, f"early-{i}")
    assert real_redis.xinfo_stream(PLANS)["groups"] == 0
    Governor(real_redis).drain()
    assert all(real_redis.exists(f"quantum:permit:early-{i}") for i in range(5))


def test_group_name_is_configurable(real_redis: redis.Redis) -> None:
    plan(real_redis, "grp-1")
    Governor(real_redis, {"GOVERNOR_GROUP": "gov-b"}).drain()
    assert [g["name"] for g in real_redis.xinfo_groups(PLANS)] == ["gov-b"]
    assert real_redis.exists("quantum:permit:grp-1")


def test_a_failed_permit_write_leaves_the_plan_pending(real_redis: redis.Redis) -> None:
    """Acknowledgement only after the permit is written: with the permit stream unwritable
    (a wrong-typed key), the plan stays pending until the write succeeds."""
    real_redis.set(ISSUED, "not a stream")
    plan(real_redis, "wf-1")
    gov = Governor(real_redis)
    gov.service.step()
    gov.service.step()
    assert pending(real_redis) == 1
    assert real_redis.xlen(DEAD) == 0


def test_unwritable_permit_stream_never_dead_letters_a_valid_plan(
        real_redis: redis.Redis) -> None:
    """A wrong-typed permit stream is no fault of the plan (issue 14, item 4): however
    often its write is refused, the plan stays pending and is never dead-lettered."""
    real_redis.set(ISSUED, "not a stream")
    plan(real_redis, "wf-2")
    gov = Governor(real_redis)
    for _ in range(MAX_WRITE_ATTEMPTS + 2):
        gov.service.step()
    assert real_redis.xrange(DEAD) == []
    assert pending(real_redis) == 1
    assert gov.metric("governor_duplicate_plans_total") == 0


def test_wrong_typed_permit_key_is_dead_lettered_as_write_failed(
        real_redis: redis.Redis) -> None:
    real_redis.set("quantum:permit:wf-3", "garbage")
    plan(real_redis, "wf-3")
    gov = Governor(real_redis)
    gov.service.step()
    assert pending(real_redis) == 1  # not acknowledged: no permit was written
    for _ in range(MAX_WRITE_ATTEMPTS + 1):
        gov.service.step()
    letters = real_redis.xrange(DEAD)
    assert len(letters) == 1
    letter = letters[0][1]
    assert (letter["error_code"], letter["plan_id"]) == ("write_failed", "wf-3")
    assert pending(real_redis) == 0
    assert gov.metric("governor_dead_letters_total", {"reason": "write_failed"}) == 1
    assert gov.metric("governor_duplicate_plans_total") == 0


def test_crashed_consumers_plans_are_claimed(real_redis: redis.Redis) -> None:
    for i in range(3):
        plan(real_redis, f"claim-{i}")
    real_redis.xgroup_create(PLANS, "governor", id="0")
    # a governor read them and died before acknowledging
    read = real_redis.xreadgroup("governor", "crashed", {PLANS: ">"}, count=10)
    ids = [entry_id for entry_id, _ in read[0][1]]
    assert len(ids) == 3
    # make them look idle for 5 s without sleeping
    real_redis.xclaim(PLANS, "governor", "crashed", 0, ids, idle=5000)
    survivor = Governor(real_redis, {"GOVERNOR_CLAIM_IDLE_MS": "1000"}, consumer="survivor")
    survivor.drain()
    assert all(real_redis.exists(f"quantum:permit:claim-{i}") for i in range(3))
    assert pending(real_redis) == 0


def test_recent_pending_plans_of_another_consumer_are_not_stolen(
        real_redis: redis.Redis) -> None:
    plan(real_redis, "busy-1")
    real_redis.xgroup_create(PLANS, "governor", id="0")
    real_redis.xreadgroup("governor", "busy", {PLANS: ">"}, count=10)
    Governor(real_redis, {"GOVERNOR_CLAIM_IDLE_MS": "60000"}, consumer="other").drain()
    assert not real_redis.exists("quantum:permit:busy-1")
    assert pending(real_redis) == 1


def test_two_governors_share_the_group_one_permit_each(real_redis: redis.Redis) -> None:
    for i in range(50):
        plan(real_redis, f"share-{i}")
    first = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "10"}, consumer="a")
    second = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "10"}, consumer="b")
    for _ in range(10):
        first.service.step()
        second.service.step()
    assert real_redis.xlen(ISSUED) == 50
    issued = (first.metric("governor_permits_issued_total", {"decision": "ALLOW"})
              + second.metric("governor_permits_issued_total", {"decision": "ALLOW"}))
    assert issued == 50
    assert pending(real_redis) == 0


def test_output_streams_are_capped(real_redis: redis.Redis) -> None:
    pipe = real_redis.pipeline(transaction=False)
    for i in range(1500):
        pipe.xadd(PLANS, {"plan_id": f"cap-{i}", "symbol": "BTCUSDT", "side": "BUY",
                          "notional_usd": "1"})
        pipe.xadd(PLANS, {"plan_id": f"bad-{i}", "symbol": "lower", "side": "BUY",
                          "notional_usd": "1"})
    pipe.execute()
    gov = Governor(real_redis, {"GOVERNOR_STREAM_MAXLEN": "100"})
    assert gov.drain() == 3000
    # MAXLEN ~ trims whole stream nodes (100 entries by default): bounded, not exact
    assert 100 <= real_redis.xlen(ISSUED) <= 300
    assert 100 <= real_redis.xlen(DEAD) <= 300
    assert gov.metric("governor_permits_issued_total", {"decision": "ALLOW"}) == 1500


def test_same_inputs_and_now_give_byte_identical_permits(redis_server) -> None:
    raw = redis.Redis(port=redis_server.port)  # bytes, not decoded

    def run_once() -> list[list[tuple[bytes, bytes]]]:
        raw.flushall()
        client = redis_server.client()
        efficiency(client, "BTCUSDT", "0.2")
        efficiency(client, "ETHUSDT", "0.3", conf="0.4")
        client.hset("quantum:allocation:target:BTCUSDT", "target_usd", "750.25")
        client.hset("quantum:portfolio:budget:ETHUSDT", "budget_usd", "10")
        for i, (symbol, notional) in enumerate([("BTCUSDT", "1000"), ("ETHUSDT", "5"),
                                                ("SOLUSDT", "0.1"), ("BTCUSDT", "12.5")]):
            plan(client, f"det-{i}", symbol=symbol, notional=notional)
        Governor(client).drain()
        permits = [list(raw.hgetall(f"quantum:permit:det-{i}").items()) for i in range(4)]
        stream = [list(fields.items()) for _, fields in raw.xrange(ISSUED)]
        return [*permits, *stream]

    first, second = run_once(), run_once()
    assert all(first[:4])
    assert first == second


def test_disabled_p31_leaves_core_fields_identical(real_redis: redis.Redis) -> None:
    efficiency(real_redis, "BTCUSDT", "0.2")
    plan(real_redis, "with-1")
    Governor(real_redis).drain()
    with_p31 = real_redis.hgetall("quantum:permit:with-1")
    plan(real_redis, "without-1")
    gov = Governor(real_redis, {"QUANTUM_DISABLE_PLUGINS": "p31_efficiency"}, consumer="t2")
    gov.drain()
    without = real_redis.hgetall("quantum:permit:without-1")
    assert not set(EFF_FIELDS) & set(without)
    assert set(EFF_FIELDS) <= set(with_p31)
    # The same core fields; config_id names another configuration (no p31_efficiency).
    skip = {"plan_id", "config_id"}
    core_with = {k: v for k, v in with_p31.items() if k not in EFF_FIELDS and k not in skip}
    assert core_with == {k: v for k, v in without.items() if k not in skip}
    assert with_p31["config_id"] != without["config_id"]
    names = {metric.name for metric in gov.registry.collect()}
    assert not any(name.startswith("p32_") for name in names)


def test_efficiency_read_failure_is_redis_error_not_a_lost_permit(
        real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin's ``read_commands`` raises: the host counts it and reads the gates alone;
    the plugin then reads on its own, that read fails too, and the permit is still issued,
    fail-open, with ``redis_error``."""
    plan(real_redis, "rerr-1")
    gov = Governor(real_redis)
    import governor_core.efficiency

    def broken(self, symbols):
        raise RuntimeError("no commands today")

    def failing(client, commands):
        raise redis.ConnectionError("efficiency read lost")

    monkeypatch.setattr(governor_core.efficiency.EfficiencyReader, "commands", broken)
    monkeypatch.setattr(governor_core.efficiency, "execute_commands", failing)
    gov.drain()
    permit = real_redis.hgetall("quantum:permit:rerr-1")
    assert (permit["decision"], permit["eff_reason"], permit["eff_action"],
            permit["eff_factor"]) == ("ALLOW", "redis_error", "NONE", "1.0000")
    assert gov.registry.get_sample_value(
        "governor_plugin_errors_total",
        {"plugin": "p31_efficiency", "hook": "read_commands"}) == 1.0


def test_efficiency_hashes_are_read_in_the_gates_round_trip(
        real_redis: redis.Redis, redis_server: RedisServer) -> None:
    """p31_efficiency names its reads (``read_commands``): a batch is three round trips,
    XREADGROUP, gates with the efficiency hashes, writes; and the hint still comes from
    the hash."""
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW)})
    trips = RoundTrips()
    gov = Governor(trips.client(redis_server.url))
    gov.service.ensure_group()
    gov.service.step()  # opens the connections; nothing queued yet
    for i in range(3):
        plan(real_redis, f"rt-{i}")
    with trips:
        assert gov.service.step() == 3
    assert trips.count == 3
    permit = real_redis.hgetall("quantum:permit:rt-0")
    assert (permit["eff_reason"], permit["eff_action"], permit["eff_factor"]) == (
        "ok", "DOWNSIZE", "0.4444")


# -- the run loop's overlapped steps ---------------------------------------------------------


def test_overlapped_step_leaves_the_batch_in_flight_until_the_next(
        real_redis: redis.Redis) -> None:
    for i in range(30):
        plan(real_redis, f"ovl-{i}")
    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "20"})
    allowed = {"decision": "ALLOW"}
    assert gov.service.step(overlap=True) == 20
    assert gov.metric("governor_permits_issued_total", allowed) == 0  # replies not read yet
    assert gov.service.step(overlap=True) == 10
    assert gov.metric("governor_permits_issued_total", allowed) == 20  # the first batch's
    assert gov.service.step(overlap=True) == 0  # nothing new: the batch in flight finishes
    assert gov.metric("governor_permits_issued_total", allowed) == 30
    assert gov.service.flush() is None
    assert real_redis.xlen(ISSUED) == 30
    assert pending(real_redis) == 0


def test_overlapped_batches_give_one_permit_per_plan_id(real_redis: redis.Redis) -> None:
    """The same plan id in two consecutive batches, the first still in flight when the
    second is drafted: the scripts keep it to one permit."""
    for i in range(10):
        plan(real_redis, f"ovd-{i}", notional="100")
    for i in range(10):
        plan(real_redis, f"ovd-{i}", notional="999")
    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "10"})
    assert gov.drain(overlap=True) == 20
    assert real_redis.xlen(ISSUED) == 10
    assert {real_redis.hget(f"quantum:permit:ovd-{i}", "notional_usd")
            for i in range(10)} == {"100"}
    assert gov.metric("governor_duplicate_plans_total") == 10
    assert pending(real_redis) == 0


def test_overlapped_write_failure_is_retried_without_false_duplicates(
        real_redis: redis.Redis) -> None:
    """A refused write in a batch that was in flight: its plan is read again from the
    pending list (after the batch in flight is finished, so the plans written meanwhile are
    not retried as duplicates) and dead-lettered after the retries."""
    real_redis.set("quantum:permit:ovf-3", "garbage")
    for i in range(12):
        plan(real_redis, f"ovf-{i}")
    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "5"})
    for _ in range(MAX_WRITE_ATTEMPTS + 8):
        gov.service.step(overlap=True)
    gov.service.flush()
    assert real_redis.xlen(ISSUED) == 11
    assert [fields["plan_id"] for _, fields in real_redis.xrange(DEAD)] == ["ovf-3"]
    assert gov.metric("governor_duplicate_plans_total") == 0
    assert gov.metric("governor_permits_issued_total", {"decision": "ALLOW"}) == 11
    assert pending(real_redis) == 0


def test_run_finishes_the_batch_in_flight_when_stopped(real_redis: redis.Redis) -> None:
    for i in range(40):
        plan(real_redis, f"stop-{i}")
    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "15"})
    step = gov.service.step

    def step_then_stop(**kwargs: bool) -> int:
        count = step(**kwargs)
        gov.service.stop.set()  # a SIGTERM with the first batch in flight
        return count

    gov.service.step = step_then_stop  # type: ignore[method-assign]
    gov.service.run()
    assert real_redis.xlen(ISSUED) == 15
    assert gov.metric("governor_permits_issued_total", {"decision": "ALLOW"}) == 15
    assert pending(real_redis) == 0  # the other 25 were never read


def test_recovery_reads_wait_for_the_batch_in_flight(real_redis: redis.Redis) -> None:
    """Own pending entries are read again only once no batch is in flight: its plans are
    pending until Redis applies their writes, and reading them again would issue them
    twice over (as duplicates)."""
    real_redis.set("quantum:permit:rec-2", "garbage")
    for i in range(20):
        plan(real_redis, f"rec-{i}")
    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "4"})
    service, read = gov.service, gov.service._read
    in_flight_at_pending_reads = []

    def spy(cursor: str, block: int | None) -> list:
        if cursor != ">":
            in_flight_at_pending_reads.append(service._in_flight is not None)
        return read(cursor, block)

    service._read = spy  # type: ignore[method-assign]
    gov.drain(overlap=True)
    assert len(in_flight_at_pending_reads) > 1  # the retries of rec-2 happened
    assert not any(in_flight_at_pending_reads)


def test_a_batch_of_several_script_calls_writes_each_plans_own_fields(
        real_redis: redis.Redis) -> None:
    """Permits are written WRITE_CHUNK to a script call, each distinct set of plugin fields
    sent once per call: every permit must still get its own symbol's fields, and one
    refused plan must not take its call's other plans down with it."""
    scores = {"AAAUSDT": "0.1000", "BBBUSDT": "0.3000", "CCCUSDT": "0.9000"}
    for symbol, score in scores.items():
        efficiency(real_redis, symbol, score)
    symbols = [*scores, "DDDUSDT"]  # DDD has no efficiency data: missing_eff
    total = 2 * WRITE_CHUNK + 30
    bad = WRITE_CHUNK + 25
    real_redis.set(f"quantum:permit:chunk-{bad}", "garbage")
    for i in range(total):
        plan(real_redis, f"chunk-{i}", symbol=symbols[i % 4], notional=str(100 + i))
    gov = Governor(real_redis)
    assert gov.service.step() == total
    for i in range(total):
        if i == bad:
            continue
        permit = real_redis.hgetall(f"quantum:permit:chunk-{i}")
        symbol = symbols[i % 4]
        assert (permit["plan_id"], permit["symbol"], permit["notional_usd"]) == (
            f"chunk-{i}", symbol, str(100 + i))
        assert permit["eff_score"] == scores.get(symbol, "")
        assert permit["eff_reason"] == ("ok" if symbol in scores else "missing_eff")
    assert real_redis.xlen(ISSUED) == total - 1
    assert pending(real_redis) == 1
    assert gov.metric("governor_permits_issued_total", {"decision": "ALLOW"}) == total - 1


# -- consumers of the group: no dead names pile up -------------------------------------------


def consumers(client: redis.Redis, group: str = "governor") -> dict[str, dict]:
    return {c["name"]: c for c in client.xinfo_consumers(PLANS, group)}


def test_a_clean_stop_deletes_the_governors_own_consumer(real_redis: redis.Redis) -> None:
    plan(real_redis, "bye-1")
    gov = Governor(real_redis, consumer="leaving")
    gov.drain(overlap=True)
    assert "leaving" in consumers(real_redis)
    gov.service.close()
    assert "leaving" not in consumers(real_redis)
    assert real_redis.exists("quantum:permit:bye-1")  # the batch in flight was finished


def test_a_stop_keeps_a_consumer_that_holds_pending_plans(real_redis: redis.Redis) -> None:
    plan(real_redis, "held-1")
    gov = Governor(real_redis, consumer="holder")
    # delivered to this consumer but not processed (as after a refused write)
    real_redis.xreadgroup("governor", "holder", {PLANS: ">"}, count=10)
    gov.service.close()
    assert consumers(real_redis)["holder"]["pending"] == 1  # deleting it would lose the plan
    Governor(real_redis, consumer="holder").drain()
    assert real_redis.exists("quantum:permit:held-1")


def test_idle_consumers_with_nothing_pending_are_deleted(real_redis: redis.Redis) -> None:
    plan(real_redis, "idle-1")
    real_redis.xgroup_create(PLANS, "governor", id="0")
    real_redis.xgroup_createconsumer(PLANS, "governor", "dead-empty")
    real_redis.xreadgroup("governor", "dead-holding", {PLANS: ">"}, count=1)
    time.sleep(1.1)
    real_redis.xgroup_createconsumer(PLANS, "governor", "just-started")
    gov = Governor(real_redis, {"GOVERNOR_CONSUMER_IDLE_DELETE_SEC": "1"}, consumer="alive")
    gov.drain()
    names = consumers(real_redis)
    assert "dead-empty" not in names
    assert names["dead-holding"]["pending"] == 1  # left for the claim after CLAIM_IDLE_MS
    assert "just-started" in names and "alive" in names


def test_idle_consumer_deletion_can_be_turned_off(real_redis: redis.Redis) -> None:
    real_redis.xgroup_create(PLANS, "governor", id="0", mkstream=True)
    real_redis.xgroup_createconsumer(PLANS, "governor", "dead-empty")
    time.sleep(1.1)
    Governor(real_redis, {"GOVERNOR_CONSUMER_IDLE_DELETE_SEC": "0"}).drain()
    assert "dead-empty" in consumers(real_redis)
