"""The demo's last two sections: the readiness report of its own run and one what-if.

Both are computed by the product's own code on the demo's own entries (nothing here
judges or replays anything: :func:`~governor_core.allocation.readiness.evaluate` and
:func:`~governor_core.whatif.replay_window` do), and rendered here in at most
:data:`~governor_core.demo.display.WIDTH` columns (the commands' own output is wider).

**Which window (the decision).** The demo's clock is simulated: the services stamp their
decisions and permits with the script's time (2026-01-01T00:00Z onward), while Redis stamps
the stream entry ids with the real time of the run. ``quantum-allocation readiness
--window 24h`` on a demo database would therefore judge 240 simulated seconds against a
day's worth of expected cycles. The demo instead gives readiness its own span: ``now`` is
the simulated time of the last second played and the window the seconds played (240 for
a whole run), so the cycle criterion expects ``240 / P29_INTERVAL_SEC`` = 48 cycles, the
oscillation rate is per simulated hour, and targets are matched to permits by their
simulated timestamps. Its evidence is every entry of the streams: the database is the
demo's alone (embedded, or a real one holding no ``quantum:*`` key before the run).

What-if selects entries by their ids, so it is given the real span of the run (from the
server's clock at the start to now): exactly the run's entries. It replays them under the
demo's own settings (:data:`~governor_core.demo.stack.DEMO_ENV`) with
:data:`WHAT_IF_SET` changed.

Some readiness criteria FAIL, on purpose: the script provokes them (the DEFI cluster never
publishes an alpha, efficiency feeds go missing, stale and malformed).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

import redis

from governor_core.allocation.promotion import entries_since
from governor_core.allocation.readiness import evaluate
from governor_core.allocation.readiness_model import Evidence, Readiness, ReadinessConfig
from governor_core.config import EnvReader, read_settings
from governor_core.demo.display import WIDTH, usd_k
from governor_core.demo.market import SIM_START
from governor_core.demo.stack import DEMO_ENV, DemoStack
from governor_core.keys import (
    ALLOCATION_ERROR_STREAM,
    DECISION_STREAM,
    PERMIT_STREAM,
    PROPOSAL_STREAM,
)
from governor_core.runtime import StartupError
from governor_core.whatif import replay_window

#: The one what-if the demo shows.
WHAT_IF_SET = "P31_DOWNSIZE_THRESHOLD=0.5"
_INDENT = " " * 8


def server_time(client: redis.Redis) -> float:
    """Redis's clock (``TIME``): the one its stream ids are cut by."""
    seconds, micros = client.time()
    return seconds + micros / 1e6


def demo_evidence(stack: DemoStack, seconds_run: int) -> Evidence:
    """Every decision, proposal, permit and allocation error entry of the run, judged as a
    window of ``seconds_run`` simulated seconds ending at the last second played."""
    config = stack.allocation.config
    client = stack.client

    def read(stream: str) -> list[dict[str, str]]:
        return list(entries_since(client, stream, 0))

    return Evidence(now=SIM_START + seconds_run, window_sec=float(seconds_run),
                    interval_sec=config.interval_sec, target_ttl_sec=config.target_ttl_sec,
                    decisions=read(DECISION_STREAM), proposals=read(PROPOSAL_STREAM),
                    permits=read(PERMIT_STREAM), errors=read(ALLOCATION_ERROR_STREAM))


def demo_readiness(stack: DemoStack, seconds_run: int) -> tuple[Readiness, Evidence]:
    evidence = demo_evidence(stack, seconds_run)
    return evaluate(evidence, read_settings(ReadinessConfig, EnvReader(dict(DEMO_ENV)))), evidence


def demo_what_if(client: redis.Redis, started_ts: float) -> dict[str, Any] | str:
    """The what-if report of the run's entries, or the one line saying why there is none
    (a replay that fails must not end the demo)."""
    now = server_time(client)
    try:
        return replay_window(client, [WHAT_IF_SET], max(1.0, now - started_ts + 1.0),
                             dict(DEMO_ENV), now=now)
    except StartupError as exc:
        return str(exc)


def _wrap(text: str, indent: str = "  ", more: str = _INDENT) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=more,
                         break_on_hyphens=False) or [indent.rstrip()]


