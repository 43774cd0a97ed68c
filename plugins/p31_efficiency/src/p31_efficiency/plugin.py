"""Hook implementations: read every symbol's efficiency once per batch, hint every permit.

The plugin is active on the governor host only. Its configuration is read in
``on_configure``; an invalid value raises, and the host disables the plugin loudly.
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
        self.applied = Counter("p32_eff_apply_total",
                               "P3.1 efficiency hints applied to permits",
                               ["action", "reason"], registry=registry)
        self.factor = SymbolSeries("p32_eff_factor", "Latest P3.1 downsize factor per symbol",
                                   registry=registry)

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return PERMIT_FIELDS if self.config else ()

    @hookimpl
    def read_commands(self, host: str, symbols: Sequence[str]) -> list[tuple[str, ...]] | None:
        """The batch's efficiency hashes, read in the governor's own gate round trip."""
        if self.config is None or host != "governor":
            return None
        return self.reader.commands(symbols)

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
        if reads is not None and list(reads.symbols) == symbols:
            readings = self.reader.judge(reads.replies, now)
        else:
            readings = self.reader.read(redis, symbols, now)
        hints = SymbolFields()
        applied: collections.Counter[tuple[str, str]] = collections.Counter()
        factors = {}
        known = self._hints
        if len(known) > MAX_KNOWN_HINTS:
            known.clear()
        for symbol, reading in zip(symbols, readings, strict=True):
            entry = known.get(reading)
            if entry is None:
                hint = downsize_hint(reading, config)
                entry = known[reading] = (hint, hint_fields(reading, hint))
            hint, hints[symbol] = entry
            factors[symbol] = hint.factor
            applied[hint.action, hint.reason] += plans_per_symbol[symbol]
        for (action, reason), count in applied.items():
            self.applied.labels(action=action, reason=reason).inc(count)
        self.factor.update(factors)
        return hints

    @hookimpl
    def on_issue_permit(self, plan: Plan, batch: dict[str, dict[str, str]] | None
                        ) -> Mapping[str, str] | None:
        return batch[plan.symbol] if batch else None


plugin = EfficiencyPlugin()
