"""Fallbacks in the log: a WARNING when one starts and when it ends, not every cycle.

A fallback is a ``(data source, symbol)`` pair: a target computed with that source on its
default (``budget``, ``regime``, ``cluster_stress``, ``alpha``, as the decision entry's
``fallbacks`` field lists them), or a symbol skipped because its budget is missing or
malformed (``budget``). :class:`FallbackLog` remembers the pairs of the last published
cycle; each cycle logs, per data source, the symbols whose fallback started and those whose
fallback ended (one line each, naming up to :data:`LOG_NAMES` symbols and counting the
rest), so a regime that goes missing gives one line at 10⁴ symbols, and a cluster whose
alpha is never published gives one line when the service starts, not one a cycle. The
counter ``p29_stale_fallback_total{data_source}`` still counts every use.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

from governor_core.allocation.model import AllocationTarget

log = logging.getLogger("quantum.allocation")

#: How many symbols one log line names.
LOG_NAMES = 20


def fallback_pairs(targets: Iterable[AllocationTarget],
                   skipped: Iterable[str]) -> set[tuple[str, str]]:
    """The cycle's ``(data source, symbol)`` fallbacks: the targets' and the skipped
    symbols' (``budget``)."""
    pairs = {(source, target.symbol) for target in targets if target.fallbacks
             for source in target.fallbacks}
    pairs.update(("budget", symbol) for symbol in skipped)
    return pairs


class FallbackLog:
    def __init__(self) -> None:
        self.active: set[tuple[str, str]] = set()

    def update(self, pairs: set[tuple[str, str]]) -> None:
        """Log what started and what ended since the last published cycle."""
        started, ended = pairs - self.active, self.active - pairs
        self.active = pairs
        for verb, changed in (("started", started), ("ended", ended)):
            by_source: dict[str, list[str]] = defaultdict(list)
            for source, symbol in changed:
                by_source[source].append(symbol)
            for source, symbols in sorted(by_source.items()):
                symbols.sort()
                more = (f" and {len(symbols) - LOG_NAMES} more"
                        if len(symbols) > LOG_NAMES else "")
                log.warning("fallback %s: data source %s for %d symbol(s): %s%s", verb,
                            source, len(symbols), ", ".join(symbols[:LOG_NAMES]), more,
                            extra={"data_source": source, "count": len(symbols)})
