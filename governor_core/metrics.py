"""Per-symbol metric series that cost O(1) Python per tick, not per symbol.

A ``prometheus_client`` child costs about 2 µs per ``labels(...).set()`` (a lock and a
label lookup each); with five per-symbol series at 10⁴ symbols that was a tenth of the
allocation tick. :class:`SymbolSeries` instead keeps the tick's values in a plain dict and
builds the samples when Prometheus scrapes: the exposition (name, ``symbol`` label, type,
help text) is the same as a labelled Gauge or Counter's, minus the counters' ``_created``
samples.

Thread safety: the service thread replaces a gauge's dict wholesale, or updates it or a
counter's :class:`collections.Counter` in one C call; the scrape thread copies items in one
C call.
Both hold the GIL throughout, so a scrape sees a whole tick or the previous one for a
gauge; a counter scraped mid-update may show some symbols of the tick counted already.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class SymbolSeries(Collector):
    """One metric with a single label (``symbol`` by default), gauge or counter.

    Gauges: :meth:`set_all` replaces every value, so a symbol missing from the tick has no
    sample any more (no stale gauges); :meth:`update` sets some and keeps the rest.
    Counters: :meth:`inc_all` adds 1 per occurrence; counts are kept for every symbol ever
    seen, as labelled counters are.
    """

    def __init__(self, name: str, documentation: str, *, counter: bool = False,
                 label: str = "symbol", registry: CollectorRegistry) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.counter = counter
        self._values: dict[str, float] = {}
        self._counts: Counter[str] = Counter()
        registry.register(self)

    def set_all(self, values: Mapping[str, float]) -> None:
        """Gauge: the tick's value per symbol (copied in one C call)."""
        self._values = dict(values)

    def update(self, values: Mapping[str, float]) -> None:
        """Gauge: set these symbols' values and keep the others' (a batch that sees only
        some symbols, as the governor's)."""
        self._values.update(values)

    def inc_all(self, symbols: Iterable[str]) -> None:
        """Counter: one increment per symbol in ``symbols``."""
        self._counts.update(symbols)

    def value(self, symbol: str) -> float | None:
        """The current sample of ``symbol``, or ``None`` (tests, ``explain``)."""
        source = self._counts if self.counter else self._values
        return float(source[symbol]) if symbol in source else None

    def _family(self) -> Metric:
        kind = CounterMetricFamily if self.counter else GaugeMetricFamily
        return kind(self.name, self.documentation, labels=[self.label])

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        items = list((self._counts if self.counter else self._values).items())
        for symbol, value in items:
            family.add_metric([symbol], value)
        yield family
