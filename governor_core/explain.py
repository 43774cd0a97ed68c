"""``quantum-governor explain PLAN_ID``: a permit, and why it says what it says.

The live permit hash is read first; once it has expired, the newest entries of
``quantum:stream:permit.issued`` (which carry the core fields: the decision, its cap and
source) are searched, then the dead-letter stream. Searches stop after
:data:`SEARCH_LIMIT` entries of each stream.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from governor_core.governor.gates import CORE_FIELDS
from governor_core.keys import (
    BUDGET_PREFIX,
    DEAD_STREAM,
    PERMIT_PREFIX,
    PERMIT_STREAM,
    TARGET_PREFIX,
)

SEARCH_LIMIT = 200_000
PAGE = 2_000

_CAP_PREFIXES = {"allocation": TARGET_PREFIX, "budget": BUDGET_PREFIX}


def find_in_stream(client: redis.Redis, stream: str, plan_id: str,
                   field: str = "plan_id") -> tuple[str, dict[str, str]] | None:
    """The newest entry of ``stream`` whose ``field`` is ``plan_id``."""
    last = "+"
    seen = 0
    while seen < SEARCH_LIMIT:
        page = client.xrevrange(stream, max=last, min="-", count=PAGE)
        for entry_id, fields in page:
            if fields.get(field) == plan_id:
                return entry_id, fields
        if len(page) < PAGE:
            return None
        seen += len(page)
        last = "(" + page[-1][0]
    return None


def explain(client: redis.Redis, plan_id: str,
            declared: Mapping[str, tuple[str, ...]]) -> str | None:
    permit = client.hgetall(PERMIT_PREFIX + plan_id)
    if permit:
        ttl = client.ttl(PERMIT_PREFIX + plan_id)
        source = f"{PERMIT_PREFIX}{plan_id} (expires in {ttl}s)"
    else:
        found = find_in_stream(client, PERMIT_STREAM, plan_id)
        if found is None:
            dead = find_in_stream(client, DEAD_STREAM, plan_id, field="plan_id")
            return None if dead is None else _explain_dead(plan_id, *dead)
        permit = found[1]
        source = (f"{PERMIT_STREAM} entry {found[0]} (the permit key has expired; plugin "
                  "fields are kept on the permit key only)")
    return format_permit(permit, source, declared)


def _explain_dead(plan_id: str, entry_id: str, fields: dict[str, str]) -> str:
    lines = [f"Plan {plan_id} was rejected: no permit was issued.",
             f"  dead letter {entry_id} in {DEAD_STREAM}",
             f"  error: {fields.get('error', '?')} (code {fields.get('error_code', '?')})",
             f"  original plan entry: {fields.get('source_id', '?')}"]
    lines += [f"    {name} = {value}" for name, value in fields.items()
              if name not in ("error", "error_code", "source_id")]
    return "\n".join(lines)


def format_permit(permit: Mapping[str, str], source: str,
                  declared: Mapping[str, tuple[str, ...]]) -> str:
    get = permit.get
    symbol = get("symbol", "?")
    cap_source = get("cap_source", "none")
    lines = [
        f"Permit for plan {get('plan_id', '?')}  ({source})",
        f"  plan:      {get('side', '?')} {symbol} notional_usd={get('notional_usd', '?')}",
        f"  decision:  {get('decision', '?')}  reason={get('reason', '?')}",
        "  gates:",
        "    kill switch: " + ("ON, plan denied" if get("reason") == "kill_switch"
                               else "off (passed)"),
    ]
    if cap_source == "none":
        lines.append("    cap: none found (no allocation target, no budget): fail-open, "
                     "no clamp")
    else:
        key = _CAP_PREFIXES.get(cap_source, "?:") + symbol
        verdict = {"above_cap": "notional above cap: clamped",
                   "within_cap": "notional within cap"}.get(get("reason", ""), "")
        lines.append(f"    cap: {get('cap_usd', '?')} USD from {cap_source} ({key})"
                     + (f": {verdict}" if verdict else ""))
    lines += [
        f"  allowed_notional_usd={get('allowed_notional_usd', '?')}  "
        f"cooldown_sec={get('cooldown_sec', '?')}",
        f"  issued_ts={get('issued_ts', '?')}  expires_ts={get('expires_ts', '?')}",
    ]
    shown = set(CORE_FIELDS)
    for plugin, fields in sorted(declared.items()):
        present = [name for name in fields if name in permit]
        if not present:
            continue
        lines.append(f"  plugin {plugin}:")
        lines += [f"    {name} = {permit[name]}" for name in present]
        shown.update(present)
    others = [name for name in permit if name not in shown]
    if others:
        lines.append("  other fields (from plugins not active here):")
        lines += [f"    {name} = {permit[name]}" for name in others]
    return "\n".join(lines)
