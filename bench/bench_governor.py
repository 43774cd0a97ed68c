"""Governor benchmark against a real redis-server started here on a free port (SPEC 7).

1. Throughput: N plans queued, then drained by the governor loop (the same
   ``step(overlap=True)`` that ``quantum-governor run`` loops over, in this process, on the
   production client of ``governor_core.redis_io.connect``), with every installed plugin
   active and again with ``p31_efficiency`` blocked, alternating for R rounds so both see
   the same machine; medians side by side and the plugin's cost as a ratio. ``--symbols``
   sets how many distinct symbols the plans name (SPEC 7: 50 and 1,000).
1b. Floor (``--floor R``): one drain with the plugins active is recorded (its exact bytes,
   per connection, ``governor_core.testing.replay``); then, alternating R times on the same
   fresh state, the governor drains the plans again and the recorded bytes are replayed by
   a client that does nothing else. Redis runs commands on one thread, so no client can do
   those batches faster than the replay: permits/s ÷ the replay's is the SPEC 7 ratio.
2. Latency: the real ``quantum-governor run`` process, plans offered at a fixed rate; for
   each plan, the permit stream entry's server time minus the plan's send time (both
   clocks are this machine's; the stream id has millisecond resolution).
3. ``--soak N``: RSS of the real governor process sampled while it issues N permits, and
   Redis memory before and after (permit TTLs and capped streams keep it bounded); run
   twice, with static efficiency hashes and with every symbol's efficiency ``ts``
   rewritten each second (the workload that once grew the governor 35 → 82 MiB). Use
   ``--symbols 1000`` for the many-symbol case.

Run: ``.venv/bin/python bench/bench_governor.py [--plans 5000] [--rounds 41] [--rate 2000]
[--symbols 50] [--floor 0]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader
from governor_core.governor.config import GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.keys import PLAN_STREAM
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect
from governor_core.runtime import freeze_startup_heap
from governor_core.testing import RedisServer, free_port, start_redis
from governor_core.testing.replay import TickRecorder, replay

ROOT = Path(__file__).resolve().parent.parent

SYMBOLS = [f"S{i:04d}USDT" for i in range(50)]


def use_symbols(count: int) -> None:
    """Plans name ``count`` distinct symbols from now on."""
    SYMBOLS[:] = [f"S{i:04d}USDT" for i in range(count)]


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


def push_plans(client: redis.Redis, count: int, prefix: str, *,
               fixed_ids: bool = False) -> None:
    """``count`` plans over :data:`SYMBOLS`; with ``fixed_ids`` their stream ids are
    ``1-0``, ``2-0``… (the same on every push, for a replay of recorded bytes)."""
    for start in range(0, count, 5_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + 5_000)):
            pipe.xadd(PLAN_STREAM, {"plan_id": f"{prefix}-{i}",
                                    "symbol": SYMBOLS[i % len(SYMBOLS)],
                                    "side": "BUY" if i % 2 else "SELL",
                                    "notional_usd": str(1_000 + (i % 9_000))},
                      id=f"{i + 1}-0" if fixed_ids else "*")
        pipe.execute()


def drain(server: RedisServer, count: int, disabled: frozenset[str],
          recorder: TickRecorder | None = None) -> tuple[float, list[str]]:
    """Permits/s of the governor loop draining ``count`` queued plans; with a
    ``recorder``, its client is the recorder's and the drain is recorded."""
    env = {"REDIS_URL": server.url, "GOVERNOR_CONSUMER": "bench"}
    config = GovernorConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry, disabled=disabled)
    client = (recorder.client(server.url) if recorder is not None
              else connect(config.common.redis))
    service = GovernorService(config, client, plugins, registry)
    service.prepare()  # the consumer group and the scripts, as the run loop does
    freeze_startup_heap()  # as run_service does before the loop
    done = 0
    with recorder or nullcontext():
        started = time.perf_counter()
        while done < count:
            done += service.step(overlap=True)
        service.flush()
        elapsed = time.perf_counter() - started
    return count / elapsed, plugins.active


