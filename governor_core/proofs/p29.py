"""P2.9 proof: the real ``quantum-allocation run`` in shadow, then enforce mode.

Inputs: equity 100,000, drawdown 7 %, regime TREND, two proof clusters and five proof
symbols: ``P29PROOFMAJOR`` (the design's worked example: 50,000 × 1.2 × 0.8 × 0.7 ×
sigmoid(0.5) → 20,914.63), ``P29PROOFALTA`` and ``P29PROOFALTB`` (budgets 200,000 each: each
capped at 40,000, then their cluster scaled to 60,000), ``P29PROOFOLD`` (a stale budget:
pass-through 10,000) and ``P29PROOFLONE`` (no cluster mapping, no stress). Cases: formula,
caps, stale_budget, unmapped, shadow, clean stop, enforce, stale portfolio, service health.
"""

from __future__ import annotations

import time

from governor_core.keys import (
    ALLOCATION_ERROR_STREAM,
    BUDGET_PREFIX,
    CLUSTER_MAP_KEY,
    DECISION_STREAM,
    EFFICIENCY_PREFIX,
    PORTFOLIO_KEY,
    PROPOSAL_PREFIX,
    PROPOSAL_STREAM,
    REGIME_STREAM,
    STRESS_PREFIX,
    TARGET_PREFIX,
)
from governor_core.proofs.support import Proof, ProofRun, Service, service_health, wait_until

MAJOR, ALT_A, ALT_B, OLD, LONE = ("P29PROOFMAJOR", "P29PROOFALTA", "P29PROOFALTB",
                                  "P29PROOFOLD", "P29PROOFLONE")
MAJORS, ALTS = "P29PROOFMAJORS", "P29PROOFALTS"
#: symbol: (budget_usd, budget age in seconds)
BUDGETS = {MAJOR: (50_000, 0), ALT_A: (200_000, 0), ALT_B: (200_000, 0), OLD: (10_000, 120),
           LONE: (10_000, 0)}
CLUSTERS = {MAJOR: MAJORS, ALT_A: ALTS, ALT_B: ALTS, OLD: MAJORS}


def setup(run: ProofRun) -> None:
    """Write fresh inputs (every timestamp now, the stale budget's 120 s ago)."""
    r, now = run.client, time.time()
    r.hset(PORTFOLIO_KEY, mapping={"equity_usd": 100_000, "drawdown": 0.07, "timestamp": now})
    r.xadd(REGIME_STREAM, {"regime": "TREND", "ts": now})
    r.hset(CLUSTER_MAP_KEY, mapping=CLUSTERS)
    r.hset(STRESS_PREFIX + MAJORS, mapping={"stress": 0.2, "alpha": 0.5, "timestamp": now})
    r.hset(STRESS_PREFIX + ALTS, mapping={"stress": 0.0, "alpha": 5.0, "timestamp": now})
    for symbol, (budget, age) in BUDGETS.items():
        r.hset(BUDGET_PREFIX + symbol, mapping={"budget_usd": budget, "timestamp": now - age})


def mark(run: ProofRun) -> str:
    """The decision stream's last id (decisions after it are this phase's)."""
    if not run.client.exists(DECISION_STREAM):
        return "0-0"
    return run.client.xinfo_stream(DECISION_STREAM)["last-generated-id"]


def latest(run: ProofRun, since: str) -> dict[str, dict[str, str]]:
    """Each proof symbol's newest decision after ``since``."""
    out: dict[str, dict[str, str]] = {}
    for _, fields in run.client.xrevrange(DECISION_STREAM, min=f"({since}", count=50):
        if fields.get("symbol") in BUDGETS:
            out.setdefault(fields["symbol"], fields)
    return out


def live_targets(run: ProofRun) -> set[str]:
    return {key for key in run.client.scan_iter(match=TARGET_PREFIX + "*", count=1000)
            if not key.startswith(PROPOSAL_PREFIX)}


def start(run: ProofRun, mode: str) -> Service | None:
    return run.start("quantum-allocation", {
        "P29_MODE": mode, "P29_INTERVAL_SEC": "0.5", "P29_METRICS_PORT": "0",
        "LOG_FORMAT": "text"})


def wait_decisions(run: ProofRun, since: str, count: int) -> None:
    """Wait (up to 20 s) for ``count`` decisions after ``since``."""
    wait_until(lambda: len(run.client.xrange(DECISION_STREAM, min=f"({since}", count=count))
               >= count, 20, 0.1)


