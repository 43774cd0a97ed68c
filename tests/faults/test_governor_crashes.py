"""Governors that crash: kill -9 mid-drain, again and again; one of two governors of a group
killed; a storm of duplicate plans on two governors. Redis stays up throughout.

What holds: a plan is acknowledged by the same script that writes its permit, so a crash
loses nothing (the plan stays pending and is read again, by the restarted process or, after
``GOVERNOR_CLAIM_IDLE_MS``, claimed by another), and a plan whose permit exists is never
issued again.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
from faultkit import Producer, Service, permits_issued, push_plans, recovery_since
from invariants import audit, wait_drained

from governor_core.keys import PLAN_STREAM
from governor_core.testing import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faults]


def consumers(client: redis.Redis) -> dict[str, int]:
    """The group's consumers and their pending counts."""
    return {c["name"]: c["pending"] for c in client.xinfo_consumers(PLAN_STREAM, "governor")}


def wait_reading(client: redis.Redis, names: set[str], services: list[Service]) -> None:
    """Wait until every consumer of ``names`` has read from the group (the governors are
    up and connected)."""
    try:
        wait_for(lambda: names <= set(consumers(client)), 30, f"consumers {sorted(names)}")
    except AssertionError as exc:
        logs = "\n".join(f"--- {s.name} (alive: {s.alive}):\n{s.tail()}" for s in services)
        raise AssertionError(f"{exc}; the group has {consumers(client)}\n{logs}") from None


def freeze_holding(governor: Service, client: redis.Redis, consumer: str, want: int = 100
                   ) -> int:
    """Stop ``governor`` (SIGSTOP) at a moment it holds pending plans, ``want`` of them if
    that happens within 1 s, else any; how many it holds."""
    deadline = time.monotonic() + 1
    while True:
        wait_for(lambda: consumers(client)[consumer] > 0, 10, f"{consumer} holding plans",
                 interval=0.001)
        governor.process.send_signal(signal.SIGSTOP)
        time.sleep(0.05)  # what it sent before the stop is applied by now
        held = consumers(client)[consumer]
        if held >= want or (held and time.monotonic() > deadline):
            return held
        governor.process.send_signal(signal.SIGCONT)


def test_kill_9_three_times_mid_drain_loses_and_repeats_nothing(scenario, figures) -> None:
    """10,000 queued plans; the governor is killed with SIGKILL at 2,500, 5,000 and 7,500
    permits and started again each time (a new process id, so a new consumer name, as
    under systemd): the plans each dead one held are claimed after the idle time."""
    server = scenario.server()
    client = server.client()
    plans = [f"kill-{n:06d}" for n in range(10_000)]
    push_plans(client, plans)
    killed_at: list[int] = []
    held: list[int] = []  # pending in the group at each kill (the dead ones' plans)
    restarts: list[float] = []
    governor = scenario.governor(server.url, "governor-0")
    for round_no, kill_at in enumerate((2_500, 5_000, 7_500), 1):
        wait_for(lambda at=kill_at: permits_issued(client) >= at, 30,
                 f"{kill_at} permits", interval=0.002)
        governor.kill()
        killed_at.append(permits_issued(client))
        held.append(client.xpending(PLAN_STREAM, "governor")["pending"])
        restarted = time.time()
        governor = scenario.governor(server.url, f"governor-{round_no}")
        restarts.append(recovery_since(client, restarted))
    wait_drained(server.url, len(plans), 30, [governor])
    result = audit(server.url, plans, [governor])
    figures("governor kill -9 x3 mid-drain", server.url, plans=len(plans),
            lost=len(result.lost), duplicates=len(result.duplicates),
            killed_at_permits="/".join(map(str, killed_at)),
            group_pending_at_kills="/".join(map(str, held)),
            recovery_sec=max(restarts))
    assert all(at < len(plans) for at in killed_at), f"not killed mid-drain: {killed_at}"
    result.check([governor])
    assert result.permits == len(plans)


def test_two_governors_one_killed_each_plan_gets_exactly_one_permit(scenario, figures
                                                                     ) -> None:
    """Two governors of one group share a stream fed at 6,000 plans/s (500 at a time);
    one is killed with SIGKILL mid-drain, holding pending plans; the other claims them
    (idle 1 s) and finishes the stream."""
    server = scenario.server()
    client = server.client()
    first = scenario.governor(server.url, "governor-a", GOVERNOR_CONSUMER="faults-a")
    second = scenario.governor(server.url, "governor-b", GOVERNOR_CONSUMER="faults-b")
    wait_reading(client, {"faults-a", "faults-b"}, [first, second])
    producer = Producer(server.url, "two", 18_000, rate=6_000, chunk=500)
    producer.start()
    wait_for(lambda: permits_issued(client) >= 4_000, 30, "4,000 permits", interval=0.002)
    held = freeze_holding(first, client, "faults-a")
    first.kill()
    killed = time.time()
    wait_for(lambda: consumers(client)["faults-a"] == 0, 30, "the dead one's plans claimed")
    claimed_sec = time.time() - killed
    producer.finish(30)
    plans = producer.plan_ids()
    wait_drained(server.url, len(plans), 30, [second])
    result = audit(server.url, plans, [second])
    figures("two governors, one killed", server.url, plans=len(plans),
            lost=len(result.lost), duplicates=len(result.duplicates),
            pending_of_the_dead=held, claimed_sec=claimed_sec)
    result.check([second])
    assert result.permits == len(plans)


def test_duplicate_storm_on_two_governors_gives_one_permit_per_plan(scenario, figures
                                                                     ) -> None:
    """1,500 plan ids written 5 times each (7,500 entries, the copies interleaved) while two
    governors drain the stream: one permit per plan id, every copy acknowledged."""
    server = scenario.server()
    client = server.client()
    governors = [scenario.governor(server.url, f"governor-{name}",
                                   GOVERNOR_CONSUMER=f"faults-{name}") for name in "ab"]
    wait_reading(client, {"faults-a", "faults-b"}, governors)
    plans = [f"dup-{n:06d}" for n in range(1_500)]
    started = time.time()
    for _copy in range(5):
        push_plans(client, plans)
    wait_drained(server.url, len(plans), 30, governors)
    drained_sec = time.time() - started
    time.sleep(0.2)  # any late copy would show as a second permit entry by now
    result = audit(server.url, plans, governors)
    figures("duplicate storm, two governors", server.url, plan_ids=len(plans),
            entries=5 * len(plans), permits=result.permits, lost=len(result.lost),
            duplicates=len(result.duplicates), drain_sec=drained_sec)
    result.check(governors)
    assert result.permits == len(plans)
    assert client.xlen(PLAN_STREAM) == 5 * len(plans)
