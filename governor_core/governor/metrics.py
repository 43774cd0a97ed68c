"""The governor's own Prometheus metrics (the plugins create theirs in ``on_configure``)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from governor_core.governor.faults import Fault
from governor_core.governor.gates import DECISIONS, REASON_DECISIONS
from governor_core.plans import REJECTION_CODES

#: Dead-letter reasons besides the plan rejections of :data:`REJECTION_CODES`.
WRITE_FAILED = "write_failed"


class GovernorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.permits = Counter("governor_permits_issued_total", "Permits written, by decision",
                               ["decision"], registry=registry)
        self.dead = Counter("governor_dead_letters_total",
                            "Plans rejected to the dead-letter stream, by reason",
                            ["reason"], registry=registry)
        self.duplicates = Counter("governor_duplicate_plans_total",
                                  "Plans acknowledged without a new permit (permit existed)",
                                  registry=registry)
        self.refused = Counter("governor_plugin_fields_refused_total",
                               "Permit fields a plugin tried to set and the host refused",
                               ["plugin"], registry=registry)
        self.redis_errors = Counter("governor_redis_errors_total",
                                    "Redis failures the loop retried, by operation", ["op"],
                                    registry=registry)
        self.batch_seconds = Histogram(
            "governor_batch_duration_seconds", "Time from read to written permits, per batch",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry)
        self.lag = Gauge("governor_plan_stream_lag",
                         "Plans in the stream not yet delivered to the consumer group",
                         registry=registry)
        self.pending = Gauge("governor_plan_stream_pending",
                             "Plans delivered to the group but not yet acknowledged",
                             registry=registry)
        self.kill_switch = Gauge("governor_kill_switch",
                                 "1 while quantum:governor:kill is on (every plan DENY "
                                 "kill_switch), else 0; as read by the last batch",
                                 registry=registry)
        self.last_batch = Gauge("governor_last_batch_timestamp_seconds",
                                "Clock time of the last processed batch", registry=registry)
        self.reasons = Counter("governor_permit_reasons_total",
                               "Permits written, by reason (stale_plan: DENY for a plan older "
                               "than GOVERNOR_MAX_PLAN_AGE_SEC)", ["reason"], registry=registry)
        self.write_refusals = Counter(
            "governor_write_refusals_total",
            "Writes Redis refused, by write (permit, dead_letter) and fault (outage: Redis "
            "cannot write, plan_key: the plan's own permit key, other); the plan is kept "
            "pending and retried", ["write", "fault"], registry=registry)
        self.permit_children = {d: self.permits.labels(decision=d) for d in DECISIONS}
        self.reason_children = {r: self.reasons.labels(reason=r) for r in REASON_DECISIONS}
        self._refusals = {(write, fault.value): self.write_refusals.labels(write=write,
                                                                          fault=fault.value)
                          for write in ("permit", "dead_letter") for fault in Fault}
        for code in (*REJECTION_CODES, WRITE_FAILED):
            self.dead.labels(reason=code)

    def count_permits(self, reasons: Mapping[str, int]) -> None:
        """Count a batch's written permits, by reason and by its decision."""
        for reason, count in reasons.items():
            self.reason_children[reason].inc(count)
            self.permit_children[REASON_DECISIONS[reason]].inc(count)

    def refusal(self, *, write: str, fault: str) -> Counter:
        """The refusal counter's child for a ``write`` and a ``fault``."""
        return self._refusals[(write, fault)]
