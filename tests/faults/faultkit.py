"""What the fault scenarios share: the real services as processes, servers that can be
killed and brought back on the same port and data directory, a producer that keeps
writing through outages, and waiting.

Servers are started by :func:`governor_core.testing.start_redis` only (so
``QG_TEST_SERVER=valkey`` runs the suite on Valkey); a :class:`DurableServer` adds what a
restart needs on top of it: the same port, and an append-only file in a directory of its
own that outlives each process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from governor_core.keys import PERMIT_STREAM, PLAN_STREAM
from governor_core.testing import RedisServer, free_port, start_redis, wait_for

BIN = Path(sys.executable).parent
#: Variables of the caller's environment that would change what the services do.
_OWN_PREFIXES = ("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_", "LOG_", "METRICS_")
#: What every governor of the suite runs with: short blocks, permits that outlive a
#: scenario (duplicates are detected for as long as the first permit lives), claims after
#: one second (the minimum), text logs.
GOVERNOR_ENV = {"GOVERNOR_BLOCK_MS": "50", "GOVERNOR_PERMIT_TTL_SEC": "600",
                "GOVERNOR_CLAIM_IDLE_MS": "1000", "GOVERNOR_METRICS_PORT": "0",
                "P29_METRICS_PORT": "0", "LOG_FORMAT": "text"}


class Service:
    """A real ``quantum-governor run`` or ``quantum-allocation run`` process, its output in
    a log file of the test's directory."""

    def __init__(self, command: str, log_dir: Path, redis_url: str, name: str,
                 **env: str) -> None:
        self.command, self.name = command, name
        self.log = log_dir / f"{name}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        full_env.update({"REDIS_URL": redis_url, **GOVERNOR_ENV, **env})
        self.env = full_env
        self.started_at = time.time()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(BIN / command), "run"], env=full_env,
                                            stdout=out, stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is finished or cleaned up."""
        if self.alive:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 15 s); the exit status."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])


class DurableServer:
    """A server with an append-only file (``appendfsync`` = ``fsync``) in ``data_dir``, on a
    port that stays the same across :meth:`kill` and :meth:`restart`."""

    def __init__(self, data_dir: Path, fsync: str = "always") -> None:
        self.data_dir, self.fsync = data_dir, fsync
        data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.server: RedisServer | None = None
        self.restart()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.process.pid

    def restart(self) -> None:
        """Start the server again (same port, same data); returns once it answers."""
        self.server = start_redis(self.port, "--appendonly", "yes", "--appendfsync",
                                  self.fsync, "--dir", str(self.data_dir))

    def kill(self) -> None:
        """SIGKILL: what the kernel has of the append-only file survives, nothing else."""
        assert self.server is not None
        self.server.process.kill()
        self.server.process.wait(timeout=10)
        self.server.stop()  # removes the start's scratch directory, not data_dir

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


class Producer(threading.Thread):
    """Writes plans ``{prefix}-{n}`` at about ``rate`` a second, in chunks, through outages:
    a chunk that fails is sent again whole (a plan may then be in the stream twice, which is
    the duplicate case the governor handles). ``acked`` holds the plan ids of every chunk
    Redis confirmed."""

    def __init__(self, url: str, prefix: str, total: int, rate: float, chunk: int = 50,
                 make_plan: Callable[[str, int], dict[str, str]] | None = None) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        self.prefix, self.total, self.rate, self.chunk = prefix, total, rate, chunk
        self.make_plan = make_plan or plan_fields
        self.acked: list[str] = []
        self.errors = 0
        self.stopping = threading.Event()

    def plan_ids(self) -> list[str]:
        return [f"{self.prefix}-{n:06d}" for n in range(self.total)]

    def run(self) -> None:
        ids = self.plan_ids()
        began = time.monotonic()
        for start in range(0, self.total, self.chunk):
            due = began + start / self.rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            chunk = ids[start:start + self.chunk]
            while not self.stopping.is_set():
                try:
                    pipe = self.client.pipeline(transaction=False)
                    for number, plan_id in enumerate(chunk, start):
                        pipe.xadd(PLAN_STREAM, self.make_plan(plan_id, number))
                    pipe.execute()
                    self.acked.extend(chunk)
                    break
                except (redis.RedisError, OSError):
                    self.errors += 1
                    time.sleep(0.02)

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        if self.is_alive():
            self.stopping.set()
            self.join(5)
            raise AssertionError(f"the producer did not write its {self.total} plans in "
                                 f"{timeout:g} s ({len(self.acked)} written)")


def plan_fields(plan_id: str, number: int) -> dict[str, str]:
    return {"plan_id": plan_id, "symbol": ("BTCUSDT", "ETHUSDT", "SOLUSDT")[number % 3],
            "side": "BUY" if number % 2 else "SELL", "notional_usd": "100"}


def push_plans(client: redis.Redis, plan_ids: list[str], **extra: str) -> None:
    """Queue one plan per id (a pipeline per 1,000)."""
    for start in range(0, len(plan_ids), 1000):
        pipe = client.pipeline(transaction=False)
        for number, plan_id in enumerate(plan_ids[start:start + 1000], start):
            pipe.xadd(PLAN_STREAM, {**plan_fields(plan_id, number), **extra})
        pipe.execute()


def permits_issued(client: redis.Redis) -> int:
    return client.xlen(PERMIT_STREAM)


def first_permit_after(client: redis.Redis, since: float) -> float | None:
    """The server time (seconds) of the first permit-stream entry at or after ``since``."""
    entries = client.xrange(PERMIT_STREAM, min=f"{int(since * 1000)}-0", count=1)
    return int(entries[0][0].split(b"-")[0] if isinstance(entries[0][0], bytes)
               else entries[0][0].split("-")[0]) / 1000 if entries else None


def recovery_since(client: redis.Redis, since: float, timeout: float = 30.0) -> float:
    """Seconds from ``since`` to the first permit issued after it (waits for one)."""
    first = wait_for(lambda: first_permit_after(client, since), timeout,
                     "a permit after the fault")
    return max(0.0, float(first) - since)  # type: ignore[arg-type]
