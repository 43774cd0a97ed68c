"""Reading a P3.1 efficiency hash (``quantum:capital:efficiency:{symbol}``), for plugins.

Both P3.1 plugins judge efficiency data by the same rules, so the rules live here once.
:func:`read_efficiency` is pure and total: any hash contents give a reading with one reason:

* ``missing_eff``: no hash, or no ``efficiency_score`` field;
* ``invalid_eff``: malformed: score, confidence or ``ts`` not a finite decimal number,
  score or confidence outside [0, 1], ``ts`` missing, or ``ts`` more than
  :data:`FUTURE_SKEW_SEC` ahead of ``now`` (a clock or unit error, e.g. milliseconds);
* ``stale_eff``: ``now - ts`` greater than the staleness limit;
* ``low_conf``: confidence below the minimum (a missing confidence counts as 0);
* ``ok``: usable.

Checked in that order: malformed data is reported as malformed even if it is also old.
``redis_error`` is the plugins' own reason for a failed read (:data:`REDIS_ERROR`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from governor_core.plans import parse_decimal

EFFICIENCY_KEY = "quantum:capital:efficiency:{}"
FUTURE_SKEW_SEC = 30.0
REASONS = ("ok", "missing_eff", "stale_eff", "low_conf", "invalid_eff", "redis_error")


@dataclass(frozen=True, slots=True)
class EfficiencyReading:
    """What the efficiency hash says. ``score``/``confidence`` are None when unusable."""

    reason: str
    score: float | None = None
    confidence: float | None = None
    stale: bool = False

    @property
    def usable(self) -> bool:
        return self.reason == "ok"


MISSING = EfficiencyReading("missing_eff")
REDIS_ERROR = EfficiencyReading("redis_error")


def _unit(text: str | None) -> float | None:
    value = parse_decimal(text.strip() if isinstance(text, str) else None)
    return value if value is not None and 0.0 <= value <= 1.0 else None


def read_efficiency(fields: Mapping[str, str] | None, now: float, *, min_conf: float,
                    stale_sec: float) -> EfficiencyReading:
    if not fields or "efficiency_score" not in fields:
        return MISSING
    score = _unit(fields.get("efficiency_score"))
    raw_conf = fields.get("confidence")
    confidence = 0.0 if raw_conf is None else _unit(raw_conf)
    raw_ts = fields.get("ts")
    ts = parse_decimal(raw_ts.strip() if isinstance(raw_ts, str) else None)
    if score is None or confidence is None or ts is None or ts > now + FUTURE_SKEW_SEC:
        return EfficiencyReading("invalid_eff", score, confidence)
    if now - ts > stale_sec:
        return EfficiencyReading("stale_eff", score, confidence, stale=True)
    if confidence < min_conf:
        return EfficiencyReading("low_conf", score, confidence)
    return EfficiencyReading("ok", score, confidence)


def fmt4(value: float | None) -> str:
    """Efficiency values on permits and proposals: four decimals, empty when unknown."""
    return "" if value is None else f"{value:.4f}"
