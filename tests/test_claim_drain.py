"""Claiming drains (issue 14, item 5): one claim cycle follows ``XAUTOCLAIM``'s cursor
through the whole pending list, batch after batch, without waiting ``CLAIM_IDLE / 2``
between batches. Before, one claim took ``GOVERNOR_BATCH_SIZE`` plans per cycle: a dead
consumer's 5,100 pending plans took 11 cycles (12 s at a 2 s idle, ~6 minutes at the old
defaults)."""

from __future__ import annotations

import time

import pytest
import redis
from test_governor_integration import ISSUED, PLANS, Governor, pending

pytestmark = pytest.mark.redis

DEAD_PLANS = 5_100


def queue(client: redis.Redis, prefix: str, count: int) -> None:
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + 1000)):
            pipe.xadd(PLANS, {"plan_id": f"{prefix}-{i}", "symbol": "BTCUSDT", "side": "BUY",
                              "notional_usd": "100"})
        pipe.execute()


def test_a_dead_consumers_pending_plans_are_claimed_in_one_cycle(
        real_redis: redis.Redis) -> None:
    queue(real_redis, "dead", DEAD_PLANS)
    real_redis.xgroup_create(PLANS, "governor", id="0")
    read = real_redis.xreadgroup("governor", "crashed", {PLANS: ">"}, count=DEAD_PLANS)
    ids = [entry_id for entry_id, _ in read[0][1]]
    for start in range(0, len(ids), 1000):  # idle for 5 s, without sleeping
        real_redis.xclaim(PLANS, "governor", "crashed", 0, ids[start:start + 1000], idle=5000)
    # a live consumer's plans, read just now: not abandoned, never claimed
    queue(real_redis, "busy", 100)
    real_redis.xreadgroup("governor", "busy", {PLANS: ">"}, count=100)

    # The clock is fixed: the next claim cycle (CLAIM_IDLE / 2 later) never comes, so
    # whatever is claimed is claimed by the first cycle.
    survivor = Governor(real_redis, {"GOVERNOR_CLAIM_IDLE_MS": "1000"}, consumer="survivor")
    started = time.monotonic()
    survivor.drain(max_steps=200)
    elapsed = time.monotonic() - started

    issued = [fields["plan_id"] for _, fields in real_redis.xrange(ISSUED)]
    assert len(issued) == len(set(issued)) == DEAD_PLANS  # each exactly one permit
    assert set(issued) == {f"dead-{i}" for i in range(DEAD_PLANS)}
    assert pending(real_redis) == 100  # the live consumer's, untouched
    assert {c["name"]: c["pending"] for c in real_redis.xinfo_consumers(PLANS, "governor")
            if c["pending"]} == {"busy": 100}
    assert survivor.service._claim_cursor is None  # the cycle ran to the end of the list
    assert elapsed < 30, f"{DEAD_PLANS} claimed plans took {elapsed:.1f} s"


def test_a_claim_cycle_skips_past_plans_that_are_not_idle(real_redis: redis.Redis) -> None:
    """``XAUTOCLAIM`` looks at 10 × count entries per call; with a long run of live
    consumers' entries first, a call can return nothing with the scan unfinished: the cycle
    goes on from the cursor."""
    queue(real_redis, "live", 300)
    real_redis.xgroup_create(PLANS, "governor", id="0")
    real_redis.xreadgroup("governor", "live", {PLANS: ">"}, count=300)
    queue(real_redis, "dead", 20)
    read = real_redis.xreadgroup("governor", "crashed", {PLANS: ">"}, count=20)
    real_redis.xclaim(PLANS, "governor", "crashed", 0,
                      [entry_id for entry_id, _ in read[0][1]], idle=5000)
    survivor = Governor(real_redis, {"GOVERNOR_CLAIM_IDLE_MS": "1000",
                                     "GOVERNOR_BATCH_SIZE": "5"}, consumer="survivor")
    survivor.drain(max_steps=200)
    issued = sorted(fields["plan_id"] for _, fields in real_redis.xrange(ISSUED))
    assert issued == sorted(f"dead-{i}" for i in range(20))
    assert pending(real_redis) == 300