def _value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_readiness(report: Readiness, evidence: Evidence) -> list[str]:
    """The readiness section: what it judged, one entry per criterion (status, name,
    measured value, threshold, detail), what enforce would change, the verdict."""
    span = evidence.window_sec
    lines = ["READINESS of this run  (`quantum-allocation readiness`: the promote gate)",
             f"  window: the run's {span:g} simulated s; the script's gaps FAIL on purpose",
             f"  evidence: {len(evidence.decisions)} decisions, {len(evidence.proposals)} "
             f"proposals, {len(evidence.permits)} permits, {len(evidence.errors)} errors"]
    for item in report.criteria:
        main = (f"{item.status:<4} {item.name:<28} {_value(item.value):>8}  "
                f"threshold {item.threshold}")
        if item.detail and len(main) + len(item.detail) + 4 <= WIDTH:
            main, detail = f"{main}; {item.detail}", ""
        else:
            detail = item.detail
        lines += _wrap(main)
        if detail:
            lines += _wrap(detail, _INDENT)
    modes = {entry.get("mode") for entry in evidence.decisions}
    note = " (the run was in enforce already)" if modes == {"enforce"} else ""
    lines.append(f"  what enforce would change, per symbol{note}:")
    for symbol, row in sorted(report.symbols.items()):
        if row.get("target_usd") is None:
            continue
        change = row.get("change")
        shown = "" if change is None else f" ({change:+.1%})"
        budget = None if row.get("budget_usd") is None else f"{row['budget_usd']:f}"
        lines += _wrap(f"{symbol[:10]:<10} {usd_k(budget):>4} budget -> "
                       f"{usd_k(str(row['target_usd'])):>4} target{shown:<9}; "
                       f"{row['permits_changed']}/{row['permits']} permits differ",
                       "    ", _INDENT)
    lines += _wrap("READY: every criterion passes" if report.passed else
                   "NOT READY (promote would refuse; --force records it): "
                   + ", ".join(item.name for item in report.failing))
    return lines


def _pairs(before: Mapping[str, int], after: Mapping[str, int]) -> str:
    keys = sorted(before.keys() | after.keys())
    return ", ".join(f"{key or '-'} {before.get(key, 0)} -> {after.get(key, 0)}"
                     for key in keys)


def render_what_if(report: dict[str, Any] | str) -> list[str]:
    """The what-if section from :func:`demo_what_if`'s report (or its one-line error)."""
    lines = [f"WHAT-IF  (`quantum-governor what-if --set {WHAT_IF_SET}`)"]
    if isinstance(report, str):
        return [*lines, *_wrap(f"not available: {report}")]
    lines.append("  the run's permits and proposals replayed by the plugins' own formulas")
    lines += [line for note in report["notes"] for line in _wrap(f"note: {note}")]
    for kind in ("permits", "proposals"):
        section = report[kind]
        if section is None:
            lines.append(f"  {kind}: no installed plugin replays them")
            continue
        lines += _wrap(f"{kind}: {section['replayed']} of {section['entries']} replayed, "
                       f"{section['reproduced']} reproduced exactly unchanged, "
                       f"{section['changed']} changed by it")
        before, after = section["before"], section["after"]
        if kind == "permits":
            lines += _wrap("eff_action " + _pairs(before["by_action"], after["by_action"]),
                           "    ", _INDENT)
            lines += _wrap(f"notional affected {before['notional_affected_usd']:,.2f} -> "
                           f"{after['notional_affected_usd']:,.2f} USD (allowed x "
                           "(1 - eff_factor))", "    ", _INDENT)
            for row in section["symbols"]:
                lines += _wrap(
                    f"{row['symbol']}: {row['changed']} of {row['entries']} changed, "
                    f"downsized {row['downsized_before']} -> {row['downsized_after']}, "
                    f"USD off {usd_k(str(row['notional_affected_usd_before']))} -> "
                    f"{usd_k(str(row['notional_affected_usd_after']))}", "    ", _INDENT)
        elif section["changed"]:
            lines += _wrap("reason " + _pairs(before["by_reason"], after["by_reason"]),
                           "    ", _INDENT)
            old, new = before["multiplier_quantiles"], after["multiplier_quantiles"]
            lines += _wrap("multiplier p10/p50/p90 " + "/".join(
                str(old[q]) for q in ("p10", "p50", "p90")) + " -> " + "/".join(
                str(new[q]) for q in ("p10", "p50", "p90")), "    ", _INDENT)
    return lines
