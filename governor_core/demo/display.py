"""What the demo prints: the legend, the per-symbol table, the summary. Pure text.

Every function here turns plain values (Redis hashes as dicts, counts) into lines; nothing
reads Redis or the clock, so the same run prints the same lines. :class:`LiveTable` is the
only writer: on a terminal it redraws the table in place (ANSI cursor-up and clear), anywhere
else it appends each table below the last.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from governor_core.parsing import parse_decimal

Hash = Mapping[str, str]
#: Every line the demo prints from here fits an 80-column terminal (LiveTable keeps the
#: last column free, so a line never wraps).
WIDTH = 79
SUMMARY_WIDTH = WIDTH

LEGEND = (
    "How to read the table (one row per symbol; USD in thousands: 14k = 14,000 USD)",
    "  EFF AGE  the feed quantum:capital:efficiency:<symbol>: its score and the age",
    "           of its ts (s = seconds, m = minutes)",
    "  TARGET   P2.9 target = budget x regime x cluster-stress x drawdown x alpha",
    "           factors, capped; P29_MODE=enforce writes it live, and the governor",
    "           uses it as the cap of every plan",
    "  MULT     p29_shadow's multiplier: its shadow proposal is TARGET x MULT,",
    "           MULT = 1 + (score - 0.5) within 0.5..1.5; published beside the live",
    "           target, never applied (every 10 s)",
    "  REASON   ok = score used; stale_eff = feed older than {stale} s; invalid_eff =",
    "           malformed; low_conf = confidence below 0.65; missing_eff = no feed",
    "           (all but ok give MULT 1.00)",
    "  PERMIT   the symbol's newest plan: USD asked, then ALLOW (within the cap) or",
    "           CLAMP (cut to the cap) and USD allowed; the cap is TARGET as it was",
    "           when the plan arrived",
    "  HINT     p31_efficiency's fields on that permit: DOWNSIZE when score < 0.45,",
    "           factor max(0.25, score/0.45), extra cooldown (1 - score) x 120 s;",
    "           NONE otherwise. Advice, never a block",
)

# Columns: symbol 8, score 5, age 5, target 6, multiplier 6, reason 1+11, the permit
# (asked 5, decision 1+5, allowed 5) and the hint (1 + at most 20, "DOWNSIZE x0.25
# +120s"): 79 at most. Amounts and ages take at most 4 characters (usd_k, age_text).
_HEAD = (f"{'SYMBOL':<8}{'EFF':>5} {'AGE':<4}{'TARGET':>6}{'MULT':>6} {'REASON':<11} "
         f"{'PERMIT':<15} HINT")


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
    """A USD amount in at most 4 characters: ``0.4k``, ``9.9k``, ``12k``, ``1.2M``, ``12M``;
    ``-`` when unknown."""
    value = parse_decimal(text) if text else None
    if value is None:
        return "-"
    for scale, unit in ((1e3, "k"), (1e6, "M"), (1e9, "G")):
        scaled = value / scale
        if scaled < 9.95:
            return f"{scaled:.1f}{unit}"
        if scaled < 999.5:
            return f"{scaled:.0f}{unit}"
    return "huge"


def age_text(seconds: float) -> str:
    """An age in at most 4 characters: ``9s``, ``149s`` up to 999 s, then ``17m``, ``5h``,
    ``3d``."""
    seconds = max(0, round(seconds))
    if seconds < 1000:
        return f"{seconds}s"
    for size, unit in ((60, "m"), (3600, "h"), (86400, "d")):
        if seconds / size < 999.5:
            return f"{round(seconds / size)}{unit}"
    return "old"


def render_table(header: Header, rows: Sequence[SymbolState], now: float) -> list[str]:
    top = (f"sim {clock_text(header.elapsed_sec)} of {clock_text(header.script_sec)}  "
           f"phase {header.phase_no}/{header.phases}: {header.phase}")
    market = (f"market: regime {header.regime}, drawdown {header.drawdown * 100:.1f}% "
              f"(P2.9 zone {header.zone or '-'}), equity {usd_k(f'{header.equity_usd:f}')}")
    return [top, market, _HEAD, *(render_row(row, now) for row in rows)]


def render_row(row: SymbolState, now: float) -> str:
    """One symbol's line, at most :data:`WIDTH` characters, aligned under the header."""
    eff, proposal, permit = row.efficiency, row.proposal, row.permit
    score = eff.get("efficiency_score", "-")[:4] or "-"
    ts = parse_decimal(eff.get("ts"))
    age = "-" if ts is None else age_text(now - ts)
    multiplier = parse_decimal(proposal.get("multiplier"))
    mult = "-" if multiplier is None else f"x{multiplier:.2f}"
    if permit:
        decision = (f"{usd_k(permit.get('notional_usd')):>5} "
                    f"{permit.get('decision', '?')[:5]:<5}"
                    f"{usd_k(permit.get('allowed_notional_usd')):>5}")
    else:
        decision = f" {'(no plan yet)':<15}"
    return (f"{row.symbol[:8]:<8}{score:>5}{age:>5}{usd_k(row.target.get('target_usd')):>6}"
            f"{mult:>6} {proposal.get('reason', '-')[:11]:<11}{decision} {_hint(permit)}")


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


def _wrapped(counts: Mapping[str, int], indent: int = 14) -> list[str]:
    """The counts on lines of at most :data:`SUMMARY_WIDTH`, never splitting a
    ``name count`` pair."""
    items = [f"{name} {count}" for name, count in counts.items()] or ["none"]
    lines, line = [], ""
    for item in items:
        if line and indent + len(line) + len(item) + 2 > SUMMARY_WIDTH:
            lines.append(" " * indent + line + ",")
            line = ""
        line = f"{line}, {item}" if line else item
    return [*lines, " " * indent + line]


def render_summary(totals: Totals) -> list[str]:
    """The end-of-run summary; a function of the counts alone (identical for identical
    runs), every line at most :data:`SUMMARY_WIDTH` characters."""
    permits = sum(totals.permits.values())
    proposals = sum(totals.proposals.values())
    dead = sum(totals.dead_letters.values())
    errors = sum(totals.plugin_errors.values())
    hints = {f"{action}/{reason}": count for (action, reason), count in totals.hints.items()}
    plugin_errors = {f"{p}/{h}": n for (p, h), n in totals.plugin_errors.items()}
    return [
        "SUMMARY (from the services' own Prometheus counters)",
        f"  allocation  {totals.allocation_cycles} P2.9 cycles; fallbacks by data source",
        "              (p29_stale_fallback_total):",
        *_wrapped(totals.fallbacks),
        f"  shadow      {totals.shadow_loops} p29_shadow loops, {proposals} proposals by reason",
        "              (p29_shadow_proposed_total):",
        *_wrapped(totals.proposals),
        f"  governor    {permits} permits by decision: {_counts(totals.permits)}",
        "              by P3.1 hint eff_action/eff_reason (p32_eff_apply_total):",
        *_wrapped(hints),
        f"              dead letters: {dead}"
        + (f" ({_counts(totals.dead_letters)})" if dead else ""),
        f"  plugins     {', '.join(totals.plugins) or 'none active'}",
        f"              plugin errors: {errors}",
        *(_wrapped(plugin_errors) if errors else []),
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
