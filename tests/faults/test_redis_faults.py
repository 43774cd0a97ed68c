"""Redis itself failing under a draining governor: SIGKILL and a restart from the
append-only file, SIGSTOP/SIGCONT, and both services started before Redis is up.

Which losses are asserted. A SIGKILL ends the Redis process, not the kernel: what Redis has
``write()``-n to its append-only file survives in the page cache. With ``appendfsync
always`` a write is in the file (and fsync-ed) before its reply is sent, so every plan the
producer was told it wrote must come back, and be permitted: **0 lost** is asserted against
every acknowledged plan. With ``everysec`` Redis replies before the fsync, and when a
background fsync is slow it may also postpone the ``write()`` for up to 2 s while still
replying: acknowledged writes can be lost (on a machine crash, up to about 2 s of them).
For ``everysec`` the suite asserts what the governor owes whatever Redis kept: every plan
Redis still has is permitted exactly once and nothing is pending; the acknowledged plans
that Redis did not keep are reported (``lost_by_redis``), not asserted. A permit lost with
the file's tail is lost with its plan's acknowledgement (one script writes both), so the
plan is pending again and is issued again after the restart, once.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
from faultkit import Producer, permits_issued, push_plans, recovery_since
from invariants import audit, wait_drained

from governor_core.keys import DECISION_STREAM, PLAN_STREAM, PORTFOLIO_KEY
from governor_core.testing import free_port, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faults]

PLANS = 10_000
RATE = 2_500  # plans a second: the drain lasts 4 s, the fault comes after about 1.2 s
FAULT_AT = 3_000  # permits


def reading(client: redis.Redis) -> bool:
    """Some governor has read from the group (it is up and connected)."""
    return bool(client.xinfo_consumers(PLAN_STREAM, "governor"))


def plans_in_stream(client: redis.Redis) -> set[str]:
    return {fields[b"plan_id"].decode() for _id, fields in client.xrange(PLAN_STREAM)}


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_redis_sigkill_and_restart_from_the_aof_mid_drain(scenario, figures, fsync: str
                                                          ) -> None:
    server = scenario.durable_server(fsync)
    client = redis.Redis.from_url(server.url)
    governor = scenario.governor(server.url)
    wait_for(lambda: reading(client), 30, "the governor reading")
    producer = Producer(server.url, f"aof-{fsync}", PLANS, rate=RATE)
    producer.start()
    wait_for(lambda: permits_issued(client) >= FAULT_AT, 30, f"{FAULT_AT} permits",
             interval=0.002)
    server.kill()
    time.sleep(0.5)
    server.restart()
    up = time.time()
    client = redis.Redis.from_url(server.url)
    recovery = recovery_since(client, up)
    producer.finish(60)
    present = plans_in_stream(client)
    lost_by_redis = sorted(set(producer.acked) - present)
    asserted = producer.acked if fsync == "always" else sorted(present)
    wait_drained(server.url, len(set(asserted)), 30, [governor])
    result = audit(server.url, asserted, [governor])
    figures(f"redis SIGKILL + AOF {fsync} restart mid-drain", server.url,
            plans=len(set(producer.acked)), lost=len(result.lost),
            duplicates=len(result.duplicates), lost_by_redis=len(lost_by_redis),
            recovery_sec=recovery)
    result.check([governor])
    if fsync == "always":
        assert not lost_by_redis, lost_by_redis[:5]


def test_redis_sigstop_and_sigcont_mid_drain(scenario, figures) -> None:
    """Redis frozen for 3 s mid-drain (a stalled host, a long fork): the governor waits,
    then goes on; the producer's writes that timed out are sent again (duplicates, one
    permit each)."""
    server = scenario.server()
    client = server.client()
    governor = scenario.governor(server.url)
    wait_for(lambda: reading(client), 30, "the governor reading")
    producer = Producer(server.url, "stop", PLANS, rate=RATE)
    producer.start()
    wait_for(lambda: permits_issued(client) >= FAULT_AT, 30, f"{FAULT_AT} permits",
             interval=0.002)
    server.process.send_signal(signal.SIGSTOP)
    time.sleep(3.0)
    server.process.send_signal(signal.SIGCONT)
    resumed = time.time()
    recovery = recovery_since(client, resumed)
    producer.finish(60)
    wait_drained(server.url, PLANS, 30, [governor])
    result = audit(server.url, producer.plan_ids(), [governor])
    figures("redis SIGSTOP 3 s / SIGCONT mid-drain", server.url, plans=PLANS,
            lost=len(result.lost), duplicates=len(result.duplicates),
            plan_entries=client.xlen(PLAN_STREAM), recovery_sec=recovery)
    result.check([governor])
    assert result.permits == PLANS


def test_both_services_started_with_redis_down_resume_when_it_comes_up(scenario, figures
                                                                        ) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    governor = scenario.governor(url)
    allocation = scenario.allocation(url, P29_INTERVAL_SEC="0.2", P29_MODE="enforce")
    time.sleep(2.0)
    assert governor.alive, governor.tail()
    assert allocation.alive, allocation.tail()
    server = scenario.server(port)
    up = time.time()
    client = server.client()
    now = f"{time.time():.3f}"
    client.hset(PORTFOLIO_KEY, mapping={"equity_usd": "100000", "drawdown": "0.02",
                                        "timestamp": now})
    client.hset("quantum:portfolio:budget:BTCUSDT", mapping={"budget_usd": "20000",
                                                             "timestamp": now})
    plans = [f"down-{n:03d}" for n in range(20)]
    push_plans(client, plans)
    governor_sec = recovery_since(client, up)
    wait_for(lambda: client.xlen(DECISION_STREAM), 30,
             f"an allocation decision; its log:\n{allocation.tail()}")
    first_decision = client.xrange(DECISION_STREAM, count=1)[0][0]
    allocation_sec = max(0.0, int(first_decision.split("-")[0]) / 1000 - up)
    wait_drained(server.url, len(plans), 30, [governor])
    result = audit(server.url, plans, [governor, allocation])
    figures("both services started with redis down", server.url, plans=len(plans),
            lost=len(result.lost), duplicates=len(result.duplicates),
            governor_recovery_sec=governor_sec, allocation_recovery_sec=allocation_sec)
    result.check([governor, allocation])
