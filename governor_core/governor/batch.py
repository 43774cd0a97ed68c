"""A batch in flight: its writes sent, its replies not read yet; and what its replies mean.

:func:`begin` drafts a batch's permits chunk by chunk and sends each chunk's write at once,
so Redis applies one chunk while the next is drafted; it returns an :class:`InFlightBatch`.
Its :meth:`~InFlightBatch.finish` reads the replies and accounts for them
(:class:`BatchAccounting`): permits and duplicates counted, dead letters logged, and every
refused write kept pending for a retry, classified by :func:`~governor_core.governor.faults.
classify`:

* the plan's own permit key of another type (``plan_key``): retried at once, and after
  :data:`MAX_WRITE_ATTEMPTS` dead-lettered as ``write_failed``, so one bad key cannot hold
  up the stream;
* Redis unable to write (``outage``: OOM, READONLY, LOADING…): never dead-lettered; the
  result names the outage and the service pauses with backoff;
* anything else (``other``, e.g. a wrong-typed dead-letter stream, so that even the dead
  letter cannot be written): never dead-lettered, retried with backoff while the plans
  behind it are issued.

Each refusal is counted in ``governor_write_refusals_total{write,fault}`` and logged with
Redis's own message, at most once per interval for identical messages
(:class:`~governor_core.logs.RepeatLimiter`).
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
from governor_core.governor.faults import Fault, classify, redis_message
from governor_core.governor.inputs import GateInputs
from governor_core.governor.metrics import WRITE_FAILED, GovernorMetrics
from governor_core.governor.writer import (
    WRITE_CHUNK,
    PermitWriter,
    chunk_sizes,
    plan_results,
)
from governor_core.keys import PERMIT_PREFIX
from governor_core.logs import RepeatLimiter
from governor_core.plans import PlanRejection
from governor_core.redis_io import Command, CommandStream, execute_commands
from governor_core.runtime import is_access_error

log = logging.getLogger("quantum.governor")

#: After this many refusals of the same plan's write for its own permit key (``plan_key``)
#: it is dead-lettered instead of retried. Other refusals never dead-letter a plan.
MAX_WRITE_ATTEMPTS = 3
#: Seconds between two lines of the same refusal message (the others are counted).
REFUSAL_LOG_INTERVAL_SEC = 10.0


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch's writes did. ``failed``: plans kept pending after a refused write;
    ``retry_soon``: some of them may be retried at once (their own permit key, attempts
    left); ``outage``: Redis's message when it could not write at all (pause, then retry)."""

    issued: int
    duplicates: int
    dead_letters: int
    failed: int
    retry_soon: bool = False
    outage: str | None = None


