"""The governor loop: plans in, permits out, three Redis round trips per batch.

Per batch: ``XREADGROUP`` (1); the kill switch, every symbol's caps and the reads the
plugins name in ``read_commands``, in one pipeline (1); and one pipeline of writes (1). A
plugin that reads in ``on_permit_batch`` instead adds its own round trip.
The run loop overlaps consecutive batches: the next batch is read and gated while Redis
applies the previous one's writes (see :meth:`GovernorService.step`).

Each plan's permit is written by a Lua script (one call per :data:`WRITE_CHUNK` plans)
that, atomically, skips a plan whose permit already exists, writes the permit hash (core
and plugin fields) with its TTL, appends the core fields to the capped
``quantum:stream:permit.issued`` and acknowledges the plan. (The stream entry leaves the
plugin fields out: they would double the plugin's Redis cost, and the stream is the
durable record of the decision, which plugins never change.)

So a plan is acknowledged only once its permit exists, a plan delivered twice (a producer
retry, or a crashed consumer's entry claimed by another governor) gets exactly one permit,
and a crash at any point loses nothing: unacknowledged plans are read again from the
pending list. Duplicates are detected for as long as the first permit lives
(``GOVERNOR_PERMIT_TTL_SEC``).

Dead letters are written the same way (append + acknowledge, atomically).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from governor_core.config import GovernorConfig
from governor_core.governor.extensions import (
    NO_FIELDS,
    BatchExtensions,
    PermitExtensions,
    PluginFields,
)
from governor_core.governor.gates import (
    CORE_FIELDS,
    DECISIONS,
    NO_CAP,
    Cap,
    choose_cap,
    core_permit,
    decide,
)
from governor_core.hookspecs import Reads
from governor_core.plans import REJECTION_CODES, Plan, PlanRejection, parse_plan
from governor_core.plugins import NO_READS, PluginHost, PluginReads
from governor_core.redis_io import (
    REDIS_OUTAGE_ERRORS,
    Backoff,
    Command,
    CommandStream,
    execute_commands,
)
from governor_core.wire import Packed, bulk

log = logging.getLogger("quantum.governor")

PLAN_STREAM = "quantum:stream:apply.plan"
DEAD_STREAM = "quantum:stream:apply.plan.dead"
PERMIT_STREAM = "quantum:stream:permit.issued"
KILL_KEY = "quantum:governor:kill"
PERMIT_KEY = "quantum:permit:{}"
TARGET_KEY = "quantum:allocation:target:{}"
BUDGET_KEY = "quantum:portfolio:budget:{}"

# One call writes a chunk of permits. KEYS: permit stream, plan stream, then one permit
# key per plan. ARGV: group, ttl, maxlen, the number of plugin field sets, each set as
# (count, name, value, …); then per plan: entry id, its field set (0 for none), the values
# of the core fields in CORE_FIELDS order (the script holds the names). Replies one result
# per plan: 1 written, 0 permit already there (acknowledged only), or an error. A plan's
# checks come before its first write, so a refused plan leaves nothing behind (a permit
# written but not announced would be taken for a duplicate on retry). The plans written or
# found are acknowledged by one XACK at the end (the script is atomic: same effect).
ISSUE_SCRIPT = """
local names = {CORE_NAMES}
local ncore = #names
local group, ttl, maxlen = ARGV[1], ARGV[2], ARGV[3]
local sets, at = {}, 5
for s = 1, tonumber(ARGV[4]) do
  local n = tonumber(ARGV[at])
  sets[s] = {unpack(ARGV, at + 1, at + n)}
  at = at + 1 + n
