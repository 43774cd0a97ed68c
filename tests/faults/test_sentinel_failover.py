"""A real failover mid-drain: the governor follows the primary Redis Sentinel promotes.

A primary, one replica and three sentinels (:func:`governor_core.testing.sentinel.
start_sentinels`); 20,000 plans written to the primary and replicated (``WAIT``) before
the drain; a real ``quantum-governor run`` process connected through the sentinels; the
fault once 6,000 permits are out. A reader tails the permit stream through the sentinels
as a downstream apply layer would, across the failover. Three runs:

* ``kill``: the primary is killed with SIGKILL (a crashed host);
* ``switchover``: ``SENTINEL FAILOVER``: the replica is promoted while the old primary
  lives on, taking writes on the connections it has until Sentinel demotes it (its next
  ``INFO``, up to 10 s later) and dropping them then; with and without
  ``GOVERNOR_WAIT_REPLICAS=1``.

Measured and printed per run:

* **lost**: plans with neither a permit nor a dead letter on the new primary at the end;
* **duplicates**: plan ids with two entries in the new primary's permit stream;
* **re-issued**: plan ids the reader saw twice, once from each primary: permits the old
  primary took that never reached the new one, lost with their plan's acknowledgement
  (both are written by one script) and issued again by the new primary. Replication is
  asynchronous, so a reader can see a permit that the failover then rolls back;
* **recovery**: from the fault to the new primary's first own permit (stream ids carry the
  time, the same clock), and the promotion's time (until every sentinel names it).

Asserted: the governor is still running and drains everything; no plan id has two entries
in the final permit stream; no plan is lost (every plan was replicated before the fault,
and a rolled-back permit takes its acknowledgement with it, so the plan is pending or unread
again on the new primary); after a switchover the governor writes to the new primary
within a second of the sentinels naming it (``governor_core.sentinel.FollowingPool``;
without it, 10.9 s); with ``WAIT`` at most one batch is re-issued per ``WAIT`` timeout
until the sentinels name the new primary, since a batch's writes go out only once the
previous batch's ``WAIT`` returned. Without ``WAIT`` nothing bounds the re-issued count but
the time the sentinels take: it is reported, not asserted.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from invariants import audit

from governor_core.keys import DEAD_STREAM, PERMIT_STREAM, PLAN_STREAM
from governor_core.redis_io import connect
from governor_core.testing import wait_for
from governor_core.testing.sentinel import SentinelCluster, start_sentinels

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faults]

BIN = Path(sys.executable).parent
PLANS = 20_000
KILL_AT = 6_000
BATCH = 500
WAIT_TIMEOUT_MS = 1000
#: Sentinels tell each other of a new configuration every 2 s (their hello messages): the
#: longest a sentinel the governor asks may still name the old primary.
HELLO_PERIOD_SEC = 2


@pytest.fixture
def cluster() -> Iterator[SentinelCluster]:
    deployment = start_sentinels(replicas=1, sentinels=3, down_after_ms=1000,
                                 failover_timeout_ms=3000)
    try:
        yield deployment
    finally:
        deployment.stop()


class PermitReader(threading.Thread):
    """Tails the permit stream through the sentinels, as the apply layer would: every
    ``(entry id, plan_id)`` it reads, from whichever primary it is connected to."""

    def __init__(self, cluster: SentinelCluster) -> None:
        super().__init__(daemon=True)
        self.client = connect(cluster.settings())
        self.seen: list[tuple[str, str]] = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        last = "0-0"
        while not self.stopping.is_set():
            try:
                reply = self.client.xread({PERMIT_STREAM: last}, count=5000, block=100)
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
                self.errors += 1
                time.sleep(0.05)
                continue
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    self.seen.append((entry_id, fields.get("plan_id", "")))
                    last = entry_id


def feed(client: redis.Redis) -> None:
    for start in range(0, PLANS, 1000):
        pipe = client.pipeline(transaction=False)
        for number in range(start, start + 1000):
            pipe.xadd(PLAN_STREAM, {"plan_id": f"ha-{number:05d}", "symbol": "BTCUSDT",
                                    "side": "BUY" if number % 2 else "SELL",
                                    "notional_usd": "100"})
        pipe.execute()
    assert client.execute_command("WAIT", 1, 10_000) == 1, "the replica did not catch up"


def start_governor(cluster: SentinelCluster, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_",
                                     "LOG_"))}
    full_env.update({**cluster.env, "GOVERNOR_METRICS_PORT": "0", "GOVERNOR_BLOCK_MS": "50",
                     "GOVERNOR_BATCH_SIZE": str(BATCH), "LOG_FORMAT": "text", **env})
    with log.open("wb") as out:
        return subprocess.Popen([str(BIN / "quantum-governor"), "run"], env=full_env,
                                stdout=out, stderr=subprocess.STDOUT)


def tail(log: Path) -> str:
    return "the governor's log ends:\n" + "\n".join(log.read_text().splitlines()[-30:])


def first_new_write(permits: list[tuple[str, dict[str, str]]], fault_at: float) -> float:
    """When the new primary wrote its first permit: the end of the longest silence in its
    permit stream after the fault. Its stream holds what it replicated from the old primary
    (written until the kill, or until the promotion of a switchover), then a gap while the
    governor finds the new primary, then its own writes; the drain writes every few ms."""
    times = sorted(int(entry_id.split("-")[0]) / 1000 for entry_id, _ in permits)
    before = [t for t in times if t < fault_at]
    after = [t for t in times if t >= fault_at]
    if not after:
        return float("inf")
    points = [before[-1] if before else fault_at, *after]
    return max(((b - a, b) for a, b in itertools.pairwise(points)),
               default=(0.0, points[0]))[1]


@pytest.mark.parametrize(("fault", "wait_replicas"), [
    ("kill", 0), ("switchover", 0), ("switchover", 1)])
def test_governor_follows_the_new_primary_mid_drain(
        cluster: SentinelCluster, tmp_path: Path, figures: Callable[..., None], fault: str,
        wait_replicas: int) -> None:
    client = connect(cluster.settings())
    feed(client)
    reader = PermitReader(cluster)
    reader.start()
    log = tmp_path / "governor.log"
    governor = start_governor(cluster, log, GOVERNOR_WAIT_REPLICAS=str(wait_replicas),
                              GOVERNOR_WAIT_TIMEOUT_MS=str(WAIT_TIMEOUT_MS))
    try:
        old_primary = cluster.node(cluster.primary_port())

        def mid_drain() -> bool:
            assert governor.poll() is None, f"the governor exited; {tail(log)}"
            return old_primary.xlen(PERMIT_STREAM) >= KILL_AT

        wait_for(mid_drain, 30, lambda: f"mid-drain (exit {governor.poll()}); {tail(log)}",
                 interval=0.01)
        killed_at = time.time()
        if fault == "kill":
            old_port = cluster.kill_primary()
        else:  # a planned switchover: the old primary is demoted, not killed
            old_port = cluster.primary_port()
            cluster.sentinel().execute_command("SENTINEL", "FAILOVER", cluster.master_name)
        new_port = cluster.wait_for_failover(old_port)
        promoted_sec = time.time() - killed_at
        new_primary = cluster.node(new_port)

        def drained() -> bool:
            done = new_primary.xlen(PERMIT_STREAM) + new_primary.xlen(DEAD_STREAM)
            return done >= PLANS and new_primary.xpending(PLAN_STREAM, "governor")[
                "pending"] == 0

        wait_for(drained, 45, lambda: f"the drain to finish on the new primary; {tail(log)}",
                 interval=0.01)
        time.sleep(0.3)  # let the reader catch up with the last entries
        assert governor.poll() is None, log.read_text()[-3000:]
    finally:
        reader.stopping.set()
        reader.join(timeout=5)
        governor.terminate()
        governor.wait(timeout=15)

    url = f"redis://127.0.0.1:{new_port}/0"
    result = audit(url, [f"ha-{n:05d}" for n in range(PLANS)])
    permits = new_primary.xrange(PERMIT_STREAM)
    seen = Counter(plan for _id, plan in reader.seen)
    reissued = sum(1 for count in seen.values() if count > 1)
    recovery_sec = first_new_write(permits, killed_at) - killed_at
    name = "sentinel: kill -9 of the primary" if fault == "kill" else "sentinel: switchover"
    figures(name + (" (WAIT 1)" if wait_replicas else ""), url, plans=PLANS,
            lost=len(result.lost), duplicates=len(result.duplicates),
            reissued_seen_twice=reissued, promotion_sec=promoted_sec,
            recovery_sec=recovery_sec, reader_errors=reader.errors,
            governor_log_lines=len(log.read_text().splitlines()))

    result.check()
    assert result.permits == PLANS and not result.dead_letters
    assert recovery_sec < 30, "no permit was issued on the new primary"
    if wait_replicas:
        assert reissued <= BATCH * (HELLO_PERIOD_SEC * 1000 // WAIT_TIMEOUT_MS + 1)
    if fault == "switchover":
        # Once every sentinel names the new primary (promoted_sec), the governor sees it at
        # its next look (0.1 s), after at most a batch blocked in WAIT; then one backoff step.
        assert recovery_sec <= promoted_sec + wait_replicas * WAIT_TIMEOUT_MS / 1000 + 1.0
