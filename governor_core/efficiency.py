"""Reading a P3.1 efficiency hash (``quantum:capital:efficiency:{symbol}``), for plugins.

Both P3.1 plugins judge efficiency data by the same rules, so the rules live here once.
:func:`read_efficiency` is pure and total: any hash contents give a reading with one reason:

* ``missing_eff``: no hash, or none of ``efficiency_score``, ``confidence``, ``ts``;
* ``invalid_eff``: malformed: no ``efficiency_score`` beside a ``confidence`` or ``ts``
  (a producer naming the score otherwise), score, confidence or ``ts`` not a plain
  decimal number, score or confidence outside [0, 1], ``ts`` missing, or ``ts`` more than
  :data:`FUTURE_SKEW_SEC` ahead of ``now`` (a clock or unit error, e.g. milliseconds);
* ``stale_eff``: ``now - ts`` greater than the staleness limit;
* ``low_conf``: confidence below the minimum (a missing confidence counts as 0);
* ``ok``: usable.

Checked in that order: malformed data is reported as malformed even if it is also old.
Numbers follow :func:`~governor_core.parsing.parse_decimal` after
:func:`~governor_core.parsing.trim` (surrounding ASCII whitespace is ignored): ASCII digits
only, so a ``ts`` of ``١٢٣`` or a value with a byte that is not UTF-8 (decoded to a lone
surrogate by the Redis layer) is ``invalid_eff``. A bad byte in a field *name* makes that
field one the rules do not read: beside a ``confidence`` or ``ts`` it is ``invalid_eff``.
``redis_error`` is the plugins' own reason for a failed read (:data:`REDIS_ERROR`).

Only the three fields are read (one ``HMGET`` per symbol), so "a hash with other fields"
is seen through them: a ``confidence`` or ``ts`` without a score is ``invalid_eff``, and
:class:`EfficiencyReader` logs which of the three fields it found, at most once per symbol
per :data:`LOG_INTERVAL_SEC`. A hash holding none of the three (only, say, ``score`` and
``mode``) reads as ``missing_eff``: telling it from an absent key would cost an ``HLEN``
per symbol in every governor batch, for a producer that also forgot ``ts``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from redis.exceptions import RedisError

from governor_core.keys import EFFICIENCY_PREFIX
from governor_core.parsing import FUTURE_SKEW_SEC, parse_decimal, trim
from governor_core.redis_io import execute_commands

REASONS = ("ok", "missing_eff", "stale_eff", "low_conf", "invalid_eff", "redis_error")
#: A symbol's hash without a score is logged at most once in this many seconds (of ``now``).
LOG_INTERVAL_SEC = 300.0

log = logging.getLogger("quantum.efficiency")


class EfficiencyReading(NamedTuple):
    """What the efficiency hash says. ``score``/``confidence`` are None when unusable.

    A named tuple (immutable, hashable, cheap to build: 10⁴ readings a shadow loop)."""

    reason: str
    score: float | None = None
    confidence: float | None = None
    stale: bool = False

    @property
    def usable(self) -> bool:
        return self.reason == "ok"


MISSING = EfficiencyReading("missing_eff")
INVALID = EfficiencyReading("invalid_eff")
REDIS_ERROR = EfficiencyReading("redis_error")
#: The recorded reasons a replay judges again (``EfficiencyReader.recorded``).
REJUDGED_REASONS = ("ok", "low_conf")
#: The fields the rules use; plugins read only these (``HMGET``).
EFFICIENCY_FIELDS = ("efficiency_score", "confidence", "ts")


#: Decimals a score or confidence is judged at: those the permit records (``"0.4500"``), so
#: the record is the exact input of the decision (``what-if`` replays it exactly, and a
#: score of ``0.44996`` recorded as ``0.4500`` is never a downsize below 0.45).
UNIT_DECIMALS = 4


def _unit(text: str | None) -> float | None:
    value = parse_decimal(trim(text))
    if value is None or not 0.0 <= value <= 1.0:
        return None
    return round(value, UNIT_DECIMALS)


def read_efficiency(fields: Mapping[str, str] | None, now: float, *, min_conf: float,
                    stale_sec: float) -> EfficiencyReading:
    if not fields:
        return MISSING
    return read_efficiency_values(fields.get("efficiency_score"), fields.get("confidence"),
                                  fields.get("ts"), now, min_conf, stale_sec)


def read_efficiency_values(score_text: str | None, confidence_text: str | None,
                           ts_text: str | None, now: float, min_conf: float,
                           stale_sec: float) -> EfficiencyReading:
    """:func:`read_efficiency` on the three fields as ``HMGET`` returns them (``None`` for
    an absent field): the same rules, without building a mapping per symbol."""
    if score_text is None:
        return MISSING if confidence_text is None and ts_text is None else INVALID
    return _judge(_parse(score_text, confidence_text, ts_text), now, min_conf, stale_sec)


Parsed = tuple[float | None, float | None, float | None]


def _parse(score_text: str, confidence_text: str | None, ts_text: str | None) -> Parsed:
    """The three values as numbers, ``None`` where malformed (the part that needs no clock)."""
    return (_unit(score_text), 0.0 if confidence_text is None else _unit(confidence_text),
            parse_decimal(trim(ts_text)))


def _judge(parsed: Parsed, now: float, min_conf: float, stale_sec: float) -> EfficiencyReading:
    score, confidence, ts = parsed
    if score is None or confidence is None or ts is None or ts > now + FUTURE_SKEW_SEC:
        return EfficiencyReading("invalid_eff", score, confidence)
    if now - ts > stale_sec:
        return EfficiencyReading("stale_eff", score, confidence, True)
    if confidence < min_conf:
        return EfficiencyReading("low_conf", score, confidence)
    return EfficiencyReading("ok", score, confidence)


def steady_until(parsed: Parsed, now: float, stale_sec: float) -> float:
    """Until when (exclusive) :func:`_judge` of ``parsed`` gives the verdict it gives at
    ``now`` (for clock times from ``now`` on): a fresh reading turns stale after ``ts +
    stale_sec``, one too far in the future becomes fresh at ``ts - FUTURE_SKEW_SEC``;
    malformed and stale readings never change."""
    score, confidence, ts = parsed
    if score is None or confidence is None or ts is None:
        return math.inf
    if ts > now + FUTURE_SKEW_SEC:
        return ts - FUTURE_SKEW_SEC
    return ts + stale_sec if now - ts <= stale_sec else math.inf


def read_efficiencies(redis: Any, symbols: list[str], now: float, *, min_conf: float,
                      stale_sec: float) -> list[EfficiencyReading]:
    """Every symbol's reading, in order, from one round trip (one ``HMGET`` per symbol).

    A failed read gives every symbol :data:`REDIS_ERROR`; a key that is not a hash gives
    ``invalid_eff``. Both P3.1 plugins read this way (through :class:`EfficiencyReader`).
    """
    return EfficiencyReader(min_conf=min_conf, stale_sec=stale_sec).read(redis, symbols, now)


class EfficiencyReader:
    """:func:`read_efficiencies` for a plugin that reads again and again (every governor
    batch, every shadow loop): the same rules and results, with each symbol's last field
    texts and their parsed numbers remembered between reads.

    What repeats is a symbol's hash between two writes of its producer, so the memory is
    one entry per symbol (texts and numbers), used when the texts read are equal to the
    remembered ones; only the rules that depend on ``now`` (staleness, future skew,
    confidence) run each time. A memory keyed on the texts themselves (up to 100,000 of
    them) grew with every rewrite of a ``ts``: measured over 120 simulated seconds of 1,000
    symbols whose ``ts`` is rewritten every second, it held 35.8 MiB at its peak, and at a
    live rate (100 plans/s) none of it was ever hit; keyed per symbol it stays at 0.8 MiB
    with the same hit rates (static hashes: 99.9% drained at 15,000 plans/s, 91.7% live;
    ``ts`` rewritten each second: 93.3% drained, 0% live). It is kept because it pays where
    reads repeat: a remembered reading costs about 0.4 µs a symbol, a parsed one about
    1.3 µs (``judge`` timed over 400 symbols), about 1.5% of a plan's cost (66 µs at
    15,000 permits/s) when each plan names a symbol of its own. At most ``max_entries``
    symbols are remembered, then the memory starts over: 20,000 by default, twice the
    largest universe benchmarked (10⁴ symbols an allocation tick), about 8 MiB at most.

    A plugin reads either in its own round trip (:meth:`read`) or in its host's: it names
    the reads with :meth:`commands` (from its ``read_commands`` hook) and judges the
    replies the host hands back with :meth:`judge`.
    """

    def __init__(self, *, min_conf: float, stale_sec: float,
                 max_entries: int = 20_000) -> None:
        self.min_conf, self.stale_sec, self.max_entries = min_conf, stale_sec, max_entries
        # symbol (or reply position) -> the texts last read for it and their parse
        self._parsed: dict[str, tuple[list[str | None], Parsed]] = {}
        self._tuples: dict[str, tuple[str, ...]] = {}  # symbol -> its HMGET
        self._symbols: Sequence[str] = ()  # of the last commands(), for the log lines
        self._logged: dict[str, float] = {}  # symbol -> when its hash was last logged

    @property
    def remembered(self) -> int:
        """How many symbols' parsed texts are remembered now (at most ``max_entries``)."""
        return len(self._parsed)

    def commands(self, symbols: Sequence[str]) -> list[tuple[str, ...]]:
        """One ``HMGET`` per symbol, for a host's ``read_commands`` round trip; the replies
        go to :meth:`judge`."""
        return self._hmgets(symbols)

    def _hmgets(self, symbols: Sequence[str]) -> list[tuple[str, ...]]:
        """The same tuple object for a symbol every time (hosts remember its encoding by
        identity)."""
        tuples = self._tuples
        if len(tuples) > self.max_entries:
            tuples.clear()
        self._symbols = symbols
        return [tuples.get(symbol) or tuples.setdefault(
            symbol, ("HMGET", EFFICIENCY_PREFIX + symbol, *EFFICIENCY_FIELDS))
            for symbol in symbols]

    def read(self, redis: Any, symbols: list[str], now: float) -> list[EfficiencyReading]:
        """Read and judge in one round trip of the caller's own (the fallback when a host
        did not read for the plugin)."""
        try:
            replies = execute_commands(redis, self._hmgets(symbols))
        except (RedisError, OSError):
            return [REDIS_ERROR] * len(symbols)
        return self.judge(replies, now)

    def judge(self, replies: Sequence[object], now: float,
              symbols: Sequence[str] | None = None,
              until: list[float] | None = None) -> list[EfficiencyReading]:
        """The readings of :meth:`commands`' replies, in order (a refused command, e.g.
        ``WRONGTYPE`` for a key that is not a hash, is ``invalid_eff``).

        A hash with a ``confidence`` or ``ts`` but no ``efficiency_score`` is logged (a
        warning naming the key and the fields found), at most once per symbol per
        :data:`LOG_INTERVAL_SEC`; the replies are those of ``symbols`` (by default the
        symbols of the last :meth:`commands` call, whose replies these are). With an
        ``until`` list, each reading's :func:`steady_until` is appended to it: a caller may
        keep the verdict until then instead of judging the same texts again."""
        memory, max_entries = self._parsed, self.max_entries
        if symbols is not None:
            self._symbols = symbols
        symbols = self._symbols
        # Remembered per symbol; replies that are not those of the last commands() are
        # remembered per position (harmless: a memory is used only for equal texts).
        slots = symbols if len(symbols) == len(replies) else [f"#{i}" for i in
                                                              range(len(replies))]
        min_conf, stale_sec = self.min_conf, self.stale_sec
        readings = []
        append = readings.append
        for slot, reply in zip(slots, replies, strict=True):
            if type(reply) is not list or len(reply) != 3:
                # WRONGTYPE: the key is not a hash (malformed data); any other refusal
                # (NOPERM of an ACL, OOM…) is Redis's, not the data's
                append(REDIS_ERROR if isinstance(reply, Exception) and not str(
                    reply).startswith("WRONGTYPE") else INVALID)
                if until is not None:
                    until.append(0.0)  # judge again: a refusal may pass next time
                continue
            if reply[0] is None:
                if reply[1] is None and reply[2] is None:
                    append(MISSING)
                else:
                    append(INVALID)
                    self._no_score(len(readings) - 1, len(replies), tuple(reply), now)
                if until is not None:
                    until.append(math.inf)  # the same texts give the same verdict
                continue
            last = memory.get(slot)
            if last is not None and last[0] == reply:
                parsed = last[1]
            else:
                parsed = _parse(*reply)
                if len(memory) >= max_entries:
                    memory.clear()
                memory[slot] = (reply.copy(), parsed)  # a caller may reuse its list
            append(_judge(parsed, now, min_conf, stale_sec))
            if until is not None:
                until.append(steady_until(parsed, now, stale_sec))
        return readings

    def recorded(self, reason: str, score_text: str | None, confidence_text: str | None,
                 stale: bool) -> EfficiencyReading:
        """The reading a permit or proposal records (its reason, ``eff_score``,
        ``eff_confidence``, ``eff_stale``), judged again by these rules when it was ``ok``
        or ``low_conf`` (:data:`REJUDGED_REASONS`): what ``what-if`` replays.

        The record has no reading age: a reading that was fresh when it was recorded is
        judged fresh (``ts`` = ``now``), and a stale one stays ``stale_eff``, so a change of
        the staleness setting cannot be replayed; missing, malformed or unreadable data
        stays so under any setting."""
        if reason in REJUDGED_REASONS and score_text:
            return self.judge([[score_text, confidence_text or None, "0"]], 0.0)[0]
        return EfficiencyReading(reason, stale=stale)

    def _no_score(self, index: int, count: int, texts: tuple[str | None, ...],
                  now: float) -> None:
        symbols = self._symbols
        symbol = symbols[index] if len(symbols) == count else f"#{index}"
        logged = self._logged
        last = logged.get(symbol)
        if last is not None and 0 <= now - last < LOG_INTERVAL_SEC:
            return
        if len(logged) > self.max_entries:
            logged.clear()
        logged[symbol] = now
        found = [name for name, text in zip(EFFICIENCY_FIELDS, texts, strict=True)
                 if text is not None]
        log.warning("efficiency hash %s%s has no efficiency_score but has %s: invalid_eff "
                    "(does its producer name the score otherwise?)", EFFICIENCY_PREFIX,
                    symbol, ", ".join(found), extra={"symbol": symbol})
