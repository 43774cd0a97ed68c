"""Reading one cycle's inputs in one Redis round trip, and judging them (SPEC 4 fallbacks).

Round trips: exactly one per cycle, whatever the number of symbols. The symbols are "those
with a budget key", and listing keys by pattern from the client costs one ``SCAN`` round trip
per ``COUNT`` keys, which grows with the keyspace. Instead a small Lua script lists the keys
inside Redis (``KEYS``; a ``SCAN`` loop if ``KEYS`` is renamed away) and returns every budget
hash's ``budget_usd``/``timestamp`` and every cluster stress hash's
``stress``/``alpha``/``timestamp`` as two flat arrays. It is sent in the same pipeline as
the portfolio ``HGETALL``, the regime ``XREVRANGE … COUNT 1`` and the cluster map ``HGETALL``
(and a ``SCRIPT LOAD`` first, so a flushed script cache never costs an extra trip).

The price, stated plainly: the script walks the whole keyspace server-side (O(keys) work,
about 6 ms per pattern per 4·10⁴ keys measured here), and Redis serves no other client
meanwhile. ``KEYS`` rather than a ``SCAN`` loop, because inside a script both block the
server for the whole walk and ``KEYS`` does it in one pass; flat arrays rather than a row
per key, because converting 10⁴ small Lua tables was half of the script's time. For the
sizes this service targets (10⁴ symbols) the read is about 40 ms; a platform with a much
larger keyspace should put the allocation inputs in their own Redis database.

:func:`parse_snapshot` is pure: replies + ``now`` → formula inputs, with every fallback named.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from governor_core.allocation.formula import REGIMES, ClusterInput, SymbolInput
from governor_core.plans import parse_decimal, parse_signed_decimal
from governor_core.redis_io import Command

PORTFOLIO_KEY = "quantum:state:portfolio"
BUDGET_PREFIX = "quantum:portfolio:budget:"
STRESS_PREFIX = "quantum:cluster:stress:"
REGIME_STREAM = "quantum:stream:regime.state"
CLUSTER_MAP_KEY = "quantum:config:symbol.cluster"
#: Symbols as plans name them (SPEC 3.1); a budget key with any other suffix is ignored, so
#: no odd suffix can make a target key collide with another key family.
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,32}")
#: A timestamp further ahead than this is a clock or unit error: treated as stale.
FUTURE_SKEW_SEC = 30.0
SCAN_COUNT = 1000
BUDGET_FIELDS = ("budget_usd", "timestamp")
STRESS_FIELDS = ("stress", "alpha", "timestamp")

# ARGV: budget pattern, stress pattern, SCAN COUNT. Returns {budget rows, stress rows}, each
# flat: key, then its HMGET values (false for a missing field), key, values… A key that is
# not a hash gives false for every value.
SNAPSHOT_SCRIPT = """
local function list(pattern)
  local ok, keys = pcall(redis.call, 'KEYS', pattern)
  if ok then return keys end
  keys = {}
  local cursor = '0'
  repeat
    local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', ARGV[3])
    cursor = page[1]
    for _, key in ipairs(page[2]) do keys[#keys + 1] = key end
  until cursor == '0'
  return keys
end
local fields = {{'budget_usd', 'timestamp'}, {'stress', 'alpha', 'timestamp'}}
local out = {}
for p = 1, 2 do
  local names, width = fields[p], #fields[p]
  local rows, n = {}, 0
  for _, key in ipairs(list(ARGV[p])) do
    local values = redis.pcall('HMGET', key, unpack(names))
    rows[n + 1] = key
    local ok = type(values) == 'table' and not values.err
    for i = 1, width do rows[n + 1 + i] = ok and values[i] or false end
    n = n + 1 + width
  end
  out[p] = rows
end
return out
"""
SNAPSHOT_SHA = hashlib.sha1(SNAPSHOT_SCRIPT.encode()).hexdigest()


def snapshot_commands(read_cluster_map: bool) -> list[Command]:
    """The one pipeline a cycle reads with; replies go to :func:`parse_snapshot` (minus
    the first, the ``SCRIPT LOAD``)."""
    commands: list[Command] = [
        ("SCRIPT", "LOAD", SNAPSHOT_SCRIPT),
        ("EVALSHA", SNAPSHOT_SHA, "0", BUDGET_PREFIX + "*", STRESS_PREFIX + "*", SCAN_COUNT),
        ("HGETALL", PORTFOLIO_KEY),
        ("XREVRANGE", REGIME_STREAM, "+", "-", "COUNT", "1"),
    ]
    if read_cluster_map:
        commands.append(("HGETALL", CLUSTER_MAP_KEY))
    return commands


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
    if isinstance(reply, Mapping):
        value = reply.get(name)
    elif isinstance(reply, list):  # a raw HGETALL reply: field, value, field, value…
        value = dict(zip(reply[::2], reply[1::2], strict=False)).get(name)
    else:
        return None
    return value.strip() if isinstance(value, str) else None


def _as_map(reply: object) -> dict[str, str]:
    if isinstance(reply, Mapping):
        return dict(reply)
    if isinstance(reply, list):
        return dict(zip(reply[::2], reply[1::2], strict=False))
    return {}


def _fresh(ts_text: str | None, now: float, stale_sec: float) -> bool:
    ts = parse_decimal(ts_text)
    return ts is not None and -FUTURE_SKEW_SEC <= now - ts <= stale_sec


def _rows(flat: object, width: int) -> zip:
    """A flat script reply (key, value, value…) as rows of ``width``; malformed → none."""
    if not isinstance(flat, list) or len(flat) % width:
        return zip()
    return zip(*[flat[i::width] for i in range(width)], strict=True)


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) else None


def parse_snapshot(replies: Sequence[object], now: float, stale_sec: float,
                   cluster_map: Mapping[str, str] | None) -> Snapshot:
    """Judge the replies of :func:`snapshot_commands` (without the ``SCRIPT LOAD`` reply).

    A reply that is an error (e.g. a key of the wrong type) counts as that input missing.
    """
    scanned, portfolio, regime_reply = replies[0], replies[1], replies[2]
    if cluster_map is None:
        cluster_map = _as_map(replies[3]) if len(replies) > 3 else {}
    fallbacks: list[tuple[str, str]] = []

    equity = parse_decimal(_field(portfolio, "equity_usd"))
    drawdown = parse_decimal(_field(portfolio, "drawdown"))
    problem = None
    if not _as_map(portfolio):
        problem = "missing"
    elif equity is None or equity <= 0 or drawdown is None or not 0.0 <= drawdown <= 1.0:
        problem = "malformed"
    elif not _fresh(_field(portfolio, "timestamp"), now, stale_sec):
        problem = "stale"
    if problem:
        fallbacks.append(("portfolio", problem))

    regime = _regime(regime_reply, now, stale_sec)
    if regime is None:
        fallbacks.append(("regime", "-"))

    budget_rows, stress_rows = (scanned if isinstance(scanned, list) and len(scanned) == 2
                                else ([], []))
    symbols, unmapped = [], []
    prefix = len(BUDGET_PREFIX)
    width = len(BUDGET_FIELDS) + 1
    for key, budget_text, ts_text in _rows(budget_rows, width):
        symbol = key[prefix:]
        if not SYMBOL_RE.fullmatch(symbol):
            continue
        budget = parse_decimal(_text(budget_text))
        if budget is None or budget < 0:
            fallbacks.append(("budget", symbol))
            continue
        fresh = _fresh(_text(ts_text), now, stale_sec)
        if not fresh:
            fallbacks.append(("budget", symbol))
        cluster = cluster_map.get(symbol)
        if not cluster:
            unmapped.append(symbol)
            cluster = symbol
        symbols.append(SymbolInput(symbol, cluster, budget, fresh))
    symbols.sort(key=lambda item: item.symbol)

    prefix = len(STRESS_PREFIX)
    stresses = {key[prefix:]: [_text(value) for value in values]
                for key, *values in _rows(stress_rows, len(STRESS_FIELDS) + 1)}
    clusters = {}
    for cluster in sorted({item.cluster_id for item in symbols if item.budget_fresh}):
        stress_text, alpha_text, ts_text = stresses.get(cluster, [None, None, None])
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

    return Snapshot(equity or 0.0, drawdown or 0.0, problem, regime, tuple(symbols),
                    clusters, tuple(sorted(unmapped)), tuple(fallbacks))


def _regime(reply: object, now: float, stale_sec: float) -> str | None:
    """The newest regime entry's ``regime`` if fresh (by its ``ts``) and known, else
    ``None``."""
    if not isinstance(reply, list) or not reply:
        return None
    entry = reply[0]
    fields = entry[1] if isinstance(entry, list | tuple) and len(entry) == 2 else None
    fields = _as_map(fields)
    if not _fresh(fields.get("ts"), now, stale_sec):
        return None
    regime = fields.get("regime", "").strip().upper()
    return regime if regime in REGIMES else None
