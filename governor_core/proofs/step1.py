"""P3.1 Step 1 proof: the ``p29_shadow`` plugin on the real ``quantum-allocation run``.

A portfolio (equity 1,000,000, drawdown 2 %), a 10,000 budget per proof symbol and these
efficiency hashes: ``P31PROOFHIGH`` 0.9, ``P31PROOFLOW`` 0.3, ``P31PROOFMISS`` none,
``P31PROOFLOWCONF`` confidence 0.5, ``P31PROOFSTALE`` 700 s old, ``P31PROOFBAD`` malformed
(score ``abc``). Each case checks the symbol's proposal: its reason, its multiplier's
direction, ``proposed = base × multiplier``, shadow mode, a TTL, and no live target.
Then the service health case.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from governor_core.keys import (
    ALLOCATION_ERROR_STREAM,
    BUDGET_PREFIX,
    DECISION_STREAM,
    EFFICIENCY_PREFIX,
    PORTFOLIO_KEY,
    PROPOSAL_PREFIX,
    PROPOSAL_STREAM,
    TARGET_PREFIX,
)
from governor_core.proofs.support import Proof, ProofRun, service_health, wait_until

#: case: (symbol, efficiency fields or None, their age in seconds, expected reason,
#: multiplier test)
CASES: dict[str, tuple[str, dict[str, str] | None, float, str, Callable[[float], bool]]] = {
    "high": ("P31PROOFHIGH", {"efficiency_score": "0.9", "confidence": "0.9"}, 0, "ok",
             lambda m: m > 1.0),
    "low": ("P31PROOFLOW", {"efficiency_score": "0.3", "confidence": "0.9"}, 0, "ok",
            lambda m: m < 1.0),
    "missing": ("P31PROOFMISS", None, 0, "missing_eff", lambda m: m == 1.0),
    "low_conf": ("P31PROOFLOWCONF", {"efficiency_score": "0.9", "confidence": "0.5"}, 0,
                 "low_conf", lambda m: m == 1.0),
    "stale": ("P31PROOFSTALE", {"efficiency_score": "0.9", "confidence": "0.9"}, 700,
              "stale_eff", lambda m: m == 1.0),
    "malformed": ("P31PROOFBAD", {"efficiency_score": "abc", "confidence": "0.9"}, 0,
                  "invalid_eff", lambda m: m == 1.0),
}
SYMBOLS = tuple(case[0] for case in CASES.values())


def setup(run: ProofRun) -> None:
    r, now = run.client, time.time()
    r.hset(PORTFOLIO_KEY, mapping={"equity_usd": 1_000_000, "drawdown": 0.02, "timestamp": now})
    for symbol, fields, age, _, _ in CASES.values():
        r.hset(BUDGET_PREFIX + symbol, mapping={"budget_usd": 10_000, "timestamp": now})
        r.delete(EFFICIENCY_PREFIX + symbol)
        if fields is not None:
            r.hset(EFFICIENCY_PREFIX + symbol,
                   mapping={**fields, "ts": now - age, "mode": "shadow"})


def check(run: ProofRun, case: str) -> None:
    symbol, _, _, reason, test = CASES[case]
    key = PROPOSAL_PREFIX + symbol
    p = run.client.hgetall(key)
    if not p:
        run.case(case, False, f"{symbol}: no proposal")
        return
    live = bool(run.client.exists(TARGET_PREFIX + symbol))
    try:
        multiplier = float(p["multiplier"])
        base, proposed = float(p["base_target"]), float(p["proposed_target"])
    except (KeyError, ValueError):
        multiplier = base = proposed = float("nan")
    ok = (p.get("reason") == reason and test(multiplier) and p.get("mode") == "shadow"
          and abs(proposed - base * multiplier) < 0.01 and run.client.ttl(key) > 0 and not live)
    run.case(case, ok, f"{symbol}: reason={p.get('reason')} multiplier={p.get('multiplier')} "
                       f"base={p.get('base_target')} proposed={p.get('proposed_target')} "
                       f"live_target_written={live}")


def prove(run: ProofRun) -> None:
    """Run the Step 1 cases (module docstring) on ``run``."""
    run.footprint.symbols.update(SYMBOLS)
    run.footprint.own(PORTFOLIO_KEY)
    for symbol in SYMBOLS:
        run.footprint.own(*(prefix + symbol for prefix in (
            BUDGET_PREFIX, TARGET_PREFIX, PROPOSAL_PREFIX, EFFICIENCY_PREFIX)))
    run.footprint.share_stream(run.client, DECISION_STREAM, PROPOSAL_STREAM,
                               ALLOCATION_ERROR_STREAM)

    setup(run)
    service = run.start("quantum-allocation", {
        "P29_MODE": "shadow", "P29_INTERVAL_SEC": "1", "LOOP_INTERVAL_SEC": "1",
        "P29_METRICS_PORT": "0", "LOG_FORMAT": "text"})
    if service is None:
        return
    if not wait_until(lambda: all(run.client.exists(PROPOSAL_PREFIX + s) for s in SYMBOLS),
                      20, 0.1):
        print("   timed out waiting for proposals", file=run.out)
    for case in CASES:
        check(run, case)
    service_health(run, service, service.stop())


PROOF = Proof("step1", "P3.1 Step 1 proof: allocation shadow proposals (p29_shadow)", prove,
              absent_keys=(PORTFOLIO_KEY,), absent_patterns=(BUDGET_PREFIX + "*",))
