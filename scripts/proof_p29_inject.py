"""Inject and check helper of ``proof_p29_allocation.sh``.

``setup``            fresh inputs: equity 100,000, drawdown 7 %, TREND, cluster map and
                     stresses, and the case symbols below.
``wait-decisions N`` waits (up to 20 s) until the decision stream holds ≥ N entries.
``stale-portfolio``  makes the portfolio state 120 s old.
``check CASE``       prints one detail line; exit 0 if the case holds, 1 if not.

Symbols: BTCUSDT (majors; the design's worked example → 20,914.63), SOLUSDT and AVAXUSDT
(alts, budgets 200,000 each: each capped at 40,000, then the cluster scaled to 60,000),
OLDUSDT (stale budget → pass-through 10,000), LONEUSDT (no cluster mapping, no stress).
Reads ``REDIS_URL``.
"""

from __future__ import annotations

import os
import sys
import time

import redis

DECISIONS = "quantum:stream:allocation.decision"


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


def setup(r: redis.Redis) -> int:
    r.flushdb()
    now = time.time()
    r.hset("quantum:state:portfolio",
           mapping={"equity_usd": 100_000, "drawdown": 0.07, "timestamp": now})
    r.xadd("quantum:stream:regime.state", {"regime": "TREND", "ts": now})
    r.hset("quantum:config:symbol.cluster",
           mapping={"BTCUSDT": "majors", "SOLUSDT": "alts", "AVAXUSDT": "alts",
                    "OLDUSDT": "majors"})
    r.hset("quantum:cluster:stress:majors", mapping={"stress": 0.2, "alpha": 0.5,
                                                     "timestamp": now})
    r.hset("quantum:cluster:stress:alts", mapping={"stress": 0.0, "alpha": 5.0,
                                                   "timestamp": now})
    for symbol, budget, age in (("BTCUSDT", 50_000, 0), ("SOLUSDT", 200_000, 0),
                                ("AVAXUSDT", 200_000, 0), ("OLDUSDT", 10_000, 120),
                                ("LONEUSDT", 10_000, 0)):
        r.hset(f"quantum:portfolio:budget:{symbol}",
               mapping={"budget_usd": budget, "timestamp": now - age})
    return 0


def latest(r: redis.Redis) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for _, fields in r.xrevrange(DECISIONS, count=50):
        out.setdefault(fields["symbol"], fields)
    return out


def check(r: redis.Redis, case: str) -> int:
    d = latest(r)
    if case == "formula":
        f = d.get("BTCUSDT", {})
        ok = (f.get("target_usd", "").startswith("20914.63") and f["regime_factor"] == "1.200000"
              and f["cluster_factor"] == "0.800000" and f["drawdown_zone"] == "MID"
              and f["performance_factor"] == "0.622459" and f["confidence"] == "1.0000")
        detail = f"BTCUSDT target_usd={f.get('target_usd')} (50000×1.2×0.8×0.7×sigmoid(0.5))"
    elif case == "caps":
        sol, avax = d.get("SOLUSDT", {}), d.get("AVAXUSDT", {})
        ok = (sol.get("symbol_cap_applied") == "1" and sol.get("cluster_cap_applied") == "1"
              and abs(float(sol["target_usd"]) + float(avax["target_usd"]) - 60_000) < 0.01)
        detail = (f"SOL raw={sol.get('raw_target_usd')} → {sol.get('target_usd')}, AVAX → "
                  f"{avax.get('target_usd')} (symbol cap 40000, cluster cap 60000)")
    elif case == "shadow":
        keys = r.keys("quantum:allocation:target:[A-Z]*")
        ok = not keys and d.get("BTCUSDT", {}).get("mode") == "shadow"
        detail = f"mode=shadow, decisions streamed, live target keys: {len(keys)}"
    elif case == "enforce":
        t = r.hgetall("quantum:allocation:target:BTCUSDT")
        ttl = r.ttl("quantum:allocation:target:BTCUSDT")
        ok = t.get("mode") == "enforce" and t.get("target_usd", "").startswith("20914.63") \
            and 0 < ttl <= 300
        detail = (f"BTCUSDT target hash mode={t.get('mode')} "
                  f"target_usd={t.get('target_usd')} ttl={ttl}")
    elif case == "stale_budget":
        f = d.get("OLDUSDT", {})
        ok = f.get("fallbacks") == "budget" and f.get("target_usd") == "10000" \
            and f.get("confidence") == "0.5000"
        detail = f"OLDUSDT fallbacks={f.get('fallbacks')} target={f.get('target_usd')} " \
                 f"confidence={f.get('confidence')}"
    elif case == "unmapped":
        f = d.get("LONEUSDT", {})
        ok = f.get("cluster_id") == "LONEUSDT" and f.get("fallbacks") == "cluster_stress,alpha"
        detail = f"LONEUSDT cluster_id={f.get('cluster_id')} fallbacks={f.get('fallbacks')}"
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(detail)
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    r = client()
    if argv[:1] == ["setup"]:
        return setup(r)
    if argv[:1] == ["stale-portfolio"]:
        r.hset("quantum:state:portfolio", "timestamp", time.time() - 120)
        return 0
    if argv[:1] == ["xlen"]:
        print(r.xlen(DECISIONS))
        return 0
    if argv[:1] == ["wait-decisions"] and len(argv) == 2:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if r.xlen(DECISIONS) >= int(argv[1]):
                return 0
            time.sleep(0.1)
        return 1
    if argv[:1] == ["check"] and len(argv) == 2:
        return check(r, argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
