"""What the demo prints: the legend, the per-symbol table, the summary. Pure text.

Every function here turns plain values (Redis hashes as dicts, counts) into lines; nothing
reads Redis or the clock, so the same run prints the same lines. :class:`LiveTable` is the
only writer: on a terminal it redraws the table in place (ANSI cursor-up and clear), anywhere
else it appends each table below the last.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from governor_core.parsing import parse_decimal

Hash = Mapping[str, str]
SUMMARY_WIDTH = 96

LEGEND = (
    "How to read the table (one row per symbol; USD amounts in thousands: 14.2k = 14,200 USD)",
    "  EFF AGE   the efficiency feed quantum:capital:efficiency:<symbol>: its score and the "
    "age of its ts",
    "  TARGET    P2.9 target = budget x regime x cluster-stress x drawdown x alpha factors, "
    "capped;",
    "            P29_MODE=enforce writes it live, and the governor uses it as the cap of "
    "every plan",
    "  PROPOSAL  p29_shadow's shadow target = TARGET x MULT, MULT = 1 + (score - 0.5) within "
    "0.5..1.5;",
    "            published beside the live target, never applied (every 10 s)",
    "  REASON    ok = score used; stale_eff = feed older than {stale} s; invalid_eff = "
    "malformed;",
    "            low_conf = confidence below 0.65; missing_eff = no feed (all but ok give "
    "MULT 1.00)",
    "  PERMIT    the symbol's newest plan: USD asked -> ALLOW (within the cap) or CLAMP "
    "(cut to the cap),",
    "            the cap being TARGET as it was when the plan arrived",
    "  HINT      p31_efficiency's fields on that permit: DOWNSIZE when score < 0.45, "
    "factor = max(0.25,",
    "            score/0.45), extra cooldown = (1 - score) x 120 s; NONE otherwise. "
    "Advice, never a block",
)

_HEAD = (f"{'SYMBOL':<9}{'EFF':>5}{'AGE':>5} | {'TARGET':>6} | "
         f"{'PROPOSAL':>8} {'MULT':>5} {'REASON':<11} | {'PERMIT':<20}| HINT")


@dataclass(frozen=True, slots=True)
class Header:
    """The state line of a table: script time, phase, and what the market and P2.9 say."""

    elapsed_sec: int
    script_sec: int
    phase: str
    phase_no: int
    phases: int
    regime: str
    drawdown: float
    equity_usd: float
    zone: str


@dataclass(frozen=True, slots=True)
class SymbolState:
    """One row, as Redis holds it: each hash empty when absent."""

    symbol: str
    efficiency: Hash
    target: Hash
    proposal: Hash
    permit: Hash


def legend(stale_sec: int) -> list[str]:
    return [line.format(stale=stale_sec) for line in LEGEND]


def clock_text(seconds: int) -> str:
    return f"{seconds // 60}:{seconds % 60:02d}"


def usd_k(text: str | None) -> str:
    value = parse_decimal(text) if text else None
    return "-" if value is None else f"{value / 1000:.1f}k"


def render_table(header: Header, rows: Sequence[SymbolState], now: float) -> list[str]:
    top = (f"sim {clock_text(header.elapsed_sec)} of {clock_text(header.script_sec)}  "
           f"phase {header.phase_no}/{header.phases}: {header.phase}")
    market = (f"market: regime {header.regime}, drawdown {header.drawdown * 100:.1f}% "
              f"(P2.9 zone {header.zone or '-'}), equity {header.equity_usd:,.0f} USD")
    return [top, market, _HEAD, *(render_row(row, now) for row in rows)]


def render_row(row: SymbolState, now: float) -> str:
    eff, proposal, permit = row.efficiency, row.proposal, row.permit
    score = eff.get("efficiency_score", "-")[:5] or "-"
    ts = parse_decimal(eff.get("ts"))
    age = "-" if ts is None else f"{max(0, round(now - ts))}s"
    multiplier = parse_decimal(proposal.get("multiplier"))
    mult = "-" if multiplier is None else f"x{multiplier:.2f}"
    if permit:
        asked = usd_k(permit.get("notional_usd"))
        allowed = usd_k(permit.get("allowed_notional_usd"))
        decision = f"{asked:>6} {permit.get('decision', '?'):<5} {allowed:>6} "
    else:
        decision = f"{'(no plan yet)':<20}"
    hint = _hint(permit)
    return (f"{row.symbol:<9}{score:>5}{age:>5} | {usd_k(row.target.get('target_usd')):>6} | "
            f"{usd_k(proposal.get('proposed_target')):>8} {mult:>5} "
            f"{proposal.get('reason', '-'):<11} | {decision}| {hint}")


def _hint(permit: Hash) -> str:
    action = permit.get("eff_action")
    if not action:
        return "-"
    if action != "DOWNSIZE":
        return f"{action} ({permit.get('eff_reason', '?')})"
    factor = parse_decimal(permit.get("eff_factor"))
    factor_text = "?" if factor is None else f"x{factor:.2f}"
    return f"DOWNSIZE {factor_text} +{permit.get('extra_cooldown_sec', '?')}s"


@dataclass(frozen=True, slots=True)
class Totals:
    """The run's counts, read from the services' Prometheus registries."""

    allocation_cycles: int
    shadow_loops: int
    permits: Mapping[str, int]
    hints: Mapping[tuple[str, str], int]
    proposals: Mapping[str, int]
    fallbacks: Mapping[str, int]
    dead_letters: Mapping[str, int]
    plugin_errors: Mapping[tuple[str, str], int]
    plugins: Sequence[str]


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def _wrapped(counts: Mapping[str, int]) -> list[str]:
    return textwrap.wrap(_counts(counts), SUMMARY_WIDTH, initial_indent=" " * 14,
                         subsequent_indent=" " * 14)


def render_summary(totals: Totals) -> list[str]:
    """The end-of-run summary; a function of the counts alone (identical for identical runs)."""
    permits = sum(totals.permits.values())
    proposals = sum(totals.proposals.values())
    dead = sum(totals.dead_letters.values())
    errors = sum(totals.plugin_errors.values())
    hints = {f"{action}/{reason}": count for (action, reason), count in totals.hints.items()}
    return [
        "SUMMARY (from the services' own Prometheus counters)",
        f"  allocation  {totals.allocation_cycles} P2.9 cycles; fallbacks by data source "
        "(p29_stale_fallback_total):",
        *_wrapped(totals.fallbacks),
        f"  shadow      {totals.shadow_loops} p29_shadow loops, {proposals} proposals by "
        "reason (p29_shadow_proposed_total):",
        *_wrapped(totals.proposals),
        f"  governor    {permits} permits by decision: {_counts(totals.permits)}",
        "              by P3.1 hint eff_action/eff_reason (p32_eff_apply_total):",
        *_wrapped(hints),
        f"              dead letters: {dead}"
        + (f" ({_counts(totals.dead_letters)})" if dead else ""),
        f"  plugins     {', '.join(totals.plugins) or 'none active'}; plugin errors: {errors}"
        + (" (" + _counts({f'{p}/{h}': n for (p, h), n in totals.plugin_errors.items()}) + ")"
           if errors else ""),
    ]


class LiveTable:
    """Shows successive tables: redrawn in place on a terminal, appended elsewhere."""

    def __init__(self, out: TextIO, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._drawn = 0

    def show(self, lines: Sequence[str]) -> None:
        if self.tty:
            width = max(20, shutil.get_terminal_size().columns - 1)
            widest = max((len(line) for line in lines), default=0)
            if widest > width:  # a wrapped line would break cursor-up: cut, and say so
                lines = [line[:width] for line in lines]
                lines.append(f"(cut to the terminal: widen it to {widest + 1} columns)"[:width])
            if self._drawn:
                self.out.write(f"\x1b[{self._drawn}F\x1b[J")
        elif self._drawn:
            self.out.write("\n")
        self._drawn = len(lines)
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
