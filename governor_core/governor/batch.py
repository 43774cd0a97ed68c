"""A batch in flight: its writes sent, its replies not read yet; and what its replies mean.

:func:`begin` drafts a batch's permits chunk by chunk and sends each chunk's write at once,
so Redis applies one chunk while the next is drafted; it returns an :class:`InFlightBatch`.
Its :meth:`~InFlightBatch.finish` reads the replies and accounts for them
(:class:`BatchAccounting`): permits and duplicates counted, dead letters logged, and a
refused write scheduled for a retry (after :data:`MAX_WRITE_ATTEMPTS` it is dead-lettered
instead, so one bad key cannot hold up the stream).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from governor_core.governor.drafting import PermitDraft, SortedEntries, draft_permits
from governor_core.governor.extensions import BatchExtensions
from governor_core.governor.inputs import GateInputs
from governor_core.governor.metrics import WRITE_FAILED, GovernorMetrics
from governor_core.governor.writer import (
    WRITE_CHUNK,
    PermitWriter,
    chunk_sizes,
    plan_results,
)
from governor_core.plans import PlanRejection
from governor_core.redis_io import Command, CommandStream, execute_commands

log = logging.getLogger("quantum.governor")

#: After this many failed writes of the same entry it is dead-lettered instead of retried.
MAX_WRITE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class BatchResult:
    issued: int
    duplicates: int
    dead_letters: int
    failed: int


class BatchAccounting:
    """Counts what each batch's writes did, and remembers refused writes between batches."""

    def __init__(self, client: redis.Redis, writer: PermitWriter,
                 metrics: GovernorMetrics) -> None:
        self.client = client
        self.writer = writer
        self.metrics = metrics
        self._write_failures: Counter[str] = Counter()

    def account(self, drafts: Sequence[PermitDraft], rejections: Sequence[PlanRejection],
                replies: Sequence[object]) -> BatchResult:
        issued = duplicates = failed = 0
        decisions: Counter[str] = Counter()
        sizes = chunk_sizes(len(drafts))
        results = plan_results(replies[:len(sizes)], sizes)
        for draft, result in zip(drafts, results, strict=True):
            if result == 1:
                issued += 1
                decisions[draft.permit["decision"]] += 1
            elif result == 0:
                duplicates += 1
            else:
                failed += 1
                self._write_failed(draft, result)
        dead_replies = replies[len(sizes):len(sizes) + len(rejections)]
        for rejection, reply in zip(rejections, dead_replies, strict=True):
            if reply == 1:
                self.metrics.dead.labels(reason=rejection.code).inc()
                log.warning("plan dead-lettered: %s", rejection.message,
                            extra={"plan_id": rejection.fields.get("plan_id")})
            else:
                failed += 1
                log.error("dead letter write failed: %s", reply)
        for decision, count in decisions.items():
            self.metrics.permit_children[decision].inc(count)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        return BatchResult(issued, duplicates, len(rejections), failed)

    def _write_failed(self, draft: PermitDraft, reply: object) -> None:
        """A permit write was refused by Redis (e.g. a wrong-typed key, out of memory).

        The plan stays pending and is retried; after :data:`MAX_WRITE_ATTEMPTS` it is
        dead-lettered with the error.
        """
        entry_id, plan_id = draft.plan.entry_id, draft.plan.plan_id
        self._write_failures[entry_id] += 1
        log.error("permit write failed: %s", reply, extra={"plan_id": plan_id})
        if self._write_failures[entry_id] < MAX_WRITE_ATTEMPTS:
            return
        del self._write_failures[entry_id]
        execute_commands(self.client, [self.writer.dead_letter_command(
            entry_id, WRITE_FAILED, f"permit write failed: {reply}", draft.fields())])
        self.metrics.dead.labels(reason=WRITE_FAILED).inc()


class InFlightBatch:
    """A batch whose writes are sent; :meth:`finish` reads and accounts for the replies."""

    def __init__(self, stream: CommandStream, drafts: list[PermitDraft],
                 rejections: list[PlanRejection], accounting: BatchAccounting, *,
                 started: float, now: float) -> None:
        self.stream = stream
        self.drafts = drafts
        self.rejections = rejections
        self.accounting = accounting
        self.started = started
        self.now = now

    def finish(self) -> BatchResult:
        result = self.accounting.account(self.drafts, self.rejections, self.stream.replies())
        metrics = self.accounting.metrics
        metrics.batch_seconds.observe(time.perf_counter() - self.started)
        metrics.last_batch.set(self.now)
        return result

    def abandon(self) -> None:
        """Drop the replies (after an outage): the batch's plans stay pending and are read
        again."""
        self.stream.abandon()


def begin(entries: SortedEntries, gates: GateInputs, extensions: BatchExtensions | None,
          accounting: BatchAccounting, *, cooldown_sec: int, ttl_sec: int, now: float,
          started: float) -> InFlightBatch:
    """Draft and send a batch's writes without waiting for them: permits chunk by chunk,
    then its dead letters and the acknowledgement of vanished entries."""
    writer = accounting.writer
    stream = CommandStream(accounting.client)
    drafts: list[PermitDraft] = []
    plans = entries.plans
    try:
        for start in range(0, len(plans), WRITE_CHUNK):
            chunk = draft_permits(plans[start:start + WRITE_CHUNK], gates, extensions,
                                  cooldown_sec=cooldown_sec, ttl_sec=ttl_sec, now=now)
            drafts.extend(chunk)
            stream.send([writer.issue(chunk)])
        tail: list[Command] = [writer.dead_letter(rejection)
                               for rejection in entries.rejections]
        if entries.vanished:
            tail.append(writer.acknowledge(entries.vanished))
        stream.send(tail)
    except BaseException:
        stream.abandon()
        raise
    return InFlightBatch(stream, drafts, entries.rejections, accounting, started=started,
                         now=now)