def check_shadow_phase(run: ProofRun, since: str, targets_before: set[str]) -> None:
    d = latest(run, since)
    f = d.get(MAJOR, {})
    run.case("formula", f.get("target_usd", "").startswith("20914.63")
             and f.get("regime_factor") == "1.200000" and f.get("cluster_factor") == "0.800000"
             and f.get("drawdown_zone") == "MID" and f.get("performance_factor") == "0.622459"
             and f.get("confidence") == "1.0000",
             f"{MAJOR} target_usd={f.get('target_usd')} (50000×1.2×0.8×0.7×sigmoid(0.5))")
    a, b = d.get(ALT_A, {}), d.get(ALT_B, {})
    try:
        cluster_total = float(a["target_usd"]) + float(b["target_usd"])
    except (KeyError, ValueError):
        cluster_total = float("nan")
    run.case("caps", a.get("symbol_cap_applied") == "1" and a.get("cluster_cap_applied") == "1"
             and abs(cluster_total - 60_000) < 0.01,
             f"{ALT_A} raw={a.get('raw_target_usd')} → {a.get('target_usd')}, {ALT_B} → "
             f"{b.get('target_usd')} (symbol cap 40000, cluster cap 60000)")
    f = d.get(OLD, {})
    run.case("stale_budget", f.get("fallbacks") == "budget" and f.get("target_usd") == "10000"
             and f.get("confidence") == "0.5000",
             f"{OLD} fallbacks={f.get('fallbacks')} target={f.get('target_usd')} "
             f"confidence={f.get('confidence')}")
    f = d.get(LONE, {})
    run.case("unmapped", f.get("cluster_id") == LONE
             and f.get("fallbacks") == "cluster_stress,alpha",
             f"{LONE} cluster_id={f.get('cluster_id')} fallbacks={f.get('fallbacks')}")
    written = live_targets(run) - targets_before
    run.case("shadow", not written and d.get(MAJOR, {}).get("mode") == "shadow",
             f"mode=shadow, decisions streamed, live target keys: {len(written)}")


def check_enforce(run: ProofRun) -> None:
    key = TARGET_PREFIX + MAJOR
    t, ttl = run.client.hgetall(key), run.client.ttl(key)
    run.case("enforce", t.get("mode") == "enforce"
             and t.get("target_usd", "").startswith("20914.63") and 0 < ttl <= 300,
             f"{MAJOR} target hash mode={t.get('mode')} target_usd={t.get('target_usd')} "
             f"ttl={ttl}")


def check_stale_portfolio(run: ProofRun) -> None:
    run.client.hset(PORTFOLIO_KEY, "timestamp", time.time() - 120)
    time.sleep(1)  # let any cycle in flight finish
    before = run.client.xlen(DECISION_STREAM)
    time.sleep(1.5)
    after = run.client.xlen(DECISION_STREAM)
    run.case("stale portfolio", before == after,
             f"decision stream {before} → {after} entries over 1.5 s "
             "(cycles skipped, nothing written)")


def prove(run: ProofRun) -> None:
    """Run the P2.9 cases (module docstring) on ``run``."""
    run.footprint.symbols.update(BUDGETS)
    run.footprint.own(PORTFOLIO_KEY, REGIME_STREAM, CLUSTER_MAP_KEY, STRESS_PREFIX + MAJORS,
                      STRESS_PREFIX + ALTS)
    for symbol in BUDGETS:
        run.footprint.own(*(prefix + symbol for prefix in (
            BUDGET_PREFIX, TARGET_PREFIX, PROPOSAL_PREFIX, EFFICIENCY_PREFIX)))
    run.footprint.share_stream(run.client, DECISION_STREAM, PROPOSAL_STREAM,
                               ALLOCATION_ERROR_STREAM)
    targets_before = live_targets(run)

    setup(run)
    since = mark(run)
    service = start(run, "shadow")
    if service is None:
        return
    wait_decisions(run, since, 5)
    check_shadow_phase(run, since, targets_before)
    code = service.stop()
    run.case("clean stop", code == 0, f"shadow service exit code {code} on SIGTERM")

    setup(run)
    since = mark(run)
    service = start(run, "enforce")
    if service is None:
        return
    wait_decisions(run, since, 5)
    check_enforce(run)
    check_stale_portfolio(run)
    service_health(run, service, service.stop())


PROOF = Proof("p29", "P2.9 proof: allocation formula, caps, modes, fallbacks", prove,
              absent_keys=(PORTFOLIO_KEY, REGIME_STREAM, CLUSTER_MAP_KEY),
              absent_patterns=(BUDGET_PREFIX + "*",))
