"""Refused writes (issue 14, item 4): a plan that cannot be written or dead-lettered never
stalls the plans behind it, a transient error never dead-letters a valid plan, errors are
reported in Redis's own words and logged once per interval.

The classification is a table; the rest runs the governor against a real redis-server:
a wrong-typed dead-letter stream, ``maxmemory`` toggled during a drain, a wrong-typed
permit key.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis
from test_governor_integration import DEAD, ISSUED, PLANS, Governor, pending, plan

from governor_core.governor.batch import MAX_WRITE_ATTEMPTS
from governor_core.governor.faults import Fault, RetrySchedule, classify, error_code, redis_message
from governor_core.testing import RedisServer, wait_for

E = redis.exceptions
OOM_TEXT = "command not allowed when used memory > 'maxmemory'."
SCRIPT_AT = " script: f822083498c2a7f58f330797460b2d639e0dcad7, on @user_script:17."


# -- the classification: one function, a table -----------------------------------------

CLASSIFY = [
    # (error as redis-py raises or returns it, plan id, code, fault)
    (E.OutOfMemoryError(OOM_TEXT), "p1", "OOM", Fault.OUTAGE),
    (E.OutOfMemoryError(OOM_TEXT + SCRIPT_AT), None, "OOM", Fault.OUTAGE),
    (E.BusyLoadingError("Redis is loading the dataset in memory"), "p1", "LOADING",
     Fault.OUTAGE),
    (E.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
     "p1", "BUSY", Fault.OUTAGE),
    (E.ReadOnlyError("You can't write against a read only replica."), "p1", "READONLY",
     Fault.OUTAGE),
    (E.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to "
                       "'no'."), "p1", "MASTERDOWN", Fault.OUTAGE),
    (E.TryAgainError("Multiple keys request during rehashing of slot"), "p1", "TRYAGAIN",
     Fault.OUTAGE),
    (E.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's "
                     "currently unable to persist to disk."), "p1", "MISCONF", Fault.OUTAGE),
    (E.ResponseError("NOREPLICAS Not enough good replicas to write."), "p1", "NOREPLICAS",
     Fault.OUTAGE),
    (E.ClusterDownError("The cluster is down"), "p1", "CLUSTERDOWN", Fault.OUTAGE),
    (E.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
     "p1", "", Fault.OUTAGE),
    (E.TimeoutError("Timeout reading from socket"), "p1", "", Fault.OUTAGE),
    # the plan's own permit key of another type: the one permanent, plan-specific refusal
    (E.ResponseError("WRONGTYPE quantum:permit:p1 is a string, quantum:stream:permit.issued"
                     " is a stream"), "p1", "WRONGTYPE", Fault.PLAN_KEY),
    (E.ResponseError("WRONGTYPE quantum:permit:p1 is a list, quantum:stream:permit.issued"
                     " is a none"), "p1", "WRONGTYPE", Fault.PLAN_KEY),
    # ... but not when it is another plan's key, or no plan is involved
    (E.ResponseError("WRONGTYPE quantum:permit:p1 is a string, quantum:stream:permit.issued"
                     " is a stream"), "p2", "WRONGTYPE", Fault.OTHER),
    # a shared key of the wrong type: never the plan's fault
    (E.ResponseError("WRONGTYPE quantum:permit:p1 is a none, quantum:stream:permit.issued"
                     " is a string"), "p1", "WRONGTYPE", Fault.OTHER),
    (E.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value "
                     "(quantum:stream:apply.plan.dead is a string)"), None, "WRONGTYPE",
     Fault.OTHER),
    (E.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
     "p1", "WRONGTYPE", Fault.OTHER),
    # the issue script's label when HSETNX failed for another reason (OOM on Redis 7.0):
    # no key has a wrong type, so Redis refused the write itself
    (E.ResponseError("WRONGTYPE quantum:permit:p1 is a none, quantum:stream:permit.issued"
                     " is a none"), "p1", "WRONGTYPE", Fault.OUTAGE),
    (E.ResponseError("WRONGTYPE quantum:permit:p1 is a hash, quantum:stream:permit.issued"
                     " is a stream"), "p1", "WRONGTYPE", Fault.OUTAGE),
    # Redis's own message first, then the key types (as dead_letter.lua reports it)
    (E.OutOfMemoryError(OOM_TEXT + " (quantum:permit:p1 is a none, "
                        "quantum:stream:permit.issued is a stream)"), "p1", "OOM", Fault.OUTAGE),
    (E.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value "
                     "(quantum:permit:p1 is a set, quantum:stream:permit.issued is a stream)"),
     "p1", "WRONGTYPE", Fault.PLAN_KEY),
    # anything else: kept pending and retried with backoff, never dead-lettered
    (E.ResponseError("ERR Error running script (call to f_1234): @user_script:1: oops"),
     "p1", "ERR", Fault.OTHER),
    (E.NoPermissionError("this user has no permissions to run the 'xadd' command"), "p1",
     "NOPERM", Fault.OTHER),
    (E.ResponseError("something without a code"), "p1", "", Fault.OTHER),
    ("an unexpected reply", "p1", "", Fault.OTHER),
    (None, "p1", "", Fault.OTHER),
]


@pytest.mark.parametrize(("error", "plan_id", "code", "fault"), CLASSIFY)
def test_classify(error: Exception, plan_id: str | None, code: str, fault: Fault) -> None:
    assert error_code(error) == code
    assert classify(error, plan_id) is fault


@pytest.mark.parametrize(("error", "message"), [
    (E.OutOfMemoryError(OOM_TEXT), "OOM " + OOM_TEXT),
    (E.ReadOnlyError("You can't write against a read only replica."),
     "READONLY You can't write against a read only replica."),
    (E.ResponseError("WRONGTYPE Operation against a key"), "WRONGTYPE Operation against a key"),
    (E.ConnectionError("Connection refused."), "ConnectionError: Connection refused."),
])
def test_redis_message_is_redis_own_words_code_first(error: Exception, message: str) -> None:
    assert redis_message(error) == message


def test_retry_schedule_backs_off_and_pauses_only_for_outages() -> None:
    now = [100.0]
    schedule = RetrySchedule(clock=lambda: now[0])
    assert schedule.failed(soon=True, outage=False) == 0.0 and schedule.is_due()
    delays = [schedule.failed(soon=False, outage=False) for _ in range(8)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert not schedule.is_due() and schedule.pause_left() == 0.0
    schedule.succeeded()
    assert schedule.failed(soon=True, outage=True) == 0.1  # an outage always waits
    assert schedule.pause_left() == pytest.approx(0.1)
    now[0] += 0.1
    assert schedule.is_due() and schedule.pause_left() == 0.0


# -- against a real redis-server ---------------------------------------------------------

class Running:
    """``service.run()`` in a thread, stopped (and joined) on exit."""

    def __init__(self, gov: Governor) -> None:
        self.gov = gov
        self.thread = threading.Thread(target=gov.service.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gov.service.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


def permits(client: redis.Redis) -> list[str]:
    return [fields["plan_id"] for _, fields in client.xrange(ISSUED)]


class LineCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> LineCounter:
    handler = LineCounter()
    logger = logging.getLogger("quantum")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


@pytest.mark.redis
def test_good_plans_flow_past_a_plan_that_cannot_be_dead_lettered(
        real_redis: redis.Redis, lines: LineCounter) -> None:
    """The fault run's case: the dead-letter stream of the wrong type, one bad plan, 20 good
    plans behind it. Before: 0 of 20 permitted and ~3,300 log lines a second."""
    real_redis.set(DEAD, "not a stream")
    plan(real_redis, "bad-1", side="HOLD")
    for i in range(20):
        plan(real_redis, f"good-{i}")
    gov = Governor(real_redis)
    with Running(gov):
        wait_for(lambda: len(permits(real_redis)) == 20, timeout=10)
        time.sleep(1.5)  # the bad plan is retried with backoff meanwhile
        refused = gov.metric("governor_write_refusals_total",
                             {"write": "dead_letter", "fault": "other"})
    assert sorted(permits(real_redis)) == sorted(f"good-{i}" for i in range(20))
    assert pending(real_redis) == 1  # the bad plan: kept, not lost
    assert real_redis.type(DEAD) == "string"
    assert 2 <= refused <= 10  # retried with backoff (0.1, 0.2, 0.4, 0.8 s…), not in a loop
    errors = [r.getMessage() for r in lines.records if r.levelno >= logging.ERROR]
    assert 1 <= len(errors) <= 3, errors
    assert "WRONGTYPE Operation against a key holding the wrong kind of value" in errors[0]
    assert "quantum:stream:apply.plan.dead is a string" in errors[0]
    # the stream is fixed: the bad plan is dead-lettered by the next retry
    real_redis.delete(DEAD)
    with Running(Governor(real_redis)) as again:
        wait_for(lambda: real_redis.exists(DEAD) and pending(real_redis) == 0, timeout=10)
    assert [f["plan_id"] for _, f in real_redis.xrange(DEAD)] == ["bad-1"]
    assert again.gov.metric("governor_dead_letters_total", {"reason": "bad_side"}) == 1


@pytest.mark.redis
def test_oom_flapping_never_dead_letters_a_valid_plan(
        real_redis: redis.Redis, redis_server: RedisServer, lines: LineCounter) -> None:
    """``maxmemory`` toggled between 1 byte and unlimited every 2 ms while 3,000 plans are
    produced and drained (before: 1–18 valid plans dead-lettered as write_failed per run,
    and 1,513 error lines a second labelled WRONGTYPE)."""
    total, stop = 3000, threading.Event()
    toggler_client = redis_server.client()

    def toggle() -> None:
        limit = 1
        while not stop.is_set():
            toggler_client.config_set("maxmemory", limit)
            limit = 0 if limit else 1
            time.sleep(0.002)
        toggler_client.config_set("maxmemory", 0)

    producer = redis_server.client()

    def produce() -> None:
        sent = 0
        while sent < total:
            try:
                plan(producer, f"oom-{sent}")
                sent += 1
            except redis.exceptions.OutOfMemoryError:
                time.sleep(0.001)

    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "100"})
    toggler = threading.Thread(target=toggle)
    started = time.monotonic()
    try:
        with Running(gov):
            toggler.start()
            produce()
            time.sleep(max(0.0, 3.0 - (time.monotonic() - started)))
            stop.set()
            toggler.join()
            wait_for(lambda: real_redis.xlen(ISSUED) == total and pending(real_redis) == 0,
                     timeout=60)
    finally:
        stop.set()
        if toggler.is_alive():
            toggler.join()
        real_redis.config_set("maxmemory", 0)
    issued = permits(real_redis)
    assert len(issued) == len(set(issued)) == total  # each plan exactly one permit
    assert real_redis.xlen(DEAD) == 0  # no valid plan dead-lettered
    outage = gov.metric("governor_write_refusals_total", {"write": "permit", "fault": "outage"})
    assert outage > 0  # the flapping did refuse writes, and they were counted
    assert gov.metric("governor_dead_letters_total", {"reason": "write_failed"}) == 0
    errors = [r.getMessage() for r in lines.records if r.levelno >= logging.ERROR]
    assert len(errors) <= 3 * (time.monotonic() - started) / 10 + 5, errors[:5]


@pytest.mark.redis
def test_a_wrong_typed_permit_key_dead_letters_that_plan_only(real_redis: redis.Redis) -> None:
    real_redis.set("quantum:permit:wk-7", "garbage")
    for i in range(50):
        plan(real_redis, f"wk-{i}")
    gov = Governor(real_redis, {"GOVERNOR_BATCH_SIZE": "10"})
    with Running(gov):
        wait_for(lambda: real_redis.exists(DEAD) and pending(real_redis) == 0, timeout=10)
    assert sorted(permits(real_redis)) == sorted(f"wk-{i}" for i in range(50) if i != 7)
    (letter,) = [fields for _, fields in real_redis.xrange(DEAD)]
    assert (letter["error_code"], letter["plan_id"]) == ("write_failed", "wk-7")
    assert letter["error"].startswith("permit write failed: WRONGTYPE Operation against a key "
                                      "holding the wrong kind of value (quantum:permit:wk-7 "
                                      "is a string")
    assert gov.metric("governor_write_refusals_total",
                      {"write": "permit", "fault": "plan_key"}) == MAX_WRITE_ATTEMPTS
    assert real_redis.get("quantum:permit:wk-7") == "garbage"


@pytest.mark.redis
def test_a_wrong_typed_permit_stream_dead_letters_no_valid_plan(real_redis: redis.Redis) -> None:
    """The permit stream is every plan's: its wrong type is not a plan's fault. The plans
    wait (pending, retried with backoff) and are permitted once the key is fixed."""
    real_redis.set(ISSUED, "not a stream")
    for i in range(5):
        plan(real_redis, f"ws-{i}")
    gov = Governor(real_redis)
    with Running(gov):
        wait_for(lambda: gov.metric("governor_write_refusals_total",
                                    {"write": "permit", "fault": "other"}) >= 5 * 3, timeout=30)
        assert pending(real_redis) == 5 and not real_redis.exists(DEAD)
        real_redis.delete(ISSUED)
        wait_for(lambda: pending(real_redis) == 0, timeout=30)
    assert sorted(permits(real_redis)) == [f"ws-{i}" for i in range(5)]
    assert not real_redis.exists(DEAD)


@pytest.mark.redis
def test_a_dead_letter_for_write_failed_refused_in_turn_keeps_the_plan(
        real_redis: redis.Redis) -> None:
    real_redis.set("quantum:permit:dd-1", "garbage")
    real_redis.set(DEAD, "not a stream")
    plan(real_redis, "dd-1")
    plan(real_redis, "dd-2")
    gov = Governor(real_redis)
    with Running(gov):
        wait_for(lambda: gov.metric("governor_write_refusals_total",
                                    {"write": "dead_letter", "fault": "other"}) >= 2, timeout=30)
    assert permits(real_redis) == ["dd-2"]
    assert pending(real_redis) == 1  # dd-1: neither permitted nor dead-lettered, still there
    real_redis.delete(DEAD)
    with Running(Governor(real_redis)):
        wait_for(lambda: pending(real_redis) == 0, timeout=30)
    assert [f["plan_id"] for _, f in real_redis.xrange(DEAD)] == ["dd-1"]
    assert real_redis.xlen(PLANS) == 2


@pytest.mark.redis
@pytest.mark.parametrize("fault", ["oom", "wrongtype"])
def test_dead_letter_script_reports_redis_own_error_and_the_key_type(
        real_redis: redis.Redis, fault: str) -> None:
    """dead_letter.lua passes Redis's refusal on as it is (OOM stays OOM), naming the
    dead-letter stream's type; the plan is not acknowledged."""
    from governor_core.keys import DEAD_STREAM, PLAN_STREAM
    from governor_core.scripts import SCRIPTS

    entry = plan(real_redis, "dl-1")
    real_redis.xgroup_create(PLANS, "governor", id="0")
    real_redis.xreadgroup("governor", "c", {PLANS: ">"})
    if fault == "wrongtype":
        real_redis.set(DEAD, "x")
    else:
        real_redis.config_set("maxmemory", 1)
    try:
        with pytest.raises(redis.ResponseError) as refused:
            SCRIPTS["dead_letter"](real_redis, [DEAD_STREAM, PLAN_STREAM],
                                   ["governor", entry, "100", "error", "x"])
    finally:
        real_redis.config_set("maxmemory", 0)
    message = redis_message(refused.value)
    if fault == "oom":
        assert isinstance(refused.value, redis.exceptions.OutOfMemoryError)
        assert message.startswith("OOM command not allowed when used memory")
        assert message.endswith("(quantum:stream:apply.plan.dead is a none)")
        assert classify(refused.value) is Fault.OUTAGE
    else:
        assert message.startswith("WRONGTYPE Operation against a key holding the wrong kind")
        assert message.endswith("(quantum:stream:apply.plan.dead is a string)")
        assert classify(refused.value) is Fault.OTHER
    assert pending(real_redis) == 1
