"""Trust proof (SPEC 8): the durable decision record and the operator's switches, on the real
``quantum-governor run`` and ``quantum-allocation run``, driven by the real commands.

One proof symbol (``TRUSTPROOF{run_id}``: budget 10,000, a weak efficiency score 0.2, so
its permits carry a DOWNSIZE hint), a portfolio, the governor in a consumer group of its
own with ``GOVERNOR_PERMIT_TTL_SEC=2`` and the allocation service in shadow mode. Cases:

1. explain after expiry: a permit's hash expires; ``quantum-governor explain`` still shows
   its plugin fields, the reason's meaning and the configuration in force, from the permit
   stream entry and the snapshot its ``config_id`` names;
2. promote refused: readiness fails (seconds of evidence against a 1 h window of
   expected cycles): ``quantum-allocation promote`` exits 1 and writes nothing (no mode
   key, no ledger entry);
3. promote forced: ``--force`` sets the mode key to ``enforce`` and writes one ledger entry
   saying ``forced`` with the failing criteria; the running service writes a live target
   within a cycle, without a restart, and the governor caps from it;
4. rollback: the mode key says ``shadow`` and the live target is gone when the command
   returns (and stays gone); one ledger entry; the next permit caps from the budget;
5. kill on / 6. kill off: the key is set / deleted, the next plan is denied
   ``kill_switch`` / issued again, one ledger entry each with who/why/before/after;
7. ledger: ``quantum-governor ledger --json`` lists the four entries in order;
8. service health: both services exit 0 on SIGTERM, no error line in their logs.

**Why this proof runs only on a database of its own.** The kill key, the mode key and the
ledger stream are shared with production: any governor on the database denies every plan
while the switch is on, any allocation service follows the mode key. So
:data:`PROOF` is ``empty_database_only`` (refused on a given ``--redis-url`` that holds any
key, ``--force`` or not), and :func:`prove` checks once more that none of the three exists
right before its first write.
"""

from __future__ import annotations

import json
import time

from governor_core.keys import (
    ALLOCATION_ERROR_STREAM,
    BUDGET_PREFIX,
    DEAD_STREAM,
    DECISION_STREAM,
    EFFICIENCY_PREFIX,
    KILL_KEY,
    LEDGER_STREAM,
    MODE_KEY,
    PERMIT_PREFIX,
    PERMIT_STREAM,
    PLAN_STREAM,
    PORTFOLIO_KEY,
    PROPOSAL_PREFIX,
    PROPOSAL_STREAM,
    SNAPSHOT_PREFIX,
    TARGET_PREFIX,
)
from governor_core.proofs.support import Proof, ProofRun, error_lines, wait_until

PERMIT_TTL_SEC = 2
TIMEOUT_SEC = 15.0
SHARED = (KILL_KEY, MODE_KEY, LEDGER_STREAM)


class Trust:
    """The proof's state: its symbol, plans and the ledger entries seen so far."""

    def __init__(self, run: ProofRun) -> None:
        self.run = run
        self.symbol = f"TRUSTPROOF{run.run_id}"[:32]
        self.group = f"proof-{run.run_id}"
        self.plans = 0

    def inputs(self) -> None:
        r, now = self.run.client, time.time()
        r.hset(PORTFOLIO_KEY, mapping={"equity_usd": 100_000, "drawdown": 0.02,
                                       "timestamp": now})
        r.hset(BUDGET_PREFIX + self.symbol, mapping={"budget_usd": 10_000, "timestamp": now})
        r.hset(EFFICIENCY_PREFIX + self.symbol, mapping={
            "efficiency_score": "0.2", "confidence": "0.9", "ts": f"{now:.3f}"})

    def plan(self, notional: str = "50000") -> dict[str, str]:
        """Send one plan of the proof's symbol; its permit hash (empty after the wait)."""
        self.plans += 1
        plan_id = f"proof-{self.run.run_id}-trust-{self.plans}"
        self.run.footprint.own(PERMIT_PREFIX + plan_id)
        r = self.run.client
        r.xadd(PLAN_STREAM, {"plan_id": plan_id, "symbol": self.symbol, "side": "BUY",
                             "notional_usd": notional, "ts": f"{time.time():.3f}"})
        permit: dict[str, str] = {}

        def issued() -> bool:
            permit.update(r.hgetall(PERMIT_PREFIX + plan_id))
            return bool(permit)

        wait_until(issued, TIMEOUT_SEC)
        return permit

    def ledger(self) -> list[dict[str, str]]:
        return [fields for _id, fields in self.run.client.xrange(LEDGER_STREAM)]