class BatchAccounting:
    """Counts what each batch's writes did, and remembers refused writes between batches."""

    def __init__(self, client: redis.Redis, writer: PermitWriter,
                 metrics: GovernorMetrics) -> None:
        self.client = client
        self.writer = writer
        self.metrics = metrics
        self.refusal_log = RepeatLimiter(log, REFUSAL_LOG_INTERVAL_SEC)
        #: entry id -> refusals for its own permit key so far (``plan_key`` only).
        self._attempts: Counter[str] = Counter()

    def account(self, drafts: Sequence[PermitDraft], rejections: Sequence[PlanRejection],
                replies: Sequence[object]) -> BatchResult:
        issued = duplicates = failed = 0
        reasons: Counter[str] = Counter()
        refused: list[tuple[PermitDraft, object]] = []
        sizes = chunk_sizes(len(drafts))
        results = plan_results(replies[:len(sizes)], sizes)
        for draft, result in zip(drafts, results, strict=True):
            if result == 1:
                issued += 1
                reasons[draft.permit["reason"]] += 1
            elif result == 0:
                duplicates += 1
            else:
                refused.append((draft, result))
        if self._attempts:  # a plan refused before and written now: forget its attempts
            for draft, result in zip(drafts, results, strict=True):
                if result in (0, 1):
                    self._attempts.pop(draft.plan.entry_id, None)
        outages: list[str] = []
        retry_soon = self._permits_refused(refused, outages) if refused else False
        failed += len(refused)
        dead_replies = replies[len(sizes):len(sizes) + len(rejections)]
        for rejection, reply in zip(rejections, dead_replies, strict=True):
            if reply == 1:
                self.metrics.dead.labels(reason=rejection.code).inc()
                log.warning("plan dead-lettered: %s", rejection.message,
                            extra={"plan_id": rejection.plan_id})
            else:
                failed += 1
                self._dead_letter_refused(reply, outages)
        self.metrics.count_permits(reasons)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        denied = next((reply for reply in [*(r for _, r in refused), *dead_replies]
                       if isinstance(reply, Exception) and is_access_error(reply)), None)
        if denied is not None:
            # The ACL refuses the governor a write it needs: a configuration error, which
            # no retry fixes. The plans stay pending; ``run`` stops with exit status 2.
            raise denied
        return BatchResult(issued, duplicates, len(rejections), failed, retry_soon,
                           outages[0] if outages else None)

    def _permits_refused(self, refused: Sequence[tuple[PermitDraft, object]],
                         outages: list[str]) -> bool:
        """Account for permit writes Redis refused; the plans stay pending. Dead-letters
        (``write_failed``) those whose own permit key refused them
        :data:`MAX_WRITE_ATTEMPTS` times; whether some may be retried at once."""
        retry_soon = False
        doomed: list[tuple[PermitDraft, str]] = []
        for draft, reply in refused:
            plan_id = draft.plan.plan_id
            fault = classify(reply, plan_id)
            message = redis_message(reply)
            self.metrics.refusal(write="permit", fault=fault.value).inc()
            if fault is Fault.PLAN_KEY:
                attempts = self._attempts[draft.plan.entry_id] = (
                    self._attempts[draft.plan.entry_id] + 1)
                self.refusal_log.log(
                    logging.ERROR, "permit write refused (%s, attempt %d of %d): %s",
                    fault.value, attempts, MAX_WRITE_ATTEMPTS, message, plan_id=plan_id)
                if attempts >= MAX_WRITE_ATTEMPTS:
                    doomed.append((draft, message))
                else:
                    retry_soon = True
                continue
            if fault is Fault.OUTAGE:
                outages.append(message)
            # The same refusal for every plan (the issue script names the permit key):
            # one message, whichever plan.
            same = message.replace(PERMIT_PREFIX + plan_id, PERMIT_PREFIX + "{plan_id}")
            self.refusal_log.log(logging.ERROR,
                                 "permit write refused (%s), plan kept pending for a retry: %s",
                                 fault.value, message, key=(fault, same), plan_id=plan_id)
        if doomed:
            self._dead_letter_write_failed(doomed, outages)
        return retry_soon

    def _dead_letter_write_failed(self, doomed: Sequence[tuple[PermitDraft, str]],
                                  outages: list[str]) -> None:
        """Dead-letter plans whose own permit key keeps refusing them, in one round trip.
        A dead letter refused in turn leaves its plan pending, to be tried again."""
        replies = execute_commands(self.client, [self.writer.dead_letter_command(
            draft.plan.entry_id, WRITE_FAILED, f"permit write failed: {message}",
            draft.fields()) for draft, message in doomed])
        for (draft, message), reply in zip(doomed, replies, strict=True):
            if reply == 1:
                self._attempts.pop(draft.plan.entry_id, None)
                self.metrics.dead.labels(reason=WRITE_FAILED).inc()
                log.warning("plan dead-lettered: permit write failed %d times: %s",
                            MAX_WRITE_ATTEMPTS, message, extra={"plan_id": draft.plan.plan_id})
            else:
                self._dead_letter_refused(reply, outages)

    def replicated(self, reply: object, wanted: int) -> None:
        """A batch's ``WAIT`` reply (``GOVERNOR_WAIT_REPLICAS``): fewer replicas than
        ``wanted`` within the timeout is logged (once per interval). The writes stand: WAIT
        only tells, it cannot undo them (deploy/README.md, "High availability")."""
        if isinstance(reply, int) and reply >= wanted:
            return
        got = redis_message(reply) if isinstance(reply, Exception) else reply
        self.refusal_log.log(logging.WARNING, "WAIT: %s of %d replica(s) acknowledged the "
                             "batch's writes in time", got, wanted, key="wait")

    def _dead_letter_refused(self, reply: object, outages: list[str]) -> None:
        fault = classify(reply)
        message = redis_message(reply)
        self.metrics.refusal(write="dead_letter", fault=fault.value).inc()
        if fault is Fault.OUTAGE:
            outages.append(message)
        self.refusal_log.log(logging.ERROR,
                             "dead letter write refused (%s), plan kept pending for a retry: %s",
                             fault.value, message)


class InFlightBatch:
    """A batch whose writes are sent; :meth:`finish` reads and accounts for the replies."""

    def __init__(self, stream: CommandStream, drafts: list[PermitDraft],
                 rejections: list[PlanRejection], accounting: BatchAccounting, *,
                 started: float, now: float, wait_replicas: int = 0) -> None:
        self.stream = stream
        self.wait_replicas = wait_replicas
        self.drafts = drafts
        self.rejections = rejections
        self.accounting = accounting
        self.started = started
        self.now = now

    def finish(self) -> BatchResult:
        replies = self.stream.replies()
        if self.wait_replicas and replies:  # WAIT's reply is the last
            self.accounting.replicated(replies[-1], self.wait_replicas)
        result = self.accounting.account(self.drafts, self.rejections, replies)
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
          started: float, max_age_sec: float = 0.0, wait_replicas: int = 0,
          wait_timeout_ms: int = 0) -> InFlightBatch:
    """Draft and send a batch's writes without waiting for them: permits chunk by chunk,
    then its dead letters, the acknowledgement of vanished entries and, with
    ``wait_replicas``, ``WAIT wait_replicas wait_timeout_ms``."""
    writer = accounting.writer
    stream = CommandStream(accounting.client)
    drafts: list[PermitDraft] = []
    plans = entries.plans
    try:
        for start in range(0, len(plans), WRITE_CHUNK):
            chunk = draft_permits(plans[start:start + WRITE_CHUNK], gates, extensions,
                                  cooldown_sec=cooldown_sec, ttl_sec=ttl_sec, now=now,
                                  max_age_sec=max_age_sec)
            drafts.extend(chunk)
            stream.send([writer.issue(chunk)])
        tail: list[Command] = [writer.dead_letter(rejection)
                               for rejection in entries.rejections]
        if entries.vanished:
            tail.append(writer.acknowledge(entries.vanished))
        if wait_replicas:
            tail.append(("WAIT", wait_replicas, wait_timeout_ms))
        stream.send(tail)
    except BaseException:
        stream.abandon()
        raise
    return InFlightBatch(stream, drafts, entries.rejections, accounting, started=started,
                         now=now, wait_replicas=wait_replicas)
