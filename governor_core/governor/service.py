"""The governor loop: plans in, permits out, three Redis round trips per batch.

Per batch: ``XREADGROUP`` (1); the kill switch, every symbol's caps and the reads the
plugins name in ``read_commands``, in one pipeline (1, :mod:`~governor_core.governor.inputs`);
and one stream of writes (1, :mod:`~governor_core.governor.writer`), sent chunk by chunk as
the permits are drafted (:mod:`~governor_core.governor.drafting`). A plugin that reads in
``on_permit_batch`` instead adds its own round trip.

The run loop overlaps consecutive batches: the next batch is read and gated while Redis
applies the previous one's writes; the previous one is finished (its replies read and
counted, :class:`~governor_core.governor.batch.InFlightBatch`) before the next one's writes
are sent (see :meth:`GovernorService.step`).

A crash at any point loses nothing: a plan is acknowledged by the same atomic script that
writes its permit, and unacknowledged plans are read again from the pending list (or
claimed by another governor of the group). Duplicates are detected for as long as the
first permit lives (``GOVERNOR_PERMIT_TTL_SEC``).

A refused write never stalls the plans behind it: its plan stays pending and the pending
list is read again on a :class:`~governor_core.governor.faults.RetrySchedule` (at once
for a plan's own wrong-typed permit key, with backoff otherwise; after an outage such as
OOM the loop pauses first), while new plans are read as usual. A pass over the pending
list follows its cursor to the end, so one stuck plan never hides the ones after it.

Claiming drains: every ``GOVERNOR_CLAIM_IDLE_MS / 2`` a claim cycle follows
``XAUTOCLAIM``'s cursor through the group's whole pending list, one batch per step, back
to back, until nothing abandoned is left (5,100 pending plans of a dead consumer took 11
cycles of ``CLAIM_IDLE / 2`` each before).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis

from governor_core.governor import batch as batches
from governor_core.governor.batch import BatchAccounting, BatchResult, InFlightBatch
from governor_core.governor.drafting import Entry, SortedEntries, sort_entries
from governor_core.governor.extensions import PermitExtensions
from governor_core.governor.faults import RetrySchedule
from governor_core.governor.inputs import GateInputs, gate_commands, judge_gates, reply_count
from governor_core.governor.metrics import GovernorMetrics
from governor_core.governor.writer import PermitWriter
from governor_core.hookspecs import Reads
from governor_core.host import HostService
from governor_core.keys import PLAN_STREAM
from governor_core.parsing import shown
from governor_core.plugin_reads import NO_READS, PluginReads
from governor_core.redis_io import REDIS_OUTAGE_ERRORS, execute_commands
from governor_core.scripts import SCRIPTS
from governor_core.snapshot import host_snapshot, write_snapshot

log = logging.getLogger("quantum.governor")

#: Seconds between two refreshes of the lag and pending gauges.
LAG_REFRESH_SEC = 5.0


class GovernorService(HostService):
    activity = "governor loop"

    def setup(self) -> None:
        self.metrics = GovernorMetrics(self.registry)
        self.extensions = PermitExtensions(self.plugins, self.metrics.refused)
        self.plugin_reads = PluginReads(self.plugins)
        self.config_snapshot = host_snapshot("governor", self.config, self.plugins)
        self.accounting = BatchAccounting(
            self.redis, PermitWriter(self.config, self.config_snapshot.config_id), self.metrics)
        self._pending_cursor: str | None = "0"
        self._retry = RetrySchedule()
        self._rescan = False  # a write was refused during the pass over the pending list
        self._pass_failed = False
        self._claim_cursor: str | None = None  # a claim cycle in progress
        self._claimed = 0
        self._next_claim = 0.0
        self._next_lag = 0.0
        self._in_flight: InFlightBatch | None = None
        self._cleanup_refused = False

    # -- lifecycle (HostService) -----------------------------------------------------------

    def prepare(self) -> None:
        self.ensure_group()
        SCRIPTS.load(self.redis)
        write_snapshot(self.redis, self.config_snapshot, self.clock())  # once per config_id

    def ensure_group(self) -> None:
        """Create the consumer group at the start of the stream (so queued plans count)."""
        try:
            self.redis.xgroup_create(PLAN_STREAM, self.config.group, id="0", mkstream=True)
            log.info("created consumer group", extra={"count": 0})
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def loop_step(self) -> int:
        return self.step(overlap=True)

    def step(self, *, overlap: bool = False) -> int:
        """Read one batch (own pending entries first, then new ones) and process it; the
        number of entries read.

        With ``overlap`` (the run loop), a batch of new plans is left in flight once its
        writes are sent: the next step reads, validates and gates the following batch while
        Redis applies them, and finishes it just before sending its own writes. Call
        :meth:`flush` to finish the batch in flight. Recovery reads (own pending entries,
        claims) always finish the batch in flight first, so they never see its plans as
        unfinished.
        """
        now = self.clock()
        if now >= self._next_lag:
            self._refresh_lag()
            self._next_lag = now + LAG_REFRESH_SEC
        pause = self._retry.pause_left()
        if pause:  # Redis refused writes for an outage (OOM, READONLY…): wait, then retry
            self.flush()
            self.stop.wait(pause)
            return 0
        if self._claim_cursor is None and now >= self._next_claim:
            self._next_claim = now + self.config.claim_idle_ms / 2000
            self.flush()
            self._delete_idle_consumers()
            self._claim_cursor, self._claimed = "0-0", 0
        if self._claim_cursor is not None:
            self.flush()
            claimed = self._claim_abandoned()
            if claimed:
                self.process(claimed)
                return len(claimed)
        if self._pending_cursor is not None and self._retry.is_due():
            # Our own unacknowledged plans first (after a start, an outage or a refused
            # write), one batch at a time to the end of the list; then new plans.
            self.flush()
            if self._pending_cursor == "0":
                self._pass_failed = False
            entries = self._read(self._pending_cursor, block=None)
            self._pending_cursor = entries[-1][0] if entries else None
            if entries:
                self.process(entries)
                return len(entries)
            self._pending_pass_ended()
        # With a batch in flight, don't block: if nothing new has come, finish that batch.
        entries = self._read(">", block=None if self._in_flight else self.config.block_ms)
        if not entries:
            self.flush()
            return 0
        batch = self._begin(entries)
        if overlap:
            self._in_flight = batch
        else:
            self._finish(batch)
        return len(entries)

    def failed(self, error: Exception) -> None:
        self._abandon_in_flight()
        self._pending_cursor = "0"
        self._retry.retry_now()  # the host's backoff has waited already
        op = "response" if isinstance(error, redis.ResponseError) else "loop"
        self.metrics.redis_errors.labels(op=op).inc()

    def close(self) -> None:
        """Finish the batch in flight; then, if this consumer holds no pending plan, delete
        it from the group (a clean stop leaves no dead name behind). A consumer with
        pending plans is kept: deleting it would drop them from the pending list."""
        try:
            self.flush()
        except (*REDIS_OUTAGE_ERRORS, redis.ResponseError) as exc:
            self._abandon_in_flight()  # its plans stay pending: the next start issues them
            log.error("last batch's replies lost at stop: %s", exc)
            return
        finally:
            self.accounting.refusal_log.flush()
        try:
            mine = [c for c in self._consumers() if c.get("name") == self.config.consumer]
            if mine and not mine[0].get("pending"):
                self.redis.xgroup_delconsumer(PLAN_STREAM, self.config.group,
                                              self.config.consumer)
        except (*REDIS_OUTAGE_ERRORS, redis.ResponseError) as exc:
            log.warning("consumer %s not deleted from the group at stop: %s",
                        self.config.consumer, exc)

    # -- batches ---------------------------------------------------------------------------

    def process(self, entries: Sequence[Entry]) -> BatchResult:
        """Issue a permit (or dead letter) for every entry, and wait until all are written."""
        return self._finish(self._begin(entries))

    def flush(self) -> BatchResult | None:
        """Finish the batch in flight, if any: read its replies and count them."""
        batch, self._in_flight = self._in_flight, None
        return self._finish(batch) if batch is not None else None

    def _begin(self, entries: Sequence[Entry]) -> InFlightBatch:
        """Validate, gate and extend a batch; finish the batch in flight (its replies are
        in by now); then send this batch's writes without waiting for them."""
        started = time.perf_counter()
        now = self.clock()
        sorted_entries = sort_entries(entries)
        plans = sorted_entries.plans
        gates, reads = self._read_gates(sorted_entries, now)
        extensions = (self.extensions.begin(plans, self.redis, now, reads) if plans
                      else None)
        self.flush()
        return batches.begin(sorted_entries, gates, extensions, self.accounting,
                             cooldown_sec=self.config.cooldown_sec,
                             ttl_sec=self.config.permit_ttl_sec, now=now, started=started,
                             max_age_sec=self.config.max_plan_age_sec,
                             wait_replicas=self.config.wait_replicas,
                             wait_timeout_ms=self.config.wait_timeout_ms)

    def _finish(self, batch: InFlightBatch) -> BatchResult:
        result = batch.finish()
        if result.failed:
            # Retry the refused writes from our pending list: a new pass, or another one
            # once the pass in progress reaches the end (never back to its start, where a
            # stuck plan would be read again and again before the ones behind it).
            self._retry.failed(soon=result.retry_soon, outage=result.outage is not None)
            self._pass_failed = True
            if self._pending_cursor is None:
                self._pending_cursor = "0"
            else:
                self._rescan = True
        return result

    def _pending_pass_ended(self) -> None:
        """The pass over our pending list reached its end: start another if a write was
        refused meanwhile (when the schedule says), else the backoff is over."""
        if self._rescan:
            self._rescan, self._pending_cursor = False, "0"
        elif not self._pass_failed:
            self._retry.succeeded()

    def _read_gates(self, entries: SortedEntries, now: float
                    ) -> tuple[GateInputs, dict[str, Reads]]:
        """The kill switch, every symbol's cap and the plugins' ``read_commands``, in one
        round trip."""
        if not entries.plans:
            return GateInputs(False, {}), {}
        symbols = sorted({plan.symbol for plan in entries.plans})
        request = self.plugin_reads.request(symbols, now) if self.plugin_reads else NO_READS
        own = reply_count(symbols)
        replies = execute_commands(self.redis, [*gate_commands(symbols), *request.commands])
        gates = judge_gates(symbols, replies[:own])
        self.metrics.kill_switch.set(gates.kill_switch)
        return gates, request.reads(replies[own:])

    def _abandon_in_flight(self) -> None:
        batch, self._in_flight = self._in_flight, None
        if batch is not None:
            batch.abandon()

    # -- reading the plan stream -----------------------------------------------------------

    def _read(self, cursor: str, block: int | None) -> list[Entry]:
        response = self.redis.xreadgroup(self.config.group, self.config.consumer,
                                         {PLAN_STREAM: cursor}, count=self.config.batch_size,
                                         block=block)
        return response[0][1] if response else []

    def _claim_abandoned(self) -> list[Entry]:
        """Take over the next batch of plans another consumer read but never acknowledged
        (it crashed), from the claim cycle's cursor; the cycle ends when ``XAUTOCLAIM``'s
        cursor comes back to ``0-0`` (the whole pending list was scanned). A call may come
        back empty with the scan unfinished (``XAUTOCLAIM`` looks at ``10 × count`` entries
        per call, and live consumers' entries are skipped): then the next call goes on from
        its cursor, at once."""
        entries: list[Entry] = []
        while self._claim_cursor is not None and not entries:
            result = self.redis.xautoclaim(PLAN_STREAM, self.config.group,
                                           self.config.consumer,
                                           min_idle_time=self.config.claim_idle_ms,
                                           start_id=self._claim_cursor,
                                           count=self.config.batch_size)
            cursor = str(result[0]) if result else "0-0"
            entries = result[1] if result else []
            self._claim_cursor = None if cursor == "0-0" else cursor
        self._claimed += len(entries)
        if self._claim_cursor is None and self._claimed:
            log.warning("claimed abandoned plans", extra={"count": self._claimed})
        return entries

    def _consumers(self) -> list[dict]:
        return self.redis.xinfo_consumers(PLAN_STREAM, self.config.group)

    def _delete_idle_consumers(self) -> None:
        """Delete the group's other consumers idle for ``GOVERNOR_CONSUMER_IDLE_DELETE_SEC``
        with nothing pending (stopped or crashed governors; a live one reads every
        ``GOVERNOR_BLOCK_MS``, and would be re-created by its next read). One with pending
        plans is left for :meth:`_claim_abandoned`."""
        idle_ms = self.config.consumer_idle_delete_sec * 1000
        if not idle_ms:
            return
        try:
            for consumer in self._consumers():
                name = consumer.get("name")
                if (name != self.config.consumer and not consumer.get("pending")
                        and (consumer.get("idle") or 0) >= idle_ms):
                    # A name with undecodable bytes came in as surrogates: send them back.
                    self.redis.xgroup_delconsumer(PLAN_STREAM, self.config.group,
                                                  name.encode("utf-8", "surrogateescape"))
                    log.info("deleted idle consumer %s of group %s (nothing pending)",
                             shown(name), self.config.group)
        except redis.ResponseError as exc:  # e.g. an ACL without XINFO: housekeeping only
            if not self._cleanup_refused:
                log.warning("idle consumers not deleted: %s", exc)
            self._cleanup_refused = True

    def _refresh_lag(self) -> None:
        try:
            for group in self.redis.xinfo_groups(PLAN_STREAM):
                if group.get("name") == self.config.group:
                    self.metrics.pending.set(group.get("pending") or 0)
                    self.metrics.lag.set(group.get("lag") or 0)
        except redis.ResponseError:
            pass  # no stream yet
