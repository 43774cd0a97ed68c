"""Allocation tick cost at 100, 1,000 and 10,000 symbols, with ``p29_shadow`` active.

Starts its own ``redis-server`` on a free port, fills it with budgets, cluster stresses, a
cluster map, efficiency hashes, a portfolio and a regime, then runs several ticks per size
through the real service (plugins loaded from their entry points) and prints the median
milliseconds per tick and the Redis round trips per tick.

Round trips are counted on the client (``tests/round_trips.py``): a send that has to wait for
a reply; a pipeline sent in several chunks before any reply is read is one. The injected
clock advances by ``LOOP_INTERVAL_SEC`` per tick so the shadow proposer runs on every tick.

Usage: ``python bench/bench_allocation.py [--ticks N] [--sizes 100,1000,10000]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from redis_server import start_redis  # noqa: E402
from round_trips import RoundTrips  # noqa: E402

from governor_core.allocation.config import AllocationConfig  # noqa: E402
from governor_core.allocation.service import AllocationService  # noqa: E402
from governor_core.config import EnvReader  # noqa: E402
from governor_core.plugins import build_plugin_host  # noqa: E402

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


def bench(url: str, symbols: int, ticks: int, mode: str) -> tuple[float, list[int], int]:
    # Staleness limits above the run's simulated span, so every tick computes every symbol.
    env = {"REDIS_URL": url, "P29_MODE": mode, "LOOP_INTERVAL_SEC": str(STEP_SEC),
           "STALE_DATA_SEC": "86400", "P31_STALE_SEC": "86400"}
    config = AllocationConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("allocation", env, registry)
    assert "p29_shadow" in plugins.active, plugins.statuses
    client = redis.Redis.from_url(url, decode_responses=True)
    populate(client, symbols, START)
    clock = iter(START + STEP_SEC * i for i in range(ticks + 1))
    service = AllocationService(config, client, plugins, registry, clock=lambda: next(clock))
    service.step()  # warm-up: metric children, connection
    durations, trips = [], []
    for _ in range(ticks):
        with RoundTrips() as counter:
            started = time.perf_counter()
            tick = service.step()
            durations.append((time.perf_counter() - started) * 1000)
        assert tick is not None and len(tick.targets) == symbols
        trips.append(counter.count)
    proposals = client.xlen("quantum:stream:allocation.target.proposed")
    client.close()
    return statistics.median(durations), trips, proposals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--mode", default="enforce", choices=("shadow", "enforce"))
    args = parser.parse_args()
    server = start_redis()
    try:
        print(f"allocation tick, mode={args.mode}, p29_shadow active, "
              f"{args.ticks} ticks per size, real redis-server")
        print(f"{'symbols':>8} {'median ms/tick':>15} {'round trips/tick':>17}")
        for size in (int(s) for s in args.sizes.split(",")):
            median, trips, _ = bench(server.url, size, args.ticks, args.mode)
            spread = f"{min(trips)}" if min(trips) == max(trips) else f"{min(trips)}-{max(trips)}"
            print(f"{size:>8} {median:>15.1f} {spread:>17}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
