"""The governor's own Prometheus metrics (the plugins create theirs in ``on_configure``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from governor_core.governor.gates import DECISIONS
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
        self.permit_children = {d: self.permits.labels(decision=d) for d in DECISIONS}
        for code in (*REJECTION_CODES, WRITE_FAILED):
            self.dead.labels(reason=code)
