"""Reading one cycle's inputs in two Redis round trips, and judging them (SPEC 4 fallbacks).

Round trips: exactly two per cycle, whatever the number of symbols.

1. **What exists**: the symbols are "those with a budget key", and listing keys by pattern
   from the client costs one ``SCAN`` round trip per ``COUNT`` keys, which grows with the
   keyspace. Instead a small Lua script lists them inside Redis (``KEYS``; a ``SCAN`` loop if
   ``KEYS`` is renamed away: ``governor_core/lua/list_keys.lua``). It goes in one pipeline
   with the portfolio ``HGETALL``, the regime ``XREVRANGE … COUNT 1`` and the cluster map
   ``HGETALL``. (The script is loaded at start; after a flushed script cache the
   listing costs one more round trip, once.)
2. **Their values**: one pipeline of ``HMGET``, a ``budget_usd``/``timestamp`` per budgeted
   symbol and a ``stress``/``alpha``/``timestamp`` per cluster those symbols map to (the
   service appends the plugins' ``read_commands`` to it). Skipped when the portfolio already
   decided that the cycle is skipped.

The price, stated plainly: the listing walks the whole keyspace server-side (O(keys) work,
about 6 ms per 4·10⁴ keys measured here), and Redis serves no other client meanwhile.
``KEYS`` rather than a ``SCAN`` loop, because inside a script both block the server for the
whole walk and ``KEYS`` does it in one pass. A platform with a much larger keyspace should
put the allocation inputs in their own Redis database. (An earlier version read the values
inside the script as well, in one round trip: the Lua calls and tables cost Redis twice what
the second round trip does, and it walked the keyspace a second time for the cluster stress
keys, which round trip 2 reads by name.)

A key deleted between the two round trips reads as missing, the fallback it would get a
moment later. Bad bytes (decoded to lone surrogates by the Redis layer, see
:func:`governor_core.redis_io.connect`) are malformed values like any other: a number or a
regime with one falls back, a budget key *name* with one is not a symbol (the listing skips
it), and a cluster map entry whose cluster id has one counts as no mapping (the id would
name a stress key and be written to the decision stream, and no encoder writes it). Every
number is :func:`~governor_core.parsing.parse_decimal` of the
:func:`~governor_core.parsing.trim`-med text (ASCII digits; surrounding ASCII whitespace
ignored). :func:`parse_listing` and :func:`parse_values` are pure: replies + ``now`` →
formula inputs, with every fallback named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from governor_core.allocation.formula import REGIMES, ClusterInput, SymbolInput
from governor_core.keys import (
    BUDGET_PREFIX,
    CLUSTER_MAP_KEY,
    MODE_KEY,
    PORTFOLIO_KEY,
    REGIME_STREAM,
    STRESS_PREFIX,
)
from governor_core.parsing import (
    FUTURE_SKEW_SEC,
    SYMBOL_RE,
    has_bad_bytes,
    is_fresh,
    parse_decimal,
    parse_signed_decimal,
    trim,
)
from governor_core.redis_io import Command
from governor_core.scripts import SCRIPTS
from governor_core.wire import Packed, bulk_column

SCAN_COUNT = 1000
BUDGET_FIELDS = ("budget_usd", "timestamp")
STRESS_FIELDS = ("stress", "alpha", "timestamp")
LIST_KEYS = SCRIPTS["list_keys"]


def listing_commands(read_cluster_map: bool) -> list[Command]:
    """Round trip 1; its replies go to :func:`parse_listing`."""
    commands: list[Command] = [
        LIST_KEYS.command((), (BUDGET_PREFIX + "*", SCAN_COUNT)),
        ("HGETALL", PORTFOLIO_KEY),
        ("XREVRANGE", REGIME_STREAM, "+", "-", "COUNT", "1"),
    ]
    if read_cluster_map:
        commands.append(("HGETALL", CLUSTER_MAP_KEY))
    # Last, whatever came before: the service reads the runtime mode from replies[-1].
    commands.append(("GET", MODE_KEY))
    return commands


@dataclass(frozen=True, slots=True)
class Listing:
    """What round trip 1 found. ``portfolio_problem`` set means: skip the cycle.

    ``symbols`` are the budgeted symbols in order, ``clusters`` each one's cluster (its own
    name where unmapped), ``stress_clusters`` the distinct clusters, sorted, ``unmapped``
    the symbols without a mapping.
    """

    equity_usd: float
    drawdown: float
    portfolio_problem: str | None
    regime: str | None
    symbols: tuple[str, ...]
    clusters: tuple[str, ...]
    stress_clusters: tuple[str, ...]
    unmapped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A cycle's judged inputs. ``portfolio_problem`` set means: skip the cycle.

    ``fallbacks`` lists every cycle-level fallback event as ``(data_source, subject)``: the
    regime once, each stale budget, each cluster whose stress or alpha is unavailable, each
    skipped symbol. ``unmapped`` are the symbols with no cluster mapping.
    """

    equity_usd: float
    drawdown: float
    portfolio_problem: str | None
    regime: str | None
    symbols: tuple[SymbolInput, ...]
    clusters: Mapping[str, ClusterInput]
    unmapped: tuple[str, ...]
    fallbacks: tuple[tuple[str, str], ...]


