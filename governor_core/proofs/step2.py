"""P3.1 Step 2 proof: the governor's downsize hint (``p31_efficiency``) on the real
``quantum-governor run``.

The governor runs in a consumer group of its own (``proof-{run_id}``, created at the end of
the plan stream, so it never reads anyone else's earlier plans). Each case writes the
efficiency hash of a proof symbol (``PROOF{TAG}{run_id}``), pushes one plan for it, waits for
its permit and compares the permit's fields; then the metrics and service health cases.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass

from governor_core.keys import (
    DEAD_STREAM,
    EFFICIENCY_PREFIX,
    PERMIT_PREFIX,
    PERMIT_STREAM,
    PLAN_STREAM,
)
from governor_core.proofs.support import Proof, ProofRun, Service, wait_until
from governor_core.testing import free_port

PERMIT_TIMEOUT_SEC = 10.0
SHOWN = ("decision", "eff_action", "eff_reason", "eff_score", "eff_factor",
         "extra_cooldown_sec")


@dataclass(frozen=True, slots=True)
class PermitCase:
    """A plan for a symbol with efficiency fields ``eff`` (``ts`` as seconds ago, or a text
    kept as it is) and the permit fields it must get; ``factor`` bounds ``eff_factor``
    (low inclusive, high exclusive)."""

    name: str
    tag: str
    eff: dict[str, str | float]
    expect: dict[str, str]
    factor: tuple[float, float] | None = None


OK_EFF: dict[str, str | float] = {"efficiency_score": "0.2", "confidence": "0.9", "ts": 5.0}
CASES = (
    PermitCase("1 low efficiency → DOWNSIZE", "LOW", OK_EFF,
               {"eff_action": "DOWNSIZE", "eff_reason": "ok", "decision": "ALLOW",
                "eff_factor": "0.4444", "downsize_factor": "0.4444",
                "extra_cooldown_sec": "96"}, factor=(0.25, 1.0)),
    PermitCase("2 high efficiency → NONE", "HIGH", {**OK_EFF, "efficiency_score": "0.8"},
               {"eff_action": "NONE", "eff_reason": "ok", "eff_factor": "1.0000",
                "extra_cooldown_sec": "0"}),
    PermitCase("3 missing efficiency → missing_eff", "MISS", {},
               {"eff_action": "NONE", "eff_reason": "missing_eff", "eff_factor": "1.0000",
                "eff_score": ""}),
    PermitCase("4 low confidence → low_conf", "CONF", {**OK_EFF, "confidence": "0.3"},
               {"eff_action": "NONE", "eff_reason": "low_conf", "eff_factor": "1.0000"}),
    PermitCase("4b stale efficiency → stale_eff", "STALE", {**OK_EFF, "ts": 3600.0},
               {"eff_action": "NONE", "eff_reason": "stale_eff", "eff_stale": "1",
                "eff_factor": "1.0000"}),
    PermitCase("4c malformed efficiency → invalid_eff", "BAD",
               {**OK_EFF, "efficiency_score": "abc"},
               {"eff_action": "NONE", "eff_reason": "invalid_eff", "eff_factor": "1.0000"}),
    PermitCase("4d NaN score and ms timestamp → invalid_eff", "NAN",
               {**OK_EFF, "efficiency_score": "nan", "ts": "ms"},
               {"eff_action": "NONE", "eff_reason": "invalid_eff"}),
)
METRICS = ("p32_eff_apply_total", "p32_eff_factor", "governor_permits_issued_total")


def eff_fields(eff: dict[str, str | float], now: float) -> dict[str, str]:
    """The hash to write: a float ``ts`` is that many seconds before ``now``; ``"ms"`` is
    ``now`` in whole milliseconds."""
    fields = {name: str(value) for name, value in eff.items() if name != "ts"}
    ts = eff.get("ts")
    if isinstance(ts, float):
        fields["ts"] = f"{now - ts:.3f}"
    elif ts == "ms":
        fields["ts"] = f"{int(now)}000"
    return fields


def run_case(run: ProofRun, case: PermitCase, symbol: str, plan_id: str) -> None:
    r = run.client
    key = EFFICIENCY_PREFIX + symbol
    r.delete(key)
    if case.eff:
        r.hset(key, mapping=eff_fields(case.eff, time.time()))
    r.xadd(PLAN_STREAM, {"plan_id": plan_id, "symbol": symbol, "side": "BUY",
                         "notional_usd": "1000", "ts": f"{time.time():.3f}"})
    permit: dict[str, str] = {}

    def issued() -> bool:
        permit.update(r.hgetall(PERMIT_PREFIX + plan_id))
        return bool(permit)

    if not wait_until(issued, PERMIT_TIMEOUT_SEC):
        run.case(case.name, False, f"no permit for {plan_id} after {PERMIT_TIMEOUT_SEC:g}s")
        return
    problems = [f"{name}={permit.get(name)!r} (expected {value!r})"
                for name, value in case.expect.items() if permit.get(name) != value]
    if case.factor is not None:
        low, high = case.factor
        try:
            factor = float(permit.get("eff_factor", ""))
        except ValueError:
            factor = float("nan")
        if not low <= factor < high:
            problems.append(f"eff_factor={permit.get('eff_factor')!r} not in [{low}, {high})")
    shown = ", ".join(f"{name}={permit.get(name, '')}" for name in SHOWN)
    run.case(case.name, not problems, "; ".join(problems) or shown)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def check_metrics(run: ProofRun, url: str) -> None:
    name = "5 metrics registered"
    try:
        body = scrape(url)
    except OSError as exc:
        run.case(name, False, f"{url} unreachable: {exc}")
        return
    missing = [metric for metric in METRICS
               if not any(line.startswith(metric) for line in body.splitlines())]
    run.case(name, not missing, f"missing {', '.join(missing)}" if missing
             else f"{', '.join(METRICS)} exported")


def check_health(run: ProofRun, url: str, governor: Service) -> None:
    name = "6 service health"
    if not governor.alive():
        run.case(name, False, f"governor process {governor.pid} is not running")
        return
    try:
        lines = scrape(url).splitlines()
    except OSError as exc:
        run.case(name, False, f"metrics endpoint unreachable: {exc}")
        return

    def total(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    issued = total("governor_permits_issued_total{")
    errors = total("governor_plugin_errors_total{")
    run.case(name, issued >= len(CASES) and errors == 0,
             f"pid {governor.pid} running, {issued:g} permits issued, {errors:g} plugin errors")


def prove(run: ProofRun) -> None:
    """Run the Step 2 cases (module docstring) on ``run``."""
    symbols = {case.tag: f"PROOF{case.tag}{run.run_id}"[:32] for case in CASES}
    plan_ids = {case.tag: f"proof-{run.run_id}-{case.tag}" for case in CASES}
    run.footprint.symbols.update(symbols.values())
    run.footprint.own(*(EFFICIENCY_PREFIX + s for s in symbols.values()),
                      *(PERMIT_PREFIX + p for p in plan_ids.values()))
    run.footprint.share_stream(run.client, PERMIT_STREAM, DEAD_STREAM)
    group = f"proof-{run.run_id}"
    run.footprint.create_group(run.client, PLAN_STREAM, group)

    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    governor = run.start("quantum-governor", {
        "GOVERNOR_METRICS_PORT": str(port), "METRICS_ADDR": "127.0.0.1",
        "GOVERNOR_GROUP": group, "GOVERNOR_CONSUMER": group, "QUANTUM_DISABLE_PLUGINS": "",
        "LOG_FORMAT": "text"}, log="governor.log")
    if governor is None:
        return

    def serving() -> bool:
        try:
            scrape(url)
        except OSError:
            return not governor.alive()
        return True

    wait_until(serving, 10, 0.1)
    print(f"   quantum-governor run pid {governor.pid}, metrics {url}", file=run.out)
    for case in CASES:
        run_case(run, case, symbols[case.tag], plan_ids[case.tag])
    check_metrics(run, url)
    check_health(run, url, governor)


PROOF = Proof("step2", "P3.1 Step 2 proof: governor downsize hint (p31_efficiency)", prove)