def fresh_plans(server: RedisServer, plans: int) -> None:
    """The floor's starting state: seeds, the same plans with the same ids, the group."""
    client = server.client()
    seed(client, time.time())
    push_plans(client, plans, "floor", fixed_ids=True)
    client.xgroup_create(PLAN_STREAM, "governor", id="0")


def floor(server: RedisServer, plans: int, rounds: int) -> None:
    recorder = TickRecorder()
    fresh_plans(server, plans)
    drain(server, plans, frozenset(), recorder)
    governor, replayed = [], []
    for _ in range(rounds):
        fresh_plans(server, plans)
        governor.append(drain(server, plans, frozenset())[0])
        fresh_plans(server, plans)
        started = time.perf_counter()
        replay(recorder.events, "127.0.0.1", server.port)
        replayed.append(plans / (time.perf_counter() - started))
        issued = server.client().xlen("quantum:stream:permit.issued")
        assert issued == plans, f"the replay issued {issued} permits, not {plans}"
    ratios = sorted(g / r for g, r in zip(governor, replayed, strict=True))
    print(f"\nFloor: {plans:,} plans over {len(SYMBOLS):,} symbols, plugins active, "
          f"{rounds} alternating rounds")
    print(f"  governor median permits/s {statistics.median(governor):>10,.0f}  "
          f"({min(governor):,.0f} .. {max(governor):,.0f})")
    print(f"  floor    median permits/s {statistics.median(replayed):>10,.0f}  "
          f"({min(replayed):,.0f} .. {max(replayed):,.0f}): the same bytes replayed")
    print(f"  governor / floor: {statistics.median(ratios):.2f} median of the rounds' ratios "
          f"({min(ratios):.2f} .. {max(ratios):.2f}; target >= 0.6)")


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
    print(f"\nThroughput: {plans:,} plans over {len(SYMBOLS):,} symbols per run, {rounds} "
          "alternating rounds, one process")
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
            client.xadd(PLAN_STREAM, {"plan_id": plan_id, "symbol": SYMBOLS[i % len(SYMBOLS)],
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


def rewrite_ts(server: RedisServer, stop: threading.Event) -> None:
    """Every symbol's efficiency ``ts`` rewritten each second, as live producers do."""
    client = server.client()
    while not stop.wait(1.0):
        pipe = client.pipeline(transaction=False)
        for symbol in SYMBOLS:
            pipe.hset(f"quantum:capital:efficiency:{symbol}", "ts", f"{time.time():.3f}")
        pipe.execute()


def soak(server: RedisServer, total: int) -> None:
    for churn in (False, True):
        soak_once(server, total, churn)


def soak_once(server: RedisServer, total: int, churn: bool) -> None:
    client = server.client()
    seed(client, time.time())
    stop = threading.Event()
    rewriter = threading.Thread(target=rewrite_ts, args=(server, stop), daemon=True)
    if churn:
        rewriter.start()
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
        stop.set()
        if churn:
            rewriter.join()
        governor.terminate()
        governor.wait(timeout=10)
    workload = ("every efficiency ts rewritten each second" if churn
                else "static efficiency hashes")
    print(f"\nSoak: {total:,} plans through the real governor over {len(SYMBOLS):,} symbols, "
          f"{workload}")
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
    parser.add_argument("--symbols", type=int, default=50, help="distinct symbols of the plans")
    parser.add_argument("--floor", type=int, default=0,
                        help="rounds of governor vs replayed floor (0: skip)")
    args = parser.parse_args()
    use_symbols(args.symbols)
    server = start_redis()
    try:
        print(f"redis-server {server.client().info('server')['redis_version']} on port "
              f"{server.port}; {os.cpu_count()} cores")
        if args.rounds > 0:
            throughput(server, args.plans, args.rounds)
        if args.floor > 0:
            floor(server, args.plans, args.floor)
        if args.rate > 0:
            latency(server, args.rate, args.seconds)
        if args.soak:
            soak(server, args.soak)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