def _field(reply: object, name: str) -> str | None:
    return trim(_as_map(reply).get(name))


def _as_map(reply: object) -> dict[str, str]:
    if isinstance(reply, Mapping):
        return dict(reply)
    if isinstance(reply, list):  # a raw HGETALL reply: field, value, field, value…
        return dict(zip(reply[::2], reply[1::2], strict=False))
    return {}


def _fresh(ts_text: str | None, now: float, stale_sec: float) -> bool:
    return is_fresh(parse_decimal(ts_text), now, stale_sec)


_text = trim


def parse_listing(replies: Sequence[object], now: float, stale_sec: float,
                  cluster_map: Mapping[str, str] | None) -> Listing:
    """Judge the replies of :func:`listing_commands`.

    A reply that is an error (e.g. a key of the wrong type) counts as that input missing.
    """
    keys, portfolio, regime_reply = replies[0], replies[1], replies[2]
    if cluster_map is None:
        cluster_map = _cluster_map(replies[3]) if len(replies) > 3 else {}
    equity = parse_decimal(_field(portfolio, "equity_usd"))
    drawdown = parse_decimal(_field(portfolio, "drawdown"))
    problem = None
    if not _as_map(portfolio):
        problem = "missing"
    elif equity is None or equity <= 0 or drawdown is None or not 0.0 <= drawdown <= 1.0:
        problem = "malformed"
    elif not _fresh(_field(portfolio, "timestamp"), now, stale_sec):
        problem = "stale"

    prefix = len(BUDGET_PREFIX)
    names = sorted(key[prefix:] for key in keys if isinstance(key, str)) if isinstance(
        keys, list) else []
    fullmatch = SYMBOL_RE.fullmatch
    symbols = [name for name in names if fullmatch(name)]
    get = cluster_map.get
    clusters = [get(symbol) or symbol for symbol in symbols]
    unmapped = tuple(symbol for symbol in symbols if not get(symbol))
    return Listing(equity or 0.0, drawdown or 0.0, problem,
                   _regime(regime_reply, now, stale_sec), tuple(symbols), tuple(clusters),
                   tuple(sorted(set(clusters))), unmapped)