end
local stream_type = redis.call('TYPE', KEYS[1]).ok
local stream_ok = stream_type == 'none' or stream_type == 'stream'
local results, acks = {}, {}
local fields = {}  -- reused for every plan: names stay, values are overwritten
for f = 1, ncore do fields[2 * f - 1] = names[f] end
for p = 3, #KEYS do
  local key, entry, set = KEYS[p], ARGV[at], tonumber(ARGV[at + 1])
  for f = 1, ncore do fields[2 * f] = ARGV[at + 1 + f] end
  at = at + 2 + ncore
  -- HSETNX creates the permit with its first field, or finds it (duplicate), or fails
  -- on a key of another type: one call for the check and the first write.
  local created = stream_ok and redis.pcall('HSETNX', key, names[1], fields[2])
  if created == 0 then
    acks[#acks + 1] = entry
    results[p - 2] = 0
  elseif created ~= 1 then
    local permit_type = redis.call('TYPE', key).ok
    results[p - 2] = redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. permit_type
                                       .. ', ' .. KEYS[1] .. ' is a ' .. stream_type)
  else
    local n = 2 * ncore
    if set > 0 then
      local extra = sets[set]
      for i = 1, #extra do fields[n + i] = extra[i] end
      n = n + #extra
    end
    redis.call('HSET', key, unpack(fields, 3, n))
    redis.call('EXPIRE', key, ttl)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields, 1, 2 * ncore))
    acks[#acks + 1] = entry
    stream_type = 'stream'
    results[p - 2] = 1
  end
end
if #acks > 0 then
  redis.call('XACK', KEYS[2], group, unpack(acks))
end
return results
""".replace("{CORE_NAMES}", "{" + ", ".join(f"'{name}'" for name in CORE_FIELDS) + "}")
# KEYS: dead stream, plan stream. ARGV: group, entry id, maxlen, fields…
DEAD_LETTER_SCRIPT = """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

#: After this many failed writes of the same entry it is dead-lettered instead of retried.
MAX_WRITE_ATTEMPTS = 3
#: Plans drafted per write sent: small enough that Redis starts early, large enough that
#: each send is one syscall for many commands.
WRITE_CHUNK = 50
LAG_REFRESH_SEC = 5.0


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch whose writes are sent and whose replies are not read yet."""

    stream: CommandStream
    plans: list[Plan]
    permits: list[tuple[dict[str, str], PluginFields]]
    rejections: list[PlanRejection]
    started: float
    now: float


@dataclass(frozen=True, slots=True)
class BatchResult:
    issued: int
    duplicates: int
    dead_letters: int
    failed: int


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
        self.last_batch = Gauge("governor_last_batch_timestamp_seconds",
                                "Clock time of the last processed batch", registry=registry)
        self.permit_children = {d: self.permits.labels(decision=d) for d in DECISIONS}
        for code in (*REJECTION_CODES, "write_failed"):
            self.dead.labels(reason=code)


class GovernorService:
    def __init__(self, config: GovernorConfig, client: redis.Redis, plugins: PluginHost,
                 registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.redis = client
        self.plugins = plugins
        self.clock = clock
        self.stop = stop or threading.Event()
        self.metrics = GovernorMetrics(registry)
        self._pending_cursor: str | None = "0"
        self._write_failures: Tally[str] = Tally()
        self._next_claim = 0.0
        self._next_lag = 0.0
        self._in_flight: _Batch | None = None
        self.extensions = PermitExtensions(plugins, self.metrics.refused)
        self.plugin_reads = PluginReads(plugins)

    # -- lifecycle -----------------------------------------------------------------------

    def ensure_group(self) -> None:
        """Create the consumer group at the start of the stream (so queued plans count)."""
        try:
            self.redis.xgroup_create(PLAN_STREAM, self.config.group, id="0", mkstream=True)
            log.info("created consumer group", extra={"count": 0})
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def run(self) -> None:
        """Process batches until ``stop`` is set; Redis outages are waited out.

        The loop overlaps batches (:meth:`step` with ``overlap=True``): while Redis applies
        one batch's writes, the next batch is read, validated and gated. On stop the batch
        in hand is finished before returning.
        """
        backoff = Backoff(self.stop)
        ready = False
        while not self.stop.is_set():
            try:
                if not ready:
                    self.ensure_group()
                    ready = True
                self.step(overlap=True)
                backoff.succeeded()
            except REDIS_OUTAGE_ERRORS as exc:
                self._abandon_in_flight()
                self.metrics.redis_errors.labels(op="loop").inc()
                self._pending_cursor = "0"
                ready = False
                backoff.failed("governor loop", exc)
            except redis.ResponseError as exc:
                self._abandon_in_flight()
                if "NOGROUP" in str(exc):
                    ready = False  # the stream or group was deleted under us: recreate it
                self.metrics.redis_errors.labels(op="response").inc()
                self._pending_cursor = "0"
                backoff.failed("governor loop", exc)
        try:
            self.flush()
        except (*REDIS_OUTAGE_ERRORS, redis.ResponseError) as exc:
            self._abandon_in_flight()  # its plans stay pending: the next start issues them
            log.error("last batch's replies lost at stop: %s", exc)

    def step(self, *, overlap: bool = False) -> int:
        """Read one batch (own pending entries first, then new ones) and process it.

        With ``overlap`` (the run loop), a batch of new plans is left in flight once its
        writes are sent: the next step reads, validates and gates the following batch while
        Redis applies them, and only then reads their replies and counts them. Redis works
        while the governor drafts, and the other way round; a batch's plans are acknowledged
        by the same scripts either way, so nothing about what is written changes. Call
        :meth:`flush` to finish the batch in flight. Recovery reads (own pending entries,
        claims) always finish the batch in flight first, so they never see its plans as
        unfinished.
        """
        now = self.clock()
        if now >= self._next_lag:
            self._refresh_lag()
            self._next_lag = now + LAG_REFRESH_SEC
        if now >= self._next_claim:
            self._next_claim = now + self.config.claim_idle_ms / 2000
            self.flush()
            claimed = self._claim_abandoned()
            if claimed:
                self.process(claimed)
                return len(claimed)
        if self._pending_cursor is not None:
            # Our own unacknowledged plans first (after a start, an outage or a refused
            # write), one batch at a time; then new plans, in the same step.
            self.flush()
            entries = self._read(self._pending_cursor, block=None)
            self._pending_cursor = entries[-1][0] if entries else None
            if entries:
                self.process(entries)
                return len(entries)
        # With a batch in flight, don't block: if nothing new has come, finish that batch.
        entries = self._read(">", block=None if self._in_flight else self.config.block_ms)
        if not entries:
            self.flush()
            return 0
        batch = self._begin(entries, before_writes=self.flush)
        if overlap:
            self._in_flight = batch
        else:
            self._finish(batch)
        return len(entries)

    def flush(self) -> BatchResult | None:
        """Finish the batch in flight, if any: read its replies and count them."""
        batch, self._in_flight = self._in_flight, None
        return self._finish(batch) if batch is not None else None

    def _abandon_in_flight(self) -> None:
        batch, self._in_flight = self._in_flight, None
        if batch is not None:
            batch.stream.abandon()  # its plans stay pending and are read again

    def _read(self, cursor: str, block: int | None) -> list[tuple[str, dict[str, str] | None]]:
        response = self.redis.xreadgroup(self.config.group, self.config.consumer,
                                         {PLAN_STREAM: cursor}, count=self.config.batch_size,
                                         block=block)
        return response[0][1] if response else []

    def _claim_abandoned(self) -> list[tuple[str, dict[str, str] | None]]:
        """Take over plans another consumer read but never acknowledged (it crashed)."""
        result = self.redis.xautoclaim(PLAN_STREAM, self.config.group, self.config.consumer,
                                       min_idle_time=self.config.claim_idle_ms,
                                       start_id="0-0", count=self.config.batch_size)
        entries = result[1] if result else []
        if entries:
            log.warning("claimed abandoned plans", extra={"count": len(entries)})
        return entries

    def _refresh_lag(self) -> None:
        try:
            for group in self.redis.xinfo_groups(PLAN_STREAM):
                if group.get("name") == self.config.group:
                    self.metrics.pending.set(group.get("pending") or 0)
                    self.metrics.lag.set(group.get("lag") or 0)
        except redis.ResponseError:
            pass  # no stream yet

    # -- one batch -----------------------------------------------------------------------

    def process(self, entries: Sequence[tuple[str, dict[str, str] | None]]) -> BatchResult:
        """Issue a permit (or dead letter) for every entry, and wait until all are written."""
        return self._finish(self._begin(entries))

    def _begin(self, entries: Sequence[tuple[str, dict[str, str] | None]], *,
               before_writes: Callable[[], object] | None = None) -> _Batch:
        """Validate, gate and extend a batch, then send its writes without waiting for them.

        ``before_writes`` runs after the batch's reads (gates, plugins) and before its
        writes are sent: the run loop finishes the previous batch there.
        """
        started = time.perf_counter()
        now = self.clock()
        plans: list[Plan] = []
        rejections: list[PlanRejection] = []
        vanished: list[str] = []
        for entry_id, fields in entries:
            if fields is None:  # trimmed from the stream while pending: nothing to issue
                vanished.append(entry_id)
                continue
            parsed = parse_plan(entry_id, fields)
            (plans if isinstance(parsed, Plan) else rejections).append(parsed)

        kill, caps, reads = self._gates(plans, now) if plans else (False, {}, {})
        extensions = self.extensions.begin(plans, self.redis, now, reads) if plans else None
        if before_writes is not None:
            before_writes()
        stream = CommandStream(self.redis)
        try:
            stream.send([("SCRIPT", "LOAD", ISSUE_SCRIPT),
                         ("SCRIPT", "LOAD", DEAD_LETTER_SCRIPT)])
            permits = self._issue(plans, kill, caps, extensions, now, stream)
            maxlen, group = str(self.config.stream_maxlen), self.config.group
            tail: list[Command] = [
                ("EVALSHA", _SHAS[1], "2", DEAD_STREAM, PLAN_STREAM, group,
                 rejection.entry_id, maxlen,
                 *_dead_letter_fields(rejection.entry_id, rejection.code, rejection.message,
                                      rejection.fields))
                for rejection in rejections]
            if vanished:
                tail.append(("XACK", PLAN_STREAM, group, *vanished))
            stream.send(tail)
        except BaseException:
            stream.abandon()
            raise
        return _Batch(stream, plans, permits, rejections, started, now)

    def _finish(self, batch: _Batch) -> BatchResult:
        result = self._account(batch.plans, batch.permits, batch.rejections,
                               batch.stream.replies()[2:])
        self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)
        self.metrics.last_batch.set(batch.now)
        return result

    def _gates(self, plans: list[Plan], now: float
               ) -> tuple[bool, dict[str, Cap], dict[str, Reads]]:
        """The kill switch, every symbol's cap and the plugins' ``read_commands``, in one
        round trip."""
        symbols = sorted({plan.symbol for plan in plans})
        request = self.plugin_reads.request(symbols, now) if self.plugin_reads else NO_READS
        commands: list[Command | Packed] = [("TYPE", KILL_KEY), ("GET", KILL_KEY)]
        for symbol in symbols:
            commands.append(("HGET", TARGET_KEY.format(symbol), "target_usd"))
            commands.append(("HGET", BUDGET_KEY.format(symbol), "budget_usd"))
        own = len(commands)
        replies = execute_commands(self.redis, [*commands, *request.commands])
        caps = {}
        for index, symbol in enumerate(symbols):
            target, budget = replies[2 + 2 * index], replies[3 + 2 * index]
            caps[symbol] = choose_cap(_value(target, symbol), _value(budget, symbol))
        return (self._kill_switch(replies[0], replies[1]), caps,
                request.reads(replies[own:]))

    def _issue(self, plans: list[Plan], kill: bool, caps: dict[str, Cap],
               extensions: BatchExtensions | None, now: float,
               stream: CommandStream) -> list[tuple[dict[str, str], PluginFields]]:
        """Draft every permit and send its write, :data:`WRITE_CHUNK` plans at a time.

        Redis executes one chunk's scripts while the next chunk is drafted, so the batch
        costs about the larger of the two instead of their sum. Each write is spliced as
        RESP text: the batch-constant arguments and each plugin mapping are encoded once
        (:class:`~governor_core.redis_io.Packed`), the core fields per plan.
        """
        config = self.config
        cooldown, ttl = config.cooldown_sec, config.permit_ttl_sec
        head = "".join(map(bulk, ("EVALSHA", _SHAS[0])))
        streams = "".join(map(bulk, (PERMIT_STREAM, PLAN_STREAM)))
        limits = "".join(map(bulk, (config.group, str(ttl), str(config.stream_maxlen))))
        permits: list[tuple[dict[str, str], PluginFields]] = []
        for start in range(0, len(plans), WRITE_CHUNK):
            keys, rows = [], []
            # Each distinct set of plugin fields goes once per call, rows refer to it.
            sets: dict[str, str] = {}
            set_parts: list[str] = []
            set_args = 0
            for plan in plans[start:start + WRITE_CHUNK]:
                gate = decide(plan.notional_usd, kill, caps.get(plan.symbol, NO_CAP))
                permit = core_permit(plan, gate, cooldown_sec=cooldown, ttl_sec=ttl, now=now)
                extra = extensions.extend(plan, permit) if extensions else NO_FIELDS
                permits.append((permit, extra))
                if extra.count:
                    index = sets.get(extra.resp)
                    if index is None:
                        index = sets[extra.resp] = _index(len(sets) + 1)
                        set_parts.append(f"{bulk(str(extra.count))}{extra.resp}")
                        set_args += 1 + extra.count
                else:
                    index = _index(0)
                key = PERMIT_KEY.format(plan.plan_id)
                entry = plan.entry_id
                # Plan ids, symbols, entry ids and numbers are ASCII (parse_plan): character
                # counts are byte counts.
                keys.append(f"${len(key)}\r\n{key}\r\n")
                rows.append(f"${len(entry)}\r\n{entry}\r\n{index}{_core_values(permit)}")
            count = len(keys)
            text = (f"*{3 + 2 + count + 4 + set_args + (2 + len(CORE_FIELDS)) * count}\r\n"
                    f"{head}{bulk(str(2 + count))}{streams}{''.join(keys)}{limits}"
                    f"{bulk(str(len(sets)))}{''.join(set_parts)}{''.join(rows)}")
            stream.send([Packed(text.encode())])
        return permits

    def _kill_switch(self, key_type: object, value: object) -> bool:
        # "1" is on; absent or any other string is off. A key of another type means someone
        # meant to set it and got it wrong: the one gate that fails closed.
        if key_type not in ("string", "none"):
            log.error("kill switch key %s has type %s: treating it as ON", KILL_KEY, key_type)
            return True
        return value == "1"

    def _account(self, plans: list[Plan], permits: list[tuple[dict[str, str], PluginFields]],
                 rejections: list[PlanRejection], replies: list[object]) -> BatchResult:
        """Count what the batch's writes did; schedule a retry for any Redis refused."""
        issued = duplicates = failed = 0
        decisions: Tally[str] = Tally()
        chunks = -(-len(plans) // WRITE_CHUNK)
        results: list[object] = []
        for number, reply in enumerate(replies[:chunks]):
            size = min(WRITE_CHUNK, len(plans) - number * WRITE_CHUNK)
            # A call Redis refused as a whole (e.g. out of memory) fails each of its plans.
            results.extend(reply if isinstance(reply, list) and len(reply) == size
                           else [reply] * size)
        for plan, (permit, extra), reply in zip(plans, permits, results, strict=True):
            if reply == 1:
                issued += 1
                decisions[permit["decision"]] += 1
            elif reply == 0:
                duplicates += 1
            else:
                failed += 1
                self._write_failed(plan.entry_id, plan.plan_id, reply,
                                   {**permit, **extra.merged()})
        dead_replies = replies[chunks:chunks + len(rejections)]
        for rejection, reply in zip(rejections, dead_replies, strict=True):
            if reply == 1:
                self.metrics.dead.labels(reason=rejection.code).inc()
                log.warning("plan dead-lettered: %s", rejection.message,
                            extra={"plan_id": rejection.fields.get("plan_id")})
            else:
                failed += 1
                self._pending_cursor = "0"
                log.error("dead letter write failed: %s", reply)
        for decision, count in decisions.items():
            self.metrics.permit_children[decision].inc(count)
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        return BatchResult(issued, duplicates, len(rejections), failed)

    def _write_failed(self, entry_id: str, plan_id: str, reply: object,
                      fields: dict[str, str]) -> None:
        """A permit write was refused by Redis (e.g. a wrong-typed key, out of memory).

        The plan stays pending and is retried; after :data:`MAX_WRITE_ATTEMPTS` it is
        dead-lettered with the error, so one bad key cannot hold up the stream.
        """
        self._pending_cursor = "0"
        self._write_failures[entry_id] += 1
        log.error("permit write failed: %s", reply, extra={"plan_id": plan_id})
        if self._write_failures[entry_id] < MAX_WRITE_ATTEMPTS:
            return
        del self._write_failures[entry_id]
        self.redis.evalsha(_SHAS[1], 2, DEAD_STREAM, PLAN_STREAM, self.config.group, entry_id,
                           str(self.config.stream_maxlen),
                           *_dead_letter_fields(entry_id, "write_failed",
                                                f"permit write failed: {reply}", fields))
        self.metrics.dead.labels(reason="write_failed").inc()


def _core_values(permit: dict[str, str]) -> str:
    """The core field values as RESP arguments, in :data:`CORE_FIELDS` order (the issue
    script holds the names).

    Written out as one f-string: it runs once per permit, and a compiled f-string is
    several times faster than ``str.format`` or a loop (a test checks it against
    :data:`CORE_FIELDS` and :func:`~governor_core.redis_io.bulk`). Every value is ASCII
    (validated plan fields, formatted numbers, fixed codes), so lengths are byte counts.
    """
    (plan_id, symbol, side, notional, decision, reason, allowed, cap, cap_source, cooldown,
     issued, expires) = permit.values()
    return (f"${len(plan_id)}\r\n{plan_id}\r\n${len(symbol)}\r\n{symbol}\r\n"
            f"${len(side)}\r\n{side}\r\n${len(notional)}\r\n{notional}\r\n"
            f"${len(decision)}\r\n{decision}\r\n${len(reason)}\r\n{reason}\r\n"
            f"${len(allowed)}\r\n{allowed}\r\n${len(cap)}\r\n{cap}\r\n"
            f"${len(cap_source)}\r\n{cap_source}\r\n${len(cooldown)}\r\n{cooldown}\r\n"
            f"${len(issued)}\r\n{issued}\r\n${len(expires)}\r\n{expires}\r\n")


_INDEXES = [bulk(str(i)) for i in range(WRITE_CHUNK + 1)]
_index = _INDEXES.__getitem__


_SHAS = tuple(hashlib.sha1(script.encode()).hexdigest()
              for script in (ISSUE_SCRIPT, DEAD_LETTER_SCRIPT))


def _value(reply: object, symbol: str) -> str | None:
    if isinstance(reply, Exception):
        log.warning("cap key unreadable, ignoring it: %s", reply, extra={"symbol": symbol})
        return None
    return reply if isinstance(reply, str) else None


def _dead_letter_fields(entry_id: str, code: str, message: str,
                        original: dict[str, str] | object) -> list[str]:
    """``error``, ``error_code`` and ``source_id`` first, then the plan's original fields
    (an original field with one of those names is kept as ``orig_<name>``)."""
    flat = ["error", message, "error_code", code, "source_id", entry_id]
    for name, value in dict(original).items():  # type: ignore[call-overload]
        flat.extend((f"orig_{name}" if name in ("error", "error_code", "source_id")
                     else name, value))
    return flat
