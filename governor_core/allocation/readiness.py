"""Promotion readiness (SPEC 8): the design's shadow → enforce checklist, computed from the
evidence in Redis over a window, as plain data (pure: entries in, criteria out).

The design (``design/p29_capital_allocation.md``, "Shadow → Enforce Activation") asks for
24–48 h of shadow running with targets computed, fallbacks under 1%, confidence above 0.5
and no errors. Each criterion below says what is counted, over what, and why the threshold;
every threshold is a ``READINESS_*`` setting whose default is the design's figure where it
gives one (ours otherwise, marked so).

``cycles``
    Distinct decision ``timestamp`` values in the window (one per published cycle) against
    ``window / P29_INTERVAL_SEC``. A skipped cycle (portfolio missing or stale) publishes
    nothing and so counts as missing. PASS when seen ≥ ``READINESS_MIN_CYCLE_RATIO`` (0.9,
    ours) × expected: less than the window's worth of evidence is not the design's 24 h.
    The stream keeps ``P29_STREAM_MAXLEN`` entries (one per symbol per cycle), so a 24 h
    window at 5 s needs 17,280 × symbols: the detail says so when the evidence starts late.
``targets_computed``
    Decision entries (one per symbol per cycle) in the window; PASS when ≥
    ``READINESS_MIN_TARGETS`` (1: the design's "p29_targets_computed_total incrementing").
``fallback_rate.<source>``
    Per **target**, not per tick: the share of the window's decision entries whose
    ``fallbacks`` field names that data source (``budget``, ``regime``, ``cluster_stress``,
    ``alpha``). One line per source, so a cluster whose alpha is never published shows as
    ``alpha`` at 100% of its targets, not as a vague mix. PASS when ≤
    ``READINESS_MAX_FALLBACK_RATE`` (0.01: the design's "under 1%").
``fallback_rate.per_symbol``
    The share of each symbol's targets with any fallback; PASS when the worst symbol is ≤
    ``READINESS_MAX_FALLBACK_RATE``. The detail names the worst symbols and their sources.
``confidence``
    A symbol is confident when the median ``confidence`` of its targets in the window is >
    ``READINESS_MIN_CONFIDENCE`` (0.5, the design's); PASS when the share of confident
    symbols ≥ ``READINESS_MIN_CONFIDENT_SHARE`` (1.0: the design asks it of the allocation,
    so of every symbol). The detail gives min / median / max over symbols.
``errors``
    Entries of ``quantum:stream:allocation.errors`` in the window: the allocation service
    records there every error it logs (a failed read, a refused write, a plugin that
    raised, an invalid mode key, a loop error), so "no errors in logs" is checkable from
    Redis. PASS when ≤ ``READINESS_MAX_ERRORS`` (0, the design's "no errors").
``enforce_changes``
    What enforce would have done to the window's permits: each permit (``DENY`` ones
    excepted) is re-decided with the governor's own gate (:func:`~governor_core.governor.
    gates.decide`) against the target in force at its ``issued_ts`` (the newest decision
    for its symbol at most ``TARGET_TTL_SEC`` older), else its recorded cap; it changed
    when the decision or the allowed notional differs. PASS when the changed share ≤
    ``READINESS_MAX_CHANGED_PERMIT_RATE`` (1.0, ours: informational unless tightened; the
    design has no figure). ``symbols`` carries, per symbol, budget vs target and the counts.
``proposals.coverage``
    The share of p29_shadow's proposal entries in the window with ``reason=ok`` (a real
    efficiency score used); PASS when ≥ ``READINESS_MIN_PROPOSAL_COVERAGE`` (0.9, ours).
    ``SKIP`` when there are no proposals (p29_shadow not installed or blocked: the host runs
    on without it), which does not fail.
``proposals.oscillation``
    Per symbol, the sign changes of ``multiplier − 1`` between consecutive proposals (1.0
    exactly keeps the previous sign), divided by the hours its proposals span (at least
    one); PASS when the worst symbol is ≤ ``READINESS_MAX_OSCILLATIONS_PER_HOUR`` (4, ours:
    a target that flips up and down more often than every 15 min is noise, which the design
    warns about). ``SKIP`` without proposals.
``proposals.multiplier``
    ``INFO``: the multipliers' min / p10 / p50 / p90 / max. Never fails.

Statuses: ``PASS``, ``FAIL``, ``SKIP`` (nothing to judge, not a failure), ``INFO``. The
report passes when no criterion is ``FAIL``.

What lives elsewhere: the thresholds' settings, the evidence and the report's values are
in :mod:`governor_core.allocation.readiness_model`; reading the evidence from Redis and the
``readiness`` command's text and ``--json`` in :mod:`governor_core.allocation.promotion`.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from governor_core.allocation.readiness_model import (
    Criterion,
    Entry,
    Evidence,
    Readiness,
    ReadinessConfig,
)
from governor_core.governor.gates import Cap, decide
from governor_core.parsing import parse_decimal

FALLBACK_SOURCES = ("budget", "regime", "cluster_stress", "alpha")


def _num(entry: Entry, name: str) -> float | None:
    return parse_decimal(entry.get(name))


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _fallbacks(entry: Entry) -> set[str]:
    text = entry.get("fallbacks", "")
    return {part for part in text.split(",") if part and part != "none"}


def evaluate(evidence: Evidence, config: ReadinessConfig) -> Readiness:
    """Every criterion of the module docstring, in that order."""
    decisions = [entry for entry in evidence.decisions if entry.get("symbol")]
    criteria = [*_cycle_criteria(evidence, decisions, config),
                *_fallback_criteria(decisions, config),
                _confidence_criterion(decisions, config),
                Criterion("errors", _verdict(len(evidence.errors) <= config.max_errors),
                          len(evidence.errors), f"<= {config.max_errors}",
                          _error_detail(evidence.errors))]
    changes, symbols = _enforce_changes(evidence, decisions, config)
    criteria.append(changes)
    criteria.extend(_proposal_criteria(evidence.proposals, config))
    return Readiness(tuple(criteria), symbols)


def _cycle_criteria(evidence: Evidence, decisions: list[Entry],
                    config: ReadinessConfig) -> list[Criterion]:
    stamps = {entry.get("timestamp") for entry in decisions}
    cycles = len(stamps)
    expected = int(evidence.window_sec // evidence.interval_sec)
    needed = config.min_cycle_ratio * expected
    detail = ""
    first = min((t for t in map(parse_decimal, stamps) if t is not None), default=None)
    late = None if first is None else first - (evidence.now - evidence.window_sec)
    if late is not None and late > 2 * evidence.interval_sec:
        symbols = len({entry["symbol"] for entry in decisions})
        detail = (f"the evidence starts {late:.0f} s into the window: the service started "
                  f"later, or the decision stream is trimmed (P29_STREAM_MAXLEN must be >= "
                  f"{symbols} symbols x {expected} cycles = {symbols * expected} entries)")
    return [
        Criterion("cycles", _verdict(cycles >= needed), cycles,
                  f">= {needed:g} ({config.min_cycle_ratio:g} x {expected} expected at "
                  f"P29_INTERVAL_SEC={evidence.interval_sec:g})", detail),
        Criterion("targets_computed", _verdict(len(decisions) >= config.min_targets),
                  len(decisions), f">= {config.min_targets}",
                  f"{len({e['symbol'] for e in decisions})} symbol(s)"),
    ]


def _fallback_criteria(decisions: list[Entry], config: ReadinessConfig) -> list[Criterion]:
    limit = config.max_fallback_rate
    used = [_fallbacks(entry) for entry in decisions]
    criteria = []
    for source in FALLBACK_SOURCES:
        hit = [entry["symbol"] for entry, sources in zip(decisions, used, strict=True)
               if source in sources]
        rate = _share(len(hit), len(decisions))
        detail = ", ".join(sorted(set(hit))[:10])
        criteria.append(Criterion(f"fallback_rate.{source}", _verdict(rate <= limit), rate,
                                  f"<= {limit:g}", f"{len(hit)} of {len(decisions)} targets"
                                  + (f": {detail}" if detail else "")))
    per_symbol: dict[str, list[set[str]]] = defaultdict(list)
    for entry, sources in zip(decisions, used, strict=True):
        per_symbol[entry["symbol"]].append(sources)
    rates = {symbol: _share(sum(1 for s in items if s), len(items))
             for symbol, items in per_symbol.items()}
    worst = sorted(rates, key=lambda s: (-rates[s], s))
    detail = ", ".join(f"{s} {rates[s]:.1%} ({'+'.join(sorted(set().union(*per_symbol[s])))})"
                       for s in worst[:5] if rates[s] > limit)
    top = rates[worst[0]] if worst else 0.0
    criteria.append(Criterion("fallback_rate.per_symbol", _verdict(top <= limit), top,
                              f"<= {limit:g} for every symbol", detail))
    return criteria


def _confidence_criterion(decisions: list[Entry], config: ReadinessConfig) -> Criterion:
    per_symbol: dict[str, list[float]] = defaultdict(list)
    for entry in decisions:
        value = _num(entry, "confidence")
        if value is not None:
            per_symbol[entry["symbol"]].append(value)
    medians = {symbol: statistics.median(values) for symbol, values in per_symbol.items()}
    confident = [s for s, m in medians.items() if m > config.min_confidence]
    share = _share(len(confident), len(medians))
    detail = (f"median per symbol: min {min(medians.values()):.4f}, median "
              f"{statistics.median(medians.values()):.4f}, max {max(medians.values()):.4f}"
              if medians else "no targets")
    low = sorted(set(medians) - set(confident))
    if low:
        detail += f"; at or below {config.min_confidence:g}: {', '.join(low[:10])}"
    return Criterion("confidence", _verdict(bool(medians) and share >= config.min_confident_share),
                     share, f">= {config.min_confident_share:g} of symbols with median "
                            f"confidence > {config.min_confidence:g}", detail)


def _error_detail(errors: Sequence[Entry]) -> str:
    kinds: dict[str, int] = defaultdict(int)
    for entry in errors:
        kinds[entry.get("kind", "?")] += 1
    return ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))


def _enforce_changes(evidence: Evidence, decisions: list[Entry], config: ReadinessConfig
                     ) -> tuple[Criterion, dict[str, dict[str, float | int | None]]]:
    history: dict[str, list[tuple[float, float]]] = defaultdict(list)
    symbols: dict[str, dict[str, float | int | None]] = {}
    for entry in decisions:
        ts, target = _num(entry, "timestamp"), _num(entry, "target_usd")
        if ts is None or target is None:
            continue
        history[entry["symbol"]].append((ts, target))
        budget = _num(entry, "base_budget")
        symbols[entry["symbol"]] = {
            "budget_usd": budget, "target_usd": target,
            "change": None if not budget else target / budget - 1.0,
            "permits": 0, "permits_changed": 0, "notional_removed_usd": 0.0}
    for items in history.values():
        items.sort()
    judged = changed = 0
    for permit in evidence.permits:
        symbol, notional = permit.get("symbol", ""), _num(permit, "notional_usd")
        allowed = _num(permit, "allowed_notional_usd")
        if permit.get("decision") not in ("ALLOW", "CLAMP") or notional is None or (
                allowed is None):
            continue
        target = _target_at(history.get(symbol, ()), _num(permit, "issued_ts"),
                            evidence.target_ttl_sec)
        row = symbols.setdefault(symbol, {"budget_usd": None, "target_usd": None,
                                          "change": None, "permits": 0,
                                          "permits_changed": 0, "notional_removed_usd": 0.0})
        judged += 1
        row["permits"] = int(row["permits"] or 0) + 1
        if target is None:
            continue  # no target in force: enforce caps from the recorded source too
        gate = decide(notional, False, Cap(target, "allocation"))
        if gate.decision != permit["decision"] or abs(gate.allowed_notional_usd - allowed) > 0.005:
            changed += 1
            row["permits_changed"] = int(row["permits_changed"] or 0) + 1
            row["notional_removed_usd"] = float(row["notional_removed_usd"] or 0.0) + (
                allowed - gate.allowed_notional_usd)
    rate = _share(changed, judged)
    limit = config.max_changed_permit_rate
    moved = [s for s, row in sorted(symbols.items()) if row["permits_changed"]]
    detail = f"{changed} of {judged} permits would be decided differently" + (
        f" ({', '.join(moved[:10])})" if moved else "")
    return (Criterion("enforce_changes", _verdict(rate <= limit), rate, f"<= {limit:g}",
                      detail), symbols)


def _target_at(history: Sequence[tuple[float, float]], issued: float | None,
               ttl: float) -> float | None:
    """The target a governor would have read at ``issued``: the newest one computed at or
    before it and still alive (``TARGET_TTL_SEC``)."""
    if issued is None:
        return None
    found = None
    for ts, target in history:
        if ts > issued:
            break
        found = (ts, target)
    return found[1] if found is not None and issued - found[0] <= ttl else None


def _proposal_criteria(proposals: Sequence[Entry], config: ReadinessConfig
                       ) -> list[Criterion]:
    if not proposals:
        none = "no proposals in the window (p29_shadow not active)"
        return [Criterion("proposals.coverage", "SKIP", None,
                          f">= {config.min_proposal_coverage:g}", none),
                Criterion("proposals.oscillation", "SKIP", None,
                          f"<= {config.max_oscillations_per_hour:g} per hour", none),
                Criterion("proposals.multiplier", "INFO", None, "-", none)]
    ok = sum(1 for entry in proposals if entry.get("reason") == "ok")
    coverage = ok / len(proposals)
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for entry in proposals:
        ts, mult = _num(entry, "ts_epoch"), _num(entry, "multiplier")
        if ts is not None and mult is not None:
            series[entry.get("symbol", "")].append((ts, mult))
    rates = {symbol: oscillations_per_hour(items) for symbol, items in series.items()}
    worst = sorted(rates, key=lambda s: (-rates[s], s))
    top = rates[worst[0]] if worst else 0.0
    limit = config.max_oscillations_per_hour
    multipliers = sorted(m for items in series.values() for _, m in items)
    return [
        Criterion("proposals.coverage", _verdict(coverage >= config.min_proposal_coverage),
                  coverage, f">= {config.min_proposal_coverage:g}",
                  f"{ok} of {len(proposals)} proposals with reason ok"),
        Criterion("proposals.oscillation", _verdict(top <= limit), top,
                  f"<= {limit:g} per hour for every symbol",
                  ", ".join(f"{s} {rates[s]:.1f}/h" for s in worst[:5] if rates[s] > limit)),
        Criterion("proposals.multiplier", "INFO", None, "-",
                  "min {:.4f} p10 {:.4f} p50 {:.4f} p90 {:.4f} max {:.4f}".format(
                      *(quantile(multipliers, q) for q in (0, 0.1, 0.5, 0.9, 1)))
                  if multipliers else "no multipliers"),
    ]


def oscillations_per_hour(series: Sequence[tuple[float, float]]) -> float:
    """Sign changes of ``multiplier − 1`` along ``(ts, multiplier)`` (sorted here), per hour
    of the span they cover (at least one hour). A multiplier of exactly 1.0 has no sign and
    keeps the previous one, so 1.2, 1.0, 1.2 is no change and 1.2, 1.0, 0.8 is one."""
    ordered = sorted(series)
    changes, last = 0, 0
    for _, mult in ordered:
        sign = (mult > 1.0) - (mult < 1.0)
        if sign and last and sign != last:
            changes += 1
        last = sign or last
    span_h = (ordered[-1][0] - ordered[0][0]) / 3600.0 if ordered else 0.0
    return changes / max(1.0, span_h)


def quantile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, nearest rank (a value that occurred)."""
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]