def _entry_ok(entry: dict[str, str], action: str, who: str, before: str, after: str) -> bool:
    return (entry.get("action") == action and entry.get("who") == who
            and bool(entry.get("why")) and entry.get("before") == before
            and entry.get("after") == after)


def explain_after_expiry(proof: Trust) -> None:
    run = proof.run
    permit = proof.plan()
    plan_id = permit.get("plan_id", "?")
    gone = wait_until(lambda: not run.client.exists(PERMIT_PREFIX + plan_id),
                      PERMIT_TTL_SEC + 5, 0.1)
    result = run.command("quantum-governor", "explain", plan_id)
    text = result.stdout
    config_id = permit.get("config_id", "")
    want = ("this is the durable record", "eff_action = DOWNSIZE",
            "reason: eff_reason=ok: a usable efficiency score was read",
            f"configuration in force: config_id {config_id}",
            "P31_DOWNSIZE_THRESHOLD = 0.45", f"GOVERNOR_PERMIT_TTL_SEC = {PERMIT_TTL_SEC}")
    missing = [item for item in want if item not in text]
    run.case("1 explain after expiry",
             gone and result.returncode == 0 and bool(config_id) and not missing,
             f"permit hash {'expired' if gone else 'still there'}; explain exit "
             f"{result.returncode}; " + (f"missing {missing!r}" if missing else
                                         f"plugin fields and config_id {config_id} shown "
                                         f"from the stream and {SNAPSHOT_PREFIX}{config_id}"))


def promote_refused(proof: Trust) -> None:
    run = proof.run
    result = run.command("quantum-allocation", "promote", "--window", "1h",
                         "--reason", "trust proof: must be refused", "--who", proof.group)
    written = [key for key in (MODE_KEY, LEDGER_STREAM) if run.client.exists(key)]
    run.case("2 promote refused", result.returncode == 1 and not written
             and "promote refused" in result.stdout and "cycles" in result.stdout,
             f"exit {result.returncode}, keys written: {written or 'none'} "
             "(readiness fails: seconds of evidence against 1 h of cycles)")


def promote_forced(proof: Trust) -> None:
    run = proof.run
    result = run.command("quantum-allocation", "promote", "--window", "1h", "--force",
                         "--reason", "trust proof: forced promote", "--who", proof.group)
    entries = proof.ledger()
    detail = json.loads(entries[-1].get("detail", "{}")) if entries else {}
    mode = run.client.get(MODE_KEY)
    target = TARGET_PREFIX + proof.symbol
    live = wait_until(lambda: run.client.hget(target, "mode") == "enforce", TIMEOUT_SEC, 0.1)
    permit = proof.plan()
    ok = (result.returncode == 0 and mode == "enforce" and len(entries) == 1
          and _entry_ok(entries[0], "promote", proof.group, "(absent)", "enforce")
          and detail.get("forced") is True and any(
              item.startswith("cycles=") for item in detail.get("failing", ()))
          and live and permit.get("cap_source") == "allocation")
    run.case("3 promote forced", ok,
             f"exit {result.returncode}, {MODE_KEY}={mode}, ledger forced="
             f"{detail.get('forced')} failing={detail.get('failing')}; live target "
             f"{'written' if live else 'MISSING'} without a restart, next permit "
             f"cap_source={permit.get('cap_source')}")


def rollback(proof: Trust) -> None:
    run = proof.run
    target = TARGET_PREFIX + proof.symbol
    result = run.command("quantum-allocation", "rollback", "--reason",
                         "trust proof: rollback", "--who", proof.group)
    gone_at_once = not run.client.exists(target)
    time.sleep(1.5)  # three cycles of the service: in shadow it writes no live target
    still_gone = not run.client.exists(target)
    entries = proof.ledger()
    detail = json.loads(entries[-1].get("detail", "{}")) if entries else {}
    permit = proof.plan()
    ok = (result.returncode == 0 and run.client.get(MODE_KEY) == "shadow" and gone_at_once
          and still_gone and len(entries) == 2
          and _entry_ok(entries[-1], "rollback", proof.group, "enforce", "shadow")
          and int(detail.get("targets_deleted", 0)) >= 1
          and permit.get("cap_source") == "budget")
    run.case("4 rollback", ok,
             f"exit {result.returncode}, {MODE_KEY}={run.client.get(MODE_KEY)}, live target "
             f"deleted at once={gone_at_once} (still gone 1.5 s later={still_gone}), "
             f"targets_deleted={detail.get('targets_deleted')}, next permit "
             f"cap_source={permit.get('cap_source')}")


