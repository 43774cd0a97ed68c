"""The values of promotion readiness (SPEC 8): its thresholds (:class:`ReadinessConfig`),
the evidence it judges (:class:`Evidence`) and its report (:class:`Criterion`,
:class:`Readiness`). Plain data, nothing computed.

What lives elsewhere: each criterion, what it counts, why its threshold, and the code that
computes it (``evaluate``), in :mod:`governor_core.allocation.readiness`; reading the
evidence from Redis and printing the report (text or the ``--json`` object) in
:mod:`governor_core.allocation.promotion`; the demo's rendering in
:mod:`governor_core.demo.trust`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from governor_core.config import setting

#: A stream entry: field → text.
Entry = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ReadinessConfig:
    """The thresholds, ``READINESS_*`` settings (:mod:`governor_core.allocation.readiness`
    says what each one bounds and why its default)."""

    min_cycle_ratio: float = setting("READINESS_MIN_CYCLE_RATIO", 0.9, min=0.0, max=1.0)
    min_targets: int = setting("READINESS_MIN_TARGETS", 1, min=0)
    max_fallback_rate: float = setting("READINESS_MAX_FALLBACK_RATE", 0.01, min=0.0, max=1.0)
    min_confidence: float = setting("READINESS_MIN_CONFIDENCE", 0.5, min=0.0, max=1.0)
    min_confident_share: float = setting("READINESS_MIN_CONFIDENT_SHARE", 1.0, min=0.0,
                                         max=1.0)
    max_errors: int = setting("READINESS_MAX_ERRORS", 0, min=0)
    max_changed_permit_rate: float = setting("READINESS_MAX_CHANGED_PERMIT_RATE", 1.0,
                                             min=0.0, max=1.0)
    min_proposal_coverage: float = setting("READINESS_MIN_PROPOSAL_COVERAGE", 0.9, min=0.0,
                                           max=1.0)
    max_oscillations_per_hour: float = setting("READINESS_MAX_OSCILLATIONS_PER_HOUR", 4.0,
                                               min=0.0)


@dataclass(frozen=True, slots=True)
class Evidence:
    """The window's stream entries (field → text), oldest first, and how to read them.

    ``interval_sec`` is ``P29_INTERVAL_SEC``, ``target_ttl_sec`` is ``TARGET_TTL_SEC``.
    """

    now: float
    window_sec: float
    interval_sec: float
    target_ttl_sec: float
    decisions: Sequence[Entry] = ()
    proposals: Sequence[Entry] = ()
    permits: Sequence[Entry] = ()
    errors: Sequence[Entry] = ()


@dataclass(frozen=True, slots=True)
class Criterion:
    """One line of the checklist (the statuses: :mod:`governor_core.allocation.readiness`)."""

    name: str
    status: str  # PASS, FAIL, SKIP or INFO
    value: float | None
    threshold: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Readiness:
    """The report: every criterion, in :func:`~governor_core.allocation.readiness.evaluate`'s
    order; it passes when none is ``FAIL``."""

    criteria: tuple[Criterion, ...]
    #: Per symbol: budget, target, change, permits, permits_changed, notional_removed_usd.
    symbols: Mapping[str, Mapping[str, float | int | None]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(item.status != "FAIL" for item in self.criteria)

    @property
    def failing(self) -> list[Criterion]:
        return [item for item in self.criteria if item.status == "FAIL"]