class ValueCommands:
    """Round trip 2 for a :class:`Listing`: ``HMGET`` per budget and per cluster stress key.

    Budgeted symbols barely change from one cycle to the next, so each key's command is
    encoded once and remembered (at most ``max_entries``; then the memory starts over).
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._budgets: dict[str, str] = {}
        self._stresses: dict[str, str] = {}

    def commands(self, listing: Listing) -> list[Packed]:
        budgets = self._encoded(self._budgets, listing.symbols, BUDGET_PREFIX, BUDGET_FIELDS)
        stresses = self._encoded(self._stresses, listing.stress_clusters, STRESS_PREFIX,
                                 STRESS_FIELDS)
        return [Packed(budgets.encode(), len(listing.symbols)),
                Packed(stresses.encode(), len(listing.stress_clusters))]

    def _encoded(self, memory: dict[str, str], names: Sequence[str], prefix: str,
                 fields: tuple[str, ...]) -> str:
        if len(memory) > self.max_entries:
            memory.clear()
        missing = [name for name in names if name not in memory]
        if missing:
            head = f"*{2 + len(fields)}\r\n$5\r\nHMGET\r\n"
            tail = "".join(bulk_column(fields))
            keys = bulk_column([prefix + name for name in missing])
            memory.update(zip(missing, [f"{head}{key}{tail}" for key in keys], strict=True))
        return "".join(map(memory.__getitem__, names))


def _decimal_column(texts: Sequence[object]) -> list[float] | None:
    """``[parse_decimal(t) for t in texts]`` when every text is a plain decimal ("123.45"),
    checked and converted a column at a time; ``None`` when any is not (the caller then
    judges one by one)."""
    try:
        joined = "\n".join(texts)  # type: ignore[arg-type]  # TypeError on a non-string
        if not (joined.isascii() and joined.replace(".", "").replace("\n", "").isdigit()):
            return None if texts else []
        values = list(map(float, texts))  # ValueError on "", "." or two dots
    except (TypeError, ValueError):
        return None
    return values if math.isfinite(sum(values)) else None


def parse_values(listing: Listing, replies: Sequence[object], now: float,
                 stale_sec: float) -> Snapshot:
    """Judge round trip 2's replies (budgets, then stresses, as :class:`ValueCommands`
    sends them) into the formula's inputs, naming every fallback.

    A listing with a portfolio problem skips the cycle: round trip 2 is not made, and the
    snapshot has no symbols and only the portfolio and regime fallbacks (``replies`` is
    ignored).
    """
    fallbacks: list[tuple[str, str]] = []
    if listing.regime is None:
        fallbacks.append(("regime", "-"))
    if listing.portfolio_problem:
        return Snapshot(listing.equity_usd, listing.drawdown, listing.portfolio_problem,
                        listing.regime, (), {}, listing.unmapped,
                        (("portfolio", listing.portfolio_problem), *fallbacks))
    count = len(listing.symbols)
    symbols = _judge_budgets(listing, replies[:count], now, stale_sec, fallbacks)

    stresses = dict(zip(listing.stress_clusters, replies[count:], strict=True))
    clusters = {}
    for cluster in sorted({item.cluster_id for item in symbols if item.budget_fresh}):
        reply = stresses.get(cluster)
        stress_text, alpha_text, ts_text = (map(_text, reply) if isinstance(reply, list)
                                            and len(reply) == 3 else (None, None, None))
        fresh = _fresh(ts_text, now, stale_sec)
        stress = parse_decimal(stress_text) if fresh else None
        if stress is not None and not 0.0 <= stress <= 1.0:
            stress = None
        alpha = parse_signed_decimal(alpha_text) if fresh else None
        if stress is None:
            fallbacks.append(("cluster_stress", cluster))
        if alpha is None:
            fallbacks.append(("alpha", cluster))
        clusters[cluster] = ClusterInput(stress, alpha)

    unmapped = set(listing.unmapped)
    return Snapshot(listing.equity_usd, listing.drawdown, listing.portfolio_problem,
                    listing.regime, tuple(symbols), clusters,
                    tuple(item.symbol for item in symbols if item.symbol in unmapped)
                    if unmapped else (), tuple(fallbacks))


def _judge_budgets(listing: Listing, replies: Sequence[object], now: float,
                   stale_sec: float, fallbacks: list[tuple[str, str]]) -> list[SymbolInput]:
    """Each budgeted symbol's input; a missing or malformed budget skips the symbol, a
    stale one is kept as such (both are fallbacks). Columns of plain decimals, the usual
    case, are judged a column at a time; anything else one symbol at a time, by the same
    rules."""
    budgets = stamps = None
    if all(type(reply) is list and len(reply) == 2 for reply in replies):
        budgets = _decimal_column([reply[0] for reply in replies])
        stamps = _decimal_column([reply[1] for reply in replies])
    if budgets is not None and stamps is not None:
        fresh = [-FUTURE_SKEW_SEC <= now - ts <= stale_sec for ts in stamps]
        fallbacks.extend(("budget", symbol) for symbol, ok in zip(
            listing.symbols, fresh, strict=True) if not ok)
        return list(map(SymbolInput._make, zip(listing.symbols, listing.clusters, budgets,
                                                fresh, strict=True)))
    inputs = []
    for symbol, cluster, reply in zip(listing.symbols, listing.clusters, replies,
                                      strict=True):
        budget_text, ts_text = (map(_text, reply) if isinstance(reply, list)
                                and len(reply) == 2 else (None, None))
        budget = parse_decimal(budget_text)
        if budget is None or budget < 0:
            fallbacks.append(("budget", symbol))
            continue
        fresh = _fresh(ts_text, now, stale_sec)
        if not fresh:
            fallbacks.append(("budget", symbol))
        inputs.append(SymbolInput(symbol, cluster, budget, fresh))
    return inputs


def _regime(reply: object, now: float, stale_sec: float) -> str | None:
    """The newest regime entry's ``regime`` if fresh (by its ``ts``) and known, else
    ``None``."""
    if not isinstance(reply, list) or not reply:
        return None
    entry = reply[0]
    fields = entry[1] if isinstance(entry, list | tuple) and len(entry) == 2 else None
    fields = _as_map(fields)
    if not _fresh(trim(fields.get("ts")), now, stale_sec):
        return None
    regime = (trim(fields.get("regime")) or "").upper()
    return regime if regime in REGIMES else None


def _cluster_map(reply: object) -> dict[str, str]:
    """The cluster map hash, without the entries whose cluster id is not text or has bad
    bytes (their symbols are then unmapped: each its own cluster, counted and logged)."""
    mapping = _as_map(reply)
    try:
        if "".join(mapping.values()).isascii():  # the usual map: checked in one call
            return mapping
    except TypeError:
        pass
    return {symbol: cluster for symbol, cluster in mapping.items()
            if type(cluster) is str and not has_bad_bytes(cluster)}
