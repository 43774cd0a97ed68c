"""Allocation tick cost at 100, 1,000 and 10,000 symbols, with ``p29_shadow`` active.

Starts its own ``redis-server`` on a free port, fills it with budgets, cluster stresses, a
cluster map, efficiency hashes, a portfolio and a regime, then runs several ticks per size
through the real service (plugins loaded from their entry points) and prints, per size:

* the median milliseconds per tick (wall clock) and the Redis round trips per tick;
* the median CPU milliseconds per tick of the Redis server and of this process (the
  service), which run at the same time on different cores;
* the floor: one tick's exact bytes, recorded and sent again by a client that does nothing
  else (:mod:`governor_core.testing.replay`), median wall milliseconds. No client of this
  Redis can do that tick faster; the gap between it and the tick is the service's own time.

Ticks are timed on the production client (``governor_core.redis_io.connect``); round trips
are counted on further ticks run on an observed production client
(:class:`governor_core.testing.RoundTrips`, which costs a Python call per reply): a send
that has to wait for a reply; a pipeline sent in several chunks before any reply is read is
one. The injected clock advances by ``LOOP_INTERVAL_SEC`` per tick so the shadow proposer
runs on every tick.

Usage: ``python bench/bench_allocation.py [--ticks N] [--sizes 100,1000,10000]
[--mode enforce|shadow]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect
from governor_core.testing import RedisServer, RoundTrips, observed_client, start_redis
from governor_core.testing.replay import TickRecorder, replay, server_cpu_ms

START = 1_800_000_000.0
STEP_SEC = 10.0


def populate(client: redis.Redis, symbols: int, now: float) -> None:
    client.flushall()
    pipe = client.pipeline(transaction=False)
    pipe.hset("quantum:state:portfolio",
              mapping={"equity_usd": 10_000_000, "drawdown": 0.07, "timestamp": now})
    pipe.xadd("quantum:stream:regime.state", {"regime": "TREND", "ts": now})
    clusters = max(1, symbols // 10)
    mapping = {}
    for i in range(symbols):
        symbol = f"S{i:05d}USDT"
        cluster = f"c{i % clusters}"
        mapping[symbol] = cluster
        # Every symbol's values and times differ, as in production: no cache sees repeats.
        pipe.hset(f"quantum:portfolio:budget:{symbol}",
                  mapping={"budget_usd": round(1000 + i * 1.37, 2), "timestamp": now - i % 50})
        pipe.hset(f"quantum:capital:efficiency:{symbol}",
                  mapping={"efficiency_score": round((i * 7919 % 10_000) / 10_000, 4),
                           "confidence": round(0.5 + (i % 5000) / 10_000, 4),
                           "ts": now - i % 300})
    for c in range(clusters):
        pipe.hset(f"quantum:cluster:stress:c{c}",
                  mapping={"stress": 0.2, "alpha": 0.5, "timestamp": now})
    pipe.hset("quantum:config:symbol.cluster", mapping=mapping)
    pipe.execute()


@dataclass(frozen=True)
class Result:
    """Medians over the measured ticks (and over as many replays)."""

    wall_ms: float
    server_cpu_ms: float
    client_cpu_ms: float
    floor_ms: float
    trips: list[int]


def bench(server: RedisServer, symbols: int, ticks: int, mode: str) -> Result:
    """Ticks timed on the production client (``connect``); then as many ticks on an
    observed production client, round trips counted, and one recorded for the floor.
    Observing costs a Python call per reply, so no timed tick is observed."""
    # Staleness limits above the run's simulated span, so every tick computes every symbol.
    env = {"REDIS_URL": server.url, "P29_MODE": mode, "LOOP_INTERVAL_SEC": str(STEP_SEC),
           "STALE_DATA_SEC": "86400", "P31_STALE_SEC": "86400"}
    config = AllocationConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("allocation", env, registry)
    assert "p29_shadow" in plugins.active, plugins.statuses
    client = connect(config.common.redis)
    populate(client, symbols, START)
    clock = (START + STEP_SEC * i for i in itertools.count())  # each call a step later
    service = AllocationService(config, client, plugins, registry, clock=lambda: next(clock))
    service.prepare()  # the Lua scripts, as the run loop does
    service.step()  # warm-up: metric children, connection
    pid = server.process.pid
    walls, servers, clients, trips = [], [], [], []
    for _ in range(ticks):
        server_started, client_started = server_cpu_ms(pid), time.process_time()
        started = time.perf_counter()
        tick = service.step()
        walls.append((time.perf_counter() - started) * 1000)
        clients.append((time.process_time() - client_started) * 1000)
        servers.append(server_cpu_ms(pid) - server_started)
        assert tick is not None and len(tick.targets) == symbols
    counter, recorder = RoundTrips(), TickRecorder()
    observed = AllocationService(config, observed_client(server.url, counter, recorder),
                                 plugins, CollectorRegistry(), clock=lambda: next(clock))
    observed.step()  # opens the observed connections
    for _ in range(ticks):
        with counter:
            assert observed.step() is not None
        trips.append(counter.count)
    with recorder:
        assert observed.step() is not None
    floors = []
    for _ in range(ticks):
        started = time.perf_counter()
        replay(recorder.events, "127.0.0.1", server.port)
        floors.append((time.perf_counter() - started) * 1000)
    client.close()
    median = statistics.median
    return Result(median(walls), median(servers), median(clients), median(floors), trips)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--mode", default="enforce", choices=("shadow", "enforce"))
    args = parser.parse_args()
    server = start_redis()
    try:
        print(f"allocation tick, mode={args.mode}, p29_shadow active, "
              f"{args.ticks} ticks per size, real redis-server; medians")
        print(f"{'symbols':>8} {'ms/tick':>8} {'round trips':>12} {'Redis CPU ms':>13} "
              f"{'service CPU ms':>15} {'floor ms':>9}")
        for size in (int(s) for s in args.sizes.split(",")):
            result = bench(server, size, args.ticks, args.mode)
            trips = result.trips
            spread = f"{min(trips)}" if min(trips) == max(trips) else f"{min(trips)}-{max(trips)}"
            print(f"{size:>8} {result.wall_ms:>8.1f} {spread:>12} {result.server_cpu_ms:>13.1f} "
                  f"{result.client_cpu_ms:>15.1f} {result.floor_ms:>9.1f}")
        print("floor: the same bytes sent again by a client that does nothing else")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
