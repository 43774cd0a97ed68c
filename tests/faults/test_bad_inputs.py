"""Inputs and writes that go wrong while plans flow: a plan with a byte that is not UTF-8, a
dead-letter stream of the wrong type, Redis flapping in and out of OOM, a stale backlog.

What must hold: one bad plan never stops the good ones behind it; a transient refusal
(OOM) never dead-letters a valid plan; a plan that cannot be dead-lettered stays pending
and is retried until it can be; a backlog older than ``GOVERNOR_MAX_PLAN_AGE_SEC`` is
denied (``stale_plan``), never a burst of stale permits.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import redis
from faultkit import push_plans
from invariants import audit, raw_client, wait_drained

from governor_core.keys import DEAD_STREAM, PERMIT_STREAM, PLAN_STREAM
from governor_core.testing import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faults]

GOOD = [f"good-{n:02d}" for n in range(20)]


def reading(client: redis.Redis) -> bool:
    return bool(client.xinfo_consumers(PLAN_STREAM, "governor"))


def permitted(client: redis.Redis, plan_ids: list[str]) -> int:
    found = {fields.get("plan_id") for _id, fields in client.xrange(PERMIT_STREAM)}
    return len(found & set(plan_ids))


def test_a_plan_with_invalid_utf8_is_dead_lettered_and_the_20_behind_it_permitted(
        scenario, figures) -> None:
    server = scenario.server()
    client = server.client()
    raw = raw_client(server.url)
    raw.xadd(PLAN_STREAM, {b"plan_id": b"poison-\xff1", b"symbol": b"BTCUSDT",
                           b"side": b"BUY", b"notional_usd": b"100"})
    push_plans(client, GOOD)
    started = time.time()
    governor = scenario.governor(server.url)
    try:
        wait_drained(server.url, len(GOOD) + 1, 20, [governor])
    finally:
        result = audit(server.url, GOOD, [governor])
        figures("poison plan (byte 0xff) + 20 good", server.url, permits=result.permits,
                dead_letters=result.dead_letters, lost=len(result.lost),
                duplicates=len(result.duplicates), seconds=time.time() - started)
    result.check([governor])
    assert result.permits == len(GOOD)
    [dead] = result.dead_fields
    assert dead.get("error_code") == "bad_encoding", dead
    assert any("ff" in value.lower() for value in dead.values()), dead  # the bytes, readable
    assert "Traceback" not in governor.output()


def test_good_plans_flow_past_a_plan_that_cannot_be_dead_lettered(scenario, figures
                                                                   ) -> None:
    """The dead-letter stream is a string: the bad plan stays pending (retried, with
    backoff) while the 20 good plans behind it are permitted; the log does not storm.
    Once the key is fixed, the bad plan is dead-lettered and the invariant holds."""
    server = scenario.server()
    client = server.client()
    client.set(DEAD_STREAM, "not a stream")
    client.xadd(PLAN_STREAM, {"plan_id": "bad-1", "symbol": "BTCUSDT", "side": "BUY",
                              "notional_usd": "-5"})
    push_plans(client, GOOD)
    governor = scenario.governor(server.url)
    started = time.time()
    try:
        wait_for(lambda: permitted(client, GOOD) == len(GOOD), 15,
                 "the 20 good plans permitted")
        flowed_sec: float | None = time.time() - started
    except AssertionError:
        flowed_sec = None
    good_permitted = permitted(client, GOOD)
    time.sleep(2.0)  # the bad plan is retried meanwhile
    stuck_sec = time.time() - started
    stuck_lines = len(governor.output().splitlines())
    client.delete(DEAD_STREAM)
    fixed = time.time()
    try:
        wait_drained(server.url, len(GOOD) + 1, 30, [governor])
    finally:
        result = audit(server.url, [*GOOD, "bad-1"], [governor])
        figures("dead-letter stream of the wrong type", server.url,
                good_permitted=good_permitted, good_permitted_sec=flowed_sec,
                log_lines_per_sec=stuck_lines / stuck_sec,
                dead_lettered_after_fix_sec=time.time() - fixed, lost=len(result.lost),
                duplicates=len(result.duplicates))
    assert flowed_sec is not None, f"{good_permitted} of 20 good plans permitted behind it"
    result.check([governor])
    assert stuck_lines / stuck_sec < 50, governor.tail(50)


class OomFlapper(threading.Thread):
    """``maxmemory`` toggled between 1 byte (every write refused: OOM) and unlimited every
    ``period`` seconds, until stopped; ends unlimited. After each switch to 1 byte a probe
    write proves the refusal (``refused``)."""

    def __init__(self, client: redis.Redis, period: float) -> None:
        super().__init__(daemon=True)
        self.client, self.period = client, period
        self.stopping = threading.Event()
        self.toggles = self.refused = 0

    def run(self) -> None:
        low = False
        while not self.stopping.wait(self.period):
            low = not low
            self.client.config_set("maxmemory", "1" if low else "0")
            self.toggles += 1
            if low:
                try:
                    self.client.set("faults:oom-probe", "x")
                except redis.ResponseError as exc:  # OOM command not allowed …
                    self.refused += "maxmemory" in str(exc)
        self.client.config_set("maxmemory", "0")


def test_redis_flapping_in_and_out_of_oom_dead_letters_no_valid_plan(scenario, figures
                                                                     ) -> None:
    """3,000 valid plans drained while ``maxmemory`` flips every 2 ms for 4 s: OOM is an
    outage (retried), so none is dead-lettered and all are permitted once it ends."""
    server = scenario.server()
    client = server.client()
    client.config_set("maxmemory-policy", "noeviction")
    governor = scenario.governor(server.url)
    wait_for(lambda: reading(client), 30, "the governor reading")
    plans = [f"oom-{n:05d}" for n in range(3_000)]
    governor.process.send_signal(signal.SIGSTOP)  # the plans queue up: drained under OOM
    push_plans(client, plans)
    flapper = OomFlapper(server.client(), 0.002)
    flapper.start()
    governor.process.send_signal(signal.SIGCONT)
    time.sleep(4.0)
    flapper.stopping.set()
    flapper.join(10)
    ended = time.time()
    try:
        wait_drained(server.url, len(plans), 30, [governor])
    finally:
        result = audit(server.url, plans, [governor])
        figures("redis OOM flapping (2 ms, 4 s), 3,000 plans", server.url,
                permits=result.permits, dead_lettered=result.dead_letters,
                lost=len(result.lost), duplicates=len(result.duplicates),
                toggles=flapper.toggles, refused_probes=flapper.refused,
                drained_after_sec=time.time() - ended,
                log_lines=len(governor.output().splitlines()))
    assert flapper.refused, "Redis never refused a write: no fault was injected"
    result.check([governor])
    assert result.dead_letters == 0, result.dead_fields[:3]
    assert result.permits == len(plans)


def test_a_stale_backlog_is_denied_as_stale_plan(scenario, figures) -> None:
    """A backlog queued a minute ago (by ``ts``, or by the stream entry id's time when
    ``ts`` is absent), then fresh plans; ``GOVERNOR_MAX_PLAN_AGE_SEC=5``."""
    server = scenario.server()
    client = server.client()
    now = time.time()
    old_ms = int((now - 60) * 1000)
    by_id = [f"old-id-{n:02d}" for n in range(10)]
    by_ts = [f"old-ts-{n:02d}" for n in range(10)]
    fresh = [f"fresh-{n:02d}" for n in range(10)]
    for n, plan_id in enumerate(by_id):
        client.xadd(PLAN_STREAM, {"plan_id": plan_id, "symbol": "BTCUSDT", "side": "BUY",
                                  "notional_usd": "100"}, id=f"{old_ms}-{n}")
    push_plans(client, by_ts, ts=f"{now - 60:.3f}")
    push_plans(client, fresh, ts=f"{now:.3f}")
    governor = scenario.governor(server.url, GOVERNOR_MAX_PLAN_AGE_SEC="5")
    try:
        wait_drained(server.url, 30, 20, [governor])
    finally:
        result = audit(server.url, [*by_id, *by_ts, *fresh], [governor])
        reasons = {plan: (fields.get("decision"), fields.get("reason"))
                   for plan, fields in result.permit_fields.items()}
        stale = sum(1 for plan in by_id + by_ts
                    if reasons.get(plan) == ("DENY", "stale_plan"))
        figures("stale backlog (60 s old, max age 5 s)", server.url,
                stale_denied=stale, fresh_allowed=sum(
                    1 for plan in fresh if reasons.get(plan, ("",))[0] == "ALLOW"),
                lost=len(result.lost), duplicates=len(result.duplicates))
    result.check([governor])
    assert stale == 20, reasons
    assert all(reasons[plan][0] == "ALLOW" for plan in fresh), reasons
