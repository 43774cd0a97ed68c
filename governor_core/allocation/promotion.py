"""``quantum-allocation readiness``, ``promote`` and ``rollback`` (SPEC 8).

* ``readiness [--window 24h] [--json]``: reads the window's evidence (:func:`read_evidence`:
  the decision, proposal, permit and allocation error streams, by entry id, so a window
  costs one ``XRANGE`` per :data:`PAGE` entries), judges it with
  :func:`~governor_core.allocation.readiness.evaluate` and prints one line per criterion;
  exit 0 when nothing fails, 1 otherwise. ``--json`` prints the object of
  ``docs/schema.md`` ("Readiness report") instead.
* ``promote --reason TEXT [--force] [--window 24h]``: runs readiness; unless it passes or
  ``--force`` is given it prints the report and exits 1 having written **nothing**. Then it
  sets ``quantum:config:allocation.mode`` to ``enforce`` and writes the ledger entry
  (``detail``: ``forced``, ``passed``, the ``failing`` criteria, the window) in one
  ``MULTI``. The running service switches at its next cycle.
* ``rollback --reason TEXT``: sets the mode key to ``shadow``, then deletes every live
  target at once (:func:`~governor_core.allocation.ops.clear_live_targets`), then writes the
  ledger entry with ``targets_deleted``. The governor caps from budgets from its next batch.

Both write no entry when they would change nothing (promote while the key already says
``enforce``; rollback while it says ``shadow`` and no live target exists).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from typing import Any

import redis

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.ops import clear_live_targets
from governor_core.allocation.readiness import evaluate
from governor_core.allocation.readiness_model import Evidence, Readiness, ReadinessConfig
from governor_core.config import ConfigError, EnvReader, read_settings
from governor_core.keys import (
    ALLOCATION_ERROR_STREAM,
    DECISION_STREAM,
    MODE_KEY,
    PERMIT_STREAM,
    PROPOSAL_STREAM,
)
from governor_core.ledger import (
    ABSENT,
    append_to,
    connect_to,
    default_who,
    ledger_entry,
    validate_reason,
)
from governor_core.runtime import StartupError

PROG = "quantum-allocation"
#: Entries per ``XRANGE`` page.
PAGE = 10_000
#: ``readiness --json``'s ``schema`` value; bumped on any incompatible change.
SCHEMA = "quantum.readiness/1"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``2d`` or plain seconds → seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match[1]) <= 0:
        raise StartupError(f"{PROG}: --window {text!r} is invalid: expected a duration "
                           "like 90s, 30m, 24h or 2d")
    return float(match[1]) * _UNITS[match[2] or "s"]


def entries_since(client: redis.Redis, stream: str, since: float) -> Iterator[dict[str, str]]:
    """The fields of every entry of ``stream`` whose id time is ≥ ``since``, oldest first."""
    low = f"{int(since * 1000)}-0"
    while True:
        page = client.xrange(stream, min=low, max="+", count=PAGE)
        for _entry_id, fields in page:
            yield fields
        if len(page) < PAGE:
            return
        low = "(" + page[-1][0]


def read_evidence(client: redis.Redis, config: AllocationConfig, window_sec: float,
                  now: float, proposal_stream: str = PROPOSAL_STREAM) -> Evidence:
    since = now - window_sec
    return Evidence(
        now=now, window_sec=window_sec, interval_sec=config.interval_sec,
        target_ttl_sec=config.target_ttl_sec,
        decisions=list(entries_since(client, DECISION_STREAM, since)),
        proposals=list(entries_since(client, proposal_stream, since)),
        permits=list(entries_since(client, PERMIT_STREAM, since)),
        errors=list(entries_since(client, ALLOCATION_ERROR_STREAM, since)))


def as_json(report: Readiness, evidence: Evidence) -> dict[str, Any]:
    """The stable object of ``docs/schema.md`` ("Readiness report")."""
    return {
        "schema": SCHEMA, "passed": report.passed, "now": evidence.now,
        "window_sec": evidence.window_sec,
        "counts": {"decisions": len(evidence.decisions), "proposals": len(evidence.proposals),
                   "permits": len(evidence.permits), "errors": len(evidence.errors)},
        "criteria": [{"name": c.name, "status": c.status, "value": c.value,
                      "threshold": c.threshold, "detail": c.detail} for c in report.criteria],
        "failing": [c.name for c in report.failing],
        "symbols": {symbol: dict(row) for symbol, row in sorted(report.symbols.items())},
    }


def as_text(report: Readiness, evidence: Evidence) -> str:
    span = (f"{evidence.window_sec / 3600:g} h" if evidence.window_sec >= 3600
            else f"{evidence.window_sec:g} s")
    lines = [f"readiness over the last {span} "
             f"({len(evidence.decisions)} decisions, {len(evidence.proposals)} proposals, "
             f"{len(evidence.permits)} permits, {len(evidence.errors)} errors)"]
    for c in report.criteria:
        value = "-" if c.value is None else (f"{c.value:.4f}" if isinstance(c.value, float)
                                             else str(c.value))
        lines.append(f"{c.status:<4}  {c.name:<28} {value:>10}  (threshold {c.threshold})"
                     + (f"  {c.detail}" if c.detail else ""))
    changed = {s: r for s, r in sorted(report.symbols.items()) if r.get("target_usd") is not None}
    if changed:
        lines.append("what enforce would change, per symbol (newest decision):")
        for symbol, row in changed.items():
            budget, target, change = row["budget_usd"], row["target_usd"], row["change"]
            shown = "-" if budget is None else f"{budget:.2f}"
            lines.append(f"  {symbol:<14} budget {shown:>12} "
                         f"-> target {target:>14.2f}"
                         + (f" ({change:+.1%})" if change is not None else "")
                         + f"; permits {row['permits']}, decided differently "
                           f"{row['permits_changed']}, notional removed "
                           f"{row['notional_removed_usd']:.2f}")
    lines.append("READY: every criterion passes" if report.passed else
                 "NOT READY: " + ", ".join(c.name for c in report.failing))
    return "\n".join(lines)


def _loaded(window: str, client: redis.Redis, now: float) -> tuple[Readiness, Evidence]:
    try:
        config = AllocationConfig.from_env()
        thresholds = read_settings(ReadinessConfig, EnvReader())
    except ConfigError as exc:
        raise StartupError(f"{PROG}: configuration error: {exc}") from None
    stream = EnvReader().str("PROPOSE_STREAM_NAME", PROPOSAL_STREAM)
    evidence = read_evidence(client, config, parse_window(window), now, stream)
    return evaluate(evidence, thresholds), evidence


def _server_now(client: redis.Redis) -> float:
    """Redis's clock: the stream ids the window is cut by are Redis's time."""
    seconds, micros = client.time()
    return seconds + micros / 1e6


def run_readiness(args: argparse.Namespace) -> int:
    client = connect_to(args.redis_url, f"{PROG} readiness")
    report, evidence = _loaded(args.window, client, _server_now(client))
    print(json.dumps(as_json(report, evidence), indent=2, sort_keys=True) if args.json
          else as_text(report, evidence))
    return 0 if report.passed else 1


def _mode_key(client: redis.Redis) -> str:
    value = client.get(MODE_KEY)
    return ABSENT if value is None else value


def run_promote(args: argparse.Namespace) -> int:
    why = validate_reason(args.reason, f"{PROG} promote")
    client = connect_to(args.redis_url, f"{PROG} promote")
    before = _mode_key(client)
    if before.strip().lower() == "enforce":
        print(f"{MODE_KEY} already says enforce: nothing changed, no ledger entry")
        return 0
    now = _server_now(client)
    report, evidence = _loaded(args.window, client, now)
    if not report.passed and not args.force:
        print(as_text(report, evidence))
        print(f"promote refused: readiness fails ({', '.join(c.name for c in report.failing)})"
              "; nothing written (--force promotes anyway and records it)")
        return 1
    detail = {"forced": not report.passed, "passed": report.passed,
              "failing": [f"{c.name}={c.value}" for c in report.failing],
              "window_sec": evidence.window_sec}
    pipe = client.pipeline(transaction=True)
    pipe.set(MODE_KEY, "enforce")
    append_to(pipe, ledger_entry("promote", args.who or default_who(), why, before, "enforce",
                                 detail, now=now))
    pipe.execute()
    forced = " (FORCED past: " + ", ".join(detail["failing"]) + ")" if detail["forced"] else ""
    print(f"promoted: {MODE_KEY} = enforce{forced}; the allocation service writes live "
          "targets from its next cycle; ledger entry written")
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    why = validate_reason(args.reason, f"{PROG} rollback")
    client = connect_to(args.redis_url, f"{PROG} rollback")
    before = _mode_key(client)
    client.set(MODE_KEY, "shadow")
    deleted = clear_live_targets(client)
    if before.strip().lower() == "shadow" and not deleted:
        print(f"{MODE_KEY} already says shadow and no live target exists: nothing changed, "
              "no ledger entry")
        return 0
    append_to(client, ledger_entry("rollback", args.who or default_who(), why, before, "shadow",
                                   {"targets_deleted": deleted}, now=_server_now(client)))
    print(f"rolled back: {MODE_KEY} = shadow, {deleted} live target(s) deleted; the governor "
          "caps from budgets from its next batch; ledger entry written")
    return 0


def add_parsers(commands: Any) -> None:
    """Add ``readiness``, ``promote`` and ``rollback`` to ``commands``."""
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--redis-url", default=None,
                            help="the Redis (default: REDIS_URL, else REDIS_HOST/PORT/DB)")

    ready = commands.add_parser("readiness", help="the shadow -> enforce checklist, computed "
                                                  "from the evidence in Redis")
    ready.add_argument("--window", default="24h", help="how far back (default 24h)")
    ready.add_argument("--json", action="store_true", help="the report as one JSON object")
    common(ready)
    promote = commands.add_parser("promote", help="switch the running service to enforce "
                                                  "(refused unless readiness passes)")
    promote.add_argument("--reason", required=True, help="why (goes in the ops ledger)")
    promote.add_argument("--force", action="store_true",
                         help="promote even if readiness fails (recorded as forced)")
    promote.add_argument("--window", default="24h", help="readiness window (default 24h)")
    promote.add_argument("--who", default=None, help="default: SUDO_USER, else USER")
    common(promote)
    rollback = commands.add_parser("rollback", help="switch to shadow and delete the live "
                                                    "targets now")
    rollback.add_argument("--reason", required=True, help="why (goes in the ops ledger)")
    rollback.add_argument("--who", default=None, help="default: SUDO_USER, else USER")
    common(rollback)


COMMANDS = {"readiness": run_readiness, "promote": run_promote, "rollback": run_rollback}
