"""Inject and check helper of ``proof_p31_step1_allocation_shadow.sh``.

``setup``   writes a fresh portfolio, one budget per case symbol and the efficiency hashes:
            HIGHUSDT 0.9, LOWUSDT 0.3, MISSUSDT none, LOWCONFUSDT confidence 0.5,
            STALEUSDT 700 s old, BADUSDT malformed (score "abc").
``wait``    waits (up to 20 s) until every case symbol has a proposal key.
``check CASE`` prints one detail line and exits 0 if the case holds, 1 if not.

Reads ``REDIS_URL``.
"""

from __future__ import annotations

import os
import sys
import time

import redis

CASES = {
    # case: (symbol, efficiency fields or None, expected reason, multiplier test)
    "high": ("HIGHUSDT", {"efficiency_score": "0.9", "confidence": "0.9"}, "ok",
             lambda m: m > 1.0),
    "low": ("LOWUSDT", {"efficiency_score": "0.3", "confidence": "0.9"}, "ok",
            lambda m: m < 1.0),
    "missing": ("MISSUSDT", None, "missing_eff", lambda m: m == 1.0),
    "low_conf": ("LOWCONFUSDT", {"efficiency_score": "0.9", "confidence": "0.5"}, "low_conf",
                 lambda m: m == 1.0),
    "stale": ("STALEUSDT", {"efficiency_score": "0.9", "confidence": "0.9", "age": 700},
              "stale_eff", lambda m: m == 1.0),
    "malformed": ("BADUSDT", {"efficiency_score": "abc", "confidence": "0.9"}, "invalid_eff",
                  lambda m: m == 1.0),
}


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)


def setup(r: redis.Redis) -> int:
    now = time.time()
    r.hset("quantum:state:portfolio",
           mapping={"equity_usd": 1_000_000, "drawdown": 0.02, "timestamp": now})
    for symbol, fields, _, _ in CASES.values():
        r.hset(f"quantum:portfolio:budget:{symbol}",
               mapping={"budget_usd": 10_000, "timestamp": now})
        r.delete(f"quantum:capital:efficiency:{symbol}")
        if fields is not None:
            fields = dict(fields)
            age = fields.pop("age", 0)
            r.hset(f"quantum:capital:efficiency:{symbol}",
                   mapping={**fields, "ts": now - age, "mode": "shadow"})
    return 0


def wait(r: redis.Redis) -> int:
    deadline = time.monotonic() + 20
    keys = [f"quantum:allocation:target:proposed:{c[0]}" for c in CASES.values()]
    while time.monotonic() < deadline:
        if all(r.exists(k) for k in keys):
            return 0
        time.sleep(0.1)
    print("timed out waiting for proposals", file=sys.stderr)
    return 1


def check(r: redis.Redis, case: str) -> int:
    symbol, _, reason, test = CASES[case]
    p = r.hgetall(f"quantum:allocation:target:proposed:{symbol}")
    if not p:
        print(f"{symbol}: no proposal")
        return 1
    multiplier = float(p["multiplier"])
    base, proposed = float(p["base_target"]), float(p["proposed_target"])
    ok = (p["reason"] == reason and test(multiplier) and p["mode"] == "shadow"
          and abs(proposed - base * multiplier) < 0.01 and r.ttl(
              f"quantum:allocation:target:proposed:{symbol}") > 0
          and not r.exists(f"quantum:allocation:target:{symbol}"))
    print(f"{symbol}: reason={p['reason']} multiplier={p['multiplier']} base={p['base_target']}"
          f" proposed={p['proposed_target']} live_target_written="
          f"{bool(r.exists(f'quantum:allocation:target:{symbol}'))}")
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    r = client()
    if argv[:1] == ["setup"]:
        return setup(r)
    if argv[:1] == ["wait"]:
        return wait(r)
    if argv[:1] == ["check"] and len(argv) == 2 and argv[1] in CASES:
        return check(r, argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
