"""Hook implementations: read each symbol's efficiency at most once per ``P31_REREAD_SEC``,
hint every permit.

The plugin is active on the governor host only. Its configuration is read in
``on_configure``; an invalid value raises, and the host disables the plugin loudly.

**Re-reading (the decision).** A batch names the hashes of its symbols that were last read
``P31_REREAD_SEC`` ago or more (default 1 s) in the governor's gate round trip; the others
are judged again, against the batch's clock, from the texts read last time. So staleness
(``P31_EFF_TTL_SEC``) is judged on time, and a rewritten hash is seen at most
``P31_REREAD_SEC`` late (a producer that writes every few seconds or minutes cannot tell;
the hint is a fail-open downsize hint). Why: at 1,000 distinct symbols a 500-plan batch
names ~500 symbols, so reading every batch costs one ``HMGET`` per plan, in Redis and in
parsing its reply, and the plugin cost 25% of the governor's throughput against SPEC 7's
15% (``bench/bench_governor.py --symbols 1000``); at 50 symbols it reads once per ten
plans. ``P31_REREAD_SEC=0`` reads every batch, as before.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from governor_core import hookimpl
from governor_core.plugin_api import (
    EfficiencyReader,
    EfficiencyReading,
    EnvReader,
    Plan,
    Reads,
    SymbolFields,
    SymbolSeries,
)
from p31_efficiency.formula import (
    PERMIT_FIELDS,
    DownsizeHint,
    EfficiencyConfig,
    downsize_hint,
    hint_fields,
)

#: Distinct readings whose hint is kept between batches (then the memory starts over).
MAX_KNOWN_HINTS = 10_000


class EfficiencyPlugin:
    def __init__(self) -> None:
        self.config: EfficiencyConfig | None = None

    @hookimpl
    def on_configure(self, host: str, env: Mapping[str, str],
                     registry: CollectorRegistry) -> None:
        if host != "governor":
            # Nothing to do there. The state is left alone: one process may build both hosts
            # (``quantum-governor demo``, ``plugins``), and the governor's must stay active.
            return
        self.config = EfficiencyConfig.from_env(EnvReader(env))
        self.reader = EfficiencyReader(min_conf=self.config.min_conf,
                                       stale_sec=self.config.eff_ttl_sec)
        # A reading's hint and fields, kept between batches: the same mapping object for
        # the same reading lets the host reuse its check and encoding of it.
        self._hints: dict[EfficiencyReading, tuple[DownsizeHint, dict[str, str]]] = {}
        #: symbol -> (when its hash was read, the texts read): what batches re-judge
        self._recent: dict[str, tuple[float, object]] = {}
        #: symbol -> (judged at, kept until, its hint and fields): a verdict of texts not
        #: read again, kept while the clock stays in the window it holds for
        self._verdicts: dict[str, tuple[float, float, tuple[DownsizeHint, dict[str, str]]]] = {}
        #: the last read_commands: its batch's symbols and those it asked to read
        self._asked: tuple[tuple[str, ...], list[str]] | None = None
        self.applied = Counter("p32_eff_apply_total",
                               "P3.1 efficiency hints applied to permits",
                               ["action", "reason"], registry=registry)
        self.factor = SymbolSeries("p32_eff_factor", "Latest P3.1 downsize factor per symbol",
                                   registry=registry)

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return PERMIT_FIELDS if self.config else ()

    @hookimpl
    def read_commands(self, host: str, symbols: Sequence[str],
                      now: float) -> list[tuple[str, ...]] | None:
        """The efficiency hashes of the batch that are due to be read again (see the module
        docstring), read in the governor's own gate round trip."""
        if self.config is None or host != "governor":
            return None
        recent, reread = self._recent, self.config.reread_sec
        if len(recent) > self.reader.max_entries:
            recent.clear()  # bounded: every symbol is due again
            self._verdicts.clear()
        due = []
        for symbol in symbols:
            last = recent.get(symbol)
            if last is None or not 0.0 <= now - last[0] < reread:
                due.append(symbol)
        self._asked = (tuple(symbols), due)
        return self.reader.commands(due)

    @hookimpl
    def on_permit_batch(self, plans: Sequence[Plan], redis: Any, now: float,
                        reads: Reads | None) -> SymbolFields | None:
        """One hint per symbol of the batch, from the reads the host made for it
        (``read_commands``), or else from one pipelined read of its own.

        The hint depends on the symbol only, so it is returned as
        :class:`~governor_core.hookspecs.SymbolFields`: the host adds it to every plan of
        the symbol without calling ``on_issue_permit`` per plan.

        ``p32_eff_apply_total`` is counted here, one per plan, because the host calls
        ``on_issue_permit`` for every plan of the batch; counting per symbol keeps the
        per-plan path to a dict lookup.
        """
        config = self.config
        if config is None:
            return None
        plans_per_symbol = collections.Counter(plan.symbol for plan in plans)
        symbols = sorted(plans_per_symbol)
        hints = SymbolFields()
        applied: collections.Counter[tuple[str, str]] = collections.Counter()
        factors = {}
        for symbol, (hint, fields) in zip(symbols, self._entries(symbols, reads, redis, now),
                                          strict=True):
            hints[symbol] = fields
            factors[symbol] = hint.factor
            applied[hint.action, hint.reason] += plans_per_symbol[symbol]
        for (action, reason), count in applied.items():
            self.applied.labels(action=action, reason=reason).inc(count)
        self.factor.update(factors)
        return hints

    def _entries(self, symbols: list[str], reads: Reads | None, redis: Any,
                 now: float) -> list[tuple[DownsizeHint, dict[str, str]]]:
        """Each symbol's hint and fields at ``now``: from the texts just read for those
        that were due, else from those read last time (their verdict kept while it holds,
        :func:`~governor_core.efficiency.steady_until`, else judged again). Without the
        reads asked for (the host dropped them, or called no ``read_commands``) every hash
        is read here."""
        asked, self._asked = self._asked, None
        recent, verdicts = self._recent, self._verdicts
        if asked is None or asked[0] != tuple(symbols) or (
                asked[1] and (reads is None or len(reads.replies) != len(asked[1]))):
            for symbol in symbols:  # read again next batch, through the host
                recent.pop(symbol, None)
                verdicts.pop(symbol, None)
            return [self._hint(reading) for reading in self.reader.read(redis, symbols, now)]
        if asked[1]:
            for symbol, reply in zip(asked[1], reads.replies, strict=True):
                recent[symbol] = (now, reply)
                verdicts.pop(symbol, None)
        entries: list[tuple[DownsizeHint, dict[str, str]] | None] = []
        judge: list[int] = []
        for index, symbol in enumerate(symbols):
            kept = verdicts.get(symbol)
            if kept is not None and kept[0] <= now < kept[1]:
                entries.append(kept[2])
            else:
                entries.append(None)
                judge.append(index)
        if judge:
            names = [symbols[index] for index in judge]
            until: list[float] = []
            readings = self.reader.judge([recent[name][1] for name in names], now, names,
                                         until)
            for index, name, reading, end in zip(judge, names, readings, until, strict=True):
                entry = entries[index] = self._hint(reading)
                verdicts[name] = (now, end, entry)
        return entries  # type: ignore[return-value]  # every None was filled

    def _hint(self, reading: EfficiencyReading) -> tuple[DownsizeHint, dict[str, str]]:
        """A reading's hint and fields, the same mapping object for the same reading (the
        host reuses its check and encoding of it)."""
        known = self._hints
        entry = known.get(reading)
        if entry is None:
            if len(known) > MAX_KNOWN_HINTS:
                known.clear()
            hint = downsize_hint(reading, self.config)
            entry = known[reading] = (hint, hint_fields(reading, hint))
        return entry

    @hookimpl
    def on_issue_permit(self, plan: Plan, batch: dict[str, dict[str, str]] | None
                        ) -> Mapping[str, str] | None:
        return batch[plan.symbol] if batch else None


plugin = EfficiencyPlugin()