def kill(proof: Trust, state: str) -> None:
    run = proof.run
    on = state == "on"
    result = run.command("quantum-governor", "kill", state, "--reason",
                         f"trust proof: kill {state}", "--who", proof.group)
    value = run.client.get(KILL_KEY)
    entries = proof.ledger()
    permit = proof.plan("1000")
    expected = ("DENY", "kill_switch") if on else ("ALLOW", "within_cap")
    ok = (result.returncode == 0 and value == ("1" if on else None)
          and len(entries) == (3 if on else 4)
          and _entry_ok(entries[-1], f"kill_{state}", proof.group,
                        "(absent)" if on else "1", "1" if on else "(absent)")
          and (permit.get("decision"), permit.get("reason")) == expected)
    run.case(f"{5 if on else 6} kill {state}", ok,
             f"exit {result.returncode}, {KILL_KEY}={value!r}, ledger "
             f"{entries[-1].get('action') if entries else None} "
             f"{entries[-1].get('before') if entries else ''} -> "
             f"{entries[-1].get('after') if entries else ''}, next permit "
             f"{permit.get('decision')}/{permit.get('reason')}")


def ledger_lists(proof: Trust) -> None:
    result = proof.run.command("quantum-governor", "ledger", "--json")
    try:
        items = json.loads(result.stdout)
    except ValueError:
        items = []
    actions = [item.get("action") for item in items]
    complete = all(item.get("who") == proof.group and item.get("why") and "before" in item
                   and "after" in item for item in items)
    proof.run.case("7 ledger", result.returncode == 0 and complete and actions == [
        "promote", "rollback", "kill_on", "kill_off"],
        f"quantum-governor ledger --json: {', '.join(map(str, actions)) or 'nothing'}")


def prove(run: ProofRun) -> None:
    """Run the cases of the module docstring on ``run``."""
    present = [key for key in SHARED if run.client.exists(key)]
    if present:  # checked again here: never touch a live switch
        run.case("setup", False, f"{present[0]} exists: this proof writes it, and never "
                                 "beside a real one")
        return
    proof = Trust(run)
    run.footprint.symbols.add(proof.symbol)
    run.footprint.own(*SHARED, PORTFOLIO_KEY, *(prefix + proof.symbol for prefix in (
        BUDGET_PREFIX, TARGET_PREFIX, PROPOSAL_PREFIX, EFFICIENCY_PREFIX)))
    run.footprint.share_stream(run.client, PERMIT_STREAM, DEAD_STREAM, DECISION_STREAM,
                               PROPOSAL_STREAM, ALLOCATION_ERROR_STREAM)
    run.footprint.create_group(run.client, PLAN_STREAM, proof.group)
    proof.inputs()
    governor = run.start("quantum-governor", {
        "GOVERNOR_GROUP": proof.group, "GOVERNOR_CONSUMER": proof.group,
        "GOVERNOR_PERMIT_TTL_SEC": str(PERMIT_TTL_SEC), "GOVERNOR_METRICS_PORT": "0",
        "GOVERNOR_BLOCK_MS": "100", "QUANTUM_DISABLE_PLUGINS": "", "LOG_FORMAT": "text"},
        log="governor.log")
    allocation = run.start("quantum-allocation", {
        "P29_MODE": "shadow", "P29_INTERVAL_SEC": "0.5", "P29_METRICS_PORT": "0",
        "QUANTUM_DISABLE_PLUGINS": "", "LOG_FORMAT": "text"}, log="allocation.log")
    if governor is None or allocation is None:
        return
    print(f"   quantum-governor run pid {governor.pid}, quantum-allocation run pid "
          f"{allocation.pid} (shadow), symbol {proof.symbol}", file=run.out)
    explain_after_expiry(proof)
    promote_refused(proof)
    promote_forced(proof)
    rollback(proof)
    kill(proof, "on")
    kill(proof, "off")
    ledger_lists(proof)
    codes = {service.name: service.stop() for service in (governor, allocation)}
    errors = {service.name: error_lines(service) for service in (governor, allocation)}
    run.case("8 service health", set(codes.values()) == {0} and not any(errors.values()),
             f"exit codes on SIGTERM {codes}, error lines {errors}")


PROOF = Proof("trust", "Trust proof: durable record, promote/rollback, kill switch, ops "
                       "ledger (SPEC 8)", prove, absent_keys=(*SHARED, PORTFOLIO_KEY),
              absent_patterns=(BUDGET_PREFIX + "*",), empty_database_only=True)
