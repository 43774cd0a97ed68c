"""Governor benchmark against a real redis-server started here on a free port (SPEC 7).

1. Throughput: N plans queued, then drained by the governor loop (the same
   ``step(overlap=True)`` that ``quantum-governor run`` loops over, in this process), with
   every installed plugin active and again with ``p31_efficiency`` blocked, alternating for
   R rounds so both see the same machine; medians side by side and the plugin's cost as a
   ratio.
2. Latency: the real ``quantum-governor run`` process, plans offered at a fixed rate; for
   each plan, the permit stream entry's server time minus the plan's send time (both
   clocks are this machine's; the stream id has millisecond resolution).
3. ``--soak N``: RSS of the real governor process sampled while it issues N permits, and
   Redis memory before and after (permit TTLs and capped streams keep it bounded).

Run: ``.venv/bin/python bench/bench_governor.py [--plans 5000] [--rounds 41] [--rate 2000]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader, GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.keys import PLAN_STREAM
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect
from governor_core.testing import RedisServer, free_port, start_redis

ROOT = Path(__file__).resolve().parent.parent

SYMBOLS = [f"S{i:03d}USDT" for i in range(50)]


def seed(client: redis.Redis, now: float) -> None:
    """Budgets for every symbol; efficiency scores spread over DOWNSIZE and NONE."""
    client.flushall()
    pipe = client.pipeline(transaction=False)
    for index, symbol in enumerate(SYMBOLS):
        pipe.hset(f"quantum:portfolio:budget:{symbol}", "budget_usd", "5000")
        pipe.hset(f"quantum:capital:efficiency:{symbol}", mapping={
            "efficiency_score": f"{(index % 10) / 10:.2f}", "confidence": "0.9",
            "ts": f"{now:.3f}"})
    pipe.execute()


def push_plans(client: redis.Redis, count: int, prefix: str) -> None:
    for start in range(0, count, 5_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + 5_000)):
            pipe.xadd(PLAN_STREAM, {"plan_id": f"{prefix}-{i}", "symbol": SYMBOLS[i % 50],
                                    "side": "BUY" if i % 2 else "SELL",
                                    "notional_usd": str(1_000 + (i % 9_000))})
        pipe.execute()


def drain(server: RedisServer, count: int, disabled: frozenset[str]) -> tuple[float, list[str]]:
    env = {"REDIS_URL": server.url, "GOVERNOR_CONSUMER": "bench"}
    config = GovernorConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry, disabled=disabled)
    service = GovernorService(config, connect(config.common.redis), plugins, registry)
    service.ensure_group()
    done = 0
    started = time.perf_counter()
    while done < count:
        done += service.step(overlap=True)
    service.flush()
    return count / (time.perf_counter() - started), plugins.active


def throughput(server: RedisServer, plans: int, rounds: int) -> None:
    client = server.client()
    results: dict[str, list[float]] = {"active": [], "blocked": []}
    names: dict[str, list[str]] = {}
    runs = (("active", frozenset()), ("blocked", frozenset({"p31_efficiency"})))
    for round_no in range(rounds):
        # Back to back, in alternating order, so neither side always runs first.
        for label, disabled in runs if round_no % 2 == 0 else runs[::-1]:
            seed(client, time.time())
            push_plans(client, plans, f"r{round_no}{label}")
            rate, names[label] = drain(server, plans, disabled)
            results[label].append(rate)
    active, blocked = (statistics.median(results[k]) for k in ("active", "blocked"))
    print(f"\nThroughput: {plans:,} plans per run, {rounds} alternating rounds, one process")
    print(f"  {'':24}{'p31_efficiency active':>24}{'p31_efficiency blocked':>25}")
    print(f"  {'plugins loaded':24}{','.join(names['active']) or '-':>24}"
          f"{','.join(names['blocked']) or '-':>25}")
    print(f"  {'median permits/s':24}{active:>24,.0f}{blocked:>25,.0f}")
    spread = {k: f"{min(v):,.0f} .. {max(v):,.0f}" for k, v in results.items()}
    print(f"  {'min .. max permits/s':24}{spread['active']:>24}{spread['blocked']:>25}")
    # Each round runs the two back to back, so a round's ratio sees one state of this shared
    # machine; the median over rounds is the figure (the ratio of the medians beside it).
    ratios = sorted(a / b for a, b in zip(results["active"], results["blocked"], strict=True))
    cost = 1 - statistics.median(ratios)
    print(f"  per-round cost         {', '.join(f'{1 - r:.1%}' for r in ratios)}")
    print(f"  plugin cost: {cost:.1%} of throughput, median of the rounds' ratios "
          f"({1 - active / blocked:.1%} from the medians; target <= 15%); "
          f"active throughput target >= 15,000 permits/s: "
          f"{'met' if active >= 15_000 else 'NOT met'}")


def start_governor(server: RedisServer, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REDIS_URL": server.url, "GOVERNOR_METRICS_PORT": str(free_port()),
           "LOG_LEVEL": "warning", **extra}
    return subprocess.Popen([str(ROOT / ".venv/bin/quantum-governor"), "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def latency(server: RedisServer, rate: int, seconds: float) -> None:
    client = server.client()
    seed(client, time.time())
    governor = start_governor(server, {"GOVERNOR_BLOCK_MS": "1000"})
    try:
        time.sleep(1.5)  # let it create the group and block on the stream
        sent: dict[str, float] = {}
        tick = 0.005
        per_tick = max(1, round(rate * tick))
        count = int(rate * seconds)
        begin = time.perf_counter()
        for i in range(count):
            if i % per_tick == 0:
                wait = begin + (i // per_tick) * tick - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
            plan_id = f"lat-{i}"
            sent[plan_id] = time.time()
            client.xadd(PLAN_STREAM, {"plan_id": plan_id, "symbol": SYMBOLS[i % 50],
                                      "side": "BUY", "notional_usd": "100"})
        offered = count / (time.perf_counter() - begin)
        deadline = time.time() + 10
        while client.xlen("quantum:stream:permit.issued") < count and time.time() < deadline:
            time.sleep(0.05)
        delays = []
        for entry_id, fields in client.xrange("quantum:stream:permit.issued"):
            if fields["plan_id"] in sent:
                delays.append(int(entry_id.split("-")[0]) / 1000 - sent[fields["plan_id"]])
        delays.sort()

        def pct(p: float) -> float:
            return delays[min(len(delays) - 1, int(p * len(delays)))] * 1000

        print(f"\nLatency: real quantum-governor run, {count:,} plans offered at "
              f"{offered:,.0f}/s (target rate {rate:,}/s), plugins active")
        print(f"  permits {len(delays):,}/{count:,}; plan -> permit ms: p50 {pct(0.50):.1f}  "
              f"p90 {pct(0.90):.1f}  p99 {pct(0.99):.1f}  max {delays[-1] * 1000:.1f} "
              f"(target p99 <= 10 ms; 1 ms resolution)")
    finally:
        governor.terminate()
        governor.wait(timeout=10)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def soak(server: RedisServer, total: int) -> None:
    client = server.client()
    seed(client, time.time())
    governor = start_governor(server, {"GOVERNOR_STREAM_MAXLEN": "100000",
                                       "GOVERNOR_PERMIT_TTL_SEC": "5"})
    used_before = client.info("memory")["used_memory"]
    samples = []
    try:
        step = 100_000
        for done in range(0, total, step):
            push_plans(client, step, f"soak{done}")
            while client.xinfo_groups(PLAN_STREAM)[0]["lag"]:
                time.sleep(0.2)
            samples.append((done + step, rss_kib(governor.pid)))
            client.xtrim(PLAN_STREAM, maxlen=0)  # the producer's job; keeps the input bounded
        used_after = client.info("memory")["used_memory"]
    finally:
        governor.terminate()
        governor.wait(timeout=10)
    print(f"\nSoak: {total:,} plans through the real governor")
    print("  governor RSS (MiB) after each 100k: "
          + " ".join(f"{kib / 1024:.0f}" for _, kib in samples))
    print(f"  Redis used_memory: {used_before / 2**20:.1f} MiB before, "
          f"{used_after / 2**20:.1f} MiB after (permit TTL 5 s, permit stream capped at 100k)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=41, help="0: skip throughput")
    parser.add_argument("--rate", type=int, default=2_000, help="0: skip latency")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--soak", type=int, default=0, help="plans for the RSS soak (0: skip)")
    args = parser.parse_args()
    server = start_redis()
    try:
        print(f"redis-server {server.client().info('server')['redis_version']} on port "
              f"{server.port}; {os.cpu_count()} cores")
        if args.rounds > 0:
            throughput(server, args.plans, args.rounds)
        if args.rate > 0:
            latency(server, args.rate, args.seconds)
        if args.soak:
            soak(server, args.soak)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
