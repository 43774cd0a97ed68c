"""``quantum-governor explain PLAN_ID``: a permit, and why it says what it says.

The record is the live permit hash if it is still there, else the plan's entry on
``quantum:stream:permit.issued``, which carries the same fields (core, every plugin field,
``config_id``: SPEC 8) for as long as the capped stream keeps it; else the dead-letter
stream. Stream searches go from the newest entry back and stop after :data:`SEARCH_LIMIT`
entries of each stream.

What it shows, in order: the plan; the decision; every gate's verdict in the order the
governor runs them (kill switch, plan age ``stale_plan``, cap); the **binding** constraint
(what set ``allowed_notional_usd``: the kill switch, the plan's age, the cap that clamped,
or none); each plugin's fields under its name, with the meaning of its reason code; and
the configuration in force, read from the snapshot its ``config_id`` names
(:mod:`governor_core.snapshot`), or a line saying why it cannot be shown (no
``config_id`` on a permit older than the record, or the snapshot key is missing).
"""

from __future__ import annotations

from collections.abc import Mapping

import redis

from governor_core.governor.gates import CORE_FIELDS
from governor_core.keys import (
    BUDGET_PREFIX,
    DEAD_STREAM,
    KILL_KEY,
    PERMIT_PREFIX,
    PERMIT_STREAM,
    SNAPSHOT_PREFIX,
    TARGET_PREFIX,
)
from governor_core.snapshot import META_FIELDS, read_snapshot

SEARCH_LIMIT = 200_000
PAGE = 2_000
#: The setting of the plan-age gate (SPEC 3.2, 1a), looked up in the snapshot.
MAX_AGE_SETTING = "GOVERNOR_MAX_PLAN_AGE_SEC"

_CAP_PREFIXES = {"allocation": TARGET_PREFIX, "budget": BUDGET_PREFIX}
#: What a plugin's reason code means (the efficiency reasons of SPEC 3.3).
REASON_MEANINGS = {
    "ok": "a usable efficiency score was read",
    "missing_eff": "no efficiency data for the symbol: no change (fail-open)",
    "stale_eff": "the efficiency data was older than its TTL: no change (fail-open)",
    "low_conf": "the efficiency confidence was below the minimum: no change (fail-open)",
    "invalid_eff": "the efficiency data was malformed: no change (fail-open)",
    "redis_error": "the efficiency read failed: no change (fail-open)",
}


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
    """The explanation of ``plan_id``'s permit (or dead letter); None if neither is found.
    ``declared`` is each plugin's declared permit fields (``permit_fields``)."""
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
        source = (f"{PERMIT_STREAM} entry {found[0]}: the permit key has expired; this is "
                  "the durable record")
    config_id = permit.get("config_id", "")
    return format_permit(permit, source, declared, read_snapshot(client, config_id))


def _explain_dead(plan_id: str, entry_id: str, fields: dict[str, str]) -> str:
    lines = [f"Plan {plan_id} was rejected: no permit was issued.",
             f"  dead letter {entry_id} in {DEAD_STREAM}",
             f"  error: {fields.get('error', '?')} (code {fields.get('error_code', '?')})",
             f"  original plan entry: {fields.get('source_id', '?')}"]
    lines += [f"    {name} = {value}" for name, value in fields.items()
              if name not in ("error", "error_code", "source_id")]
    return "\n".join(lines)


def format_permit(permit: Mapping[str, str], source: str,
                  declared: Mapping[str, tuple[str, ...]],
                  snapshot: Mapping[str, str] | None = None) -> str:
    """The explanation of one permit record; ``snapshot`` is the configuration its
    ``config_id`` names (empty or None: not found)."""
    get = permit.get
    lines = [
        f"Permit for plan {get('plan_id', '?')}  ({source})",
        f"  plan:      {get('side', '?')} {get('symbol', '?')} "
        f"notional_usd={get('notional_usd', '?')}",
        f"  decision:  {get('decision', '?')}  reason={get('reason', '?')}",
        "  gates (in the order they run):",
        *gate_lines(permit, snapshot or {}),
        f"  binding constraint: {binding_constraint(permit)}",
        f"  allowed_notional_usd={get('allowed_notional_usd', '?')}  "
        f"cooldown_sec={get('cooldown_sec', '?')}",
        f"  issued_ts={get('issued_ts', '?')}  expires_ts={get('expires_ts', '?')}",
    ]
    lines += plugin_lines(permit, declared)
    lines += configuration_lines(get("config_id", ""), snapshot or {})
    return "\n".join(lines)


def _cap_key(permit: Mapping[str, str]) -> str:
    return _CAP_PREFIXES.get(permit.get("cap_source", ""), "?:") + permit.get("symbol", "?")


def gate_lines(permit: Mapping[str, str], snapshot: Mapping[str, str]) -> list[str]:
    """One verdict per gate of SPEC 3.2: kill switch, plan age, cap."""
    reason = permit.get("reason", "")
    kill = reason == "kill_switch"
    stale = reason == "stale_plan"
    max_age = snapshot.get(MAX_AGE_SETTING)
    age_rule = f" ({MAX_AGE_SETTING}={max_age})" if max_age else ""
    lines = [f"    1. kill switch ({KILL_KEY}): "
             + ("ON: plan denied" if kill else "off: passed")]
    if kill:
        lines.append("    2. plan age: not checked (the kill switch decided)")
    elif stale:
        lines.append(f"    2. plan age: too old{age_rule}: plan denied (stale_plan)")
    elif max_age is not None and max_age.strip() in ("0", "0.0"):
        lines.append(f"    2. plan age: off{age_rule}: not checked")
    else:
        lines.append(f"    2. plan age: passed{age_rule}")
    cap_source = permit.get("cap_source", "none")
    if cap_source == "none":
        cap = "none found (no allocation target, no budget): fail-open, no clamp"
    else:
        cap = f"{permit.get('cap_usd', '?')} USD from {cap_source} ({_cap_key(permit)})"
    verdict = {"above_cap": ": notional above the cap: clamped",
               "within_cap": ": notional within the cap: passed"}.get(reason, "")
    if kill or stale:
        verdict = ": not applied (the plan was denied before)"
    lines.append(f"    3. cap: {cap}{verdict}")
    return lines


def binding_constraint(permit: Mapping[str, str]) -> str:
    """What set ``allowed_notional_usd``, in one line (``none`` when nothing limited the
    plan)."""
    get = permit.get
    reason = get("reason", "")
    notional, allowed = get("notional_usd", "?"), get("allowed_notional_usd", "?")
    if reason == "kill_switch":
        return f"the kill switch ({KILL_KEY}): nothing allowed"
    if reason == "stale_plan":
        return "the plan's age (stale_plan): nothing allowed"
    if reason == "above_cap":
        return (f"the {get('cap_source', '?')} cap of {get('cap_usd', '?')} USD "
                f"({_cap_key(permit)}): notional {notional} clamped to {allowed}")
    if reason == "within_cap":
        return (f"none (notional {notional} is within the {get('cap_source', '?')} cap of "
                f"{get('cap_usd', '?')} USD)")
    if reason == "no_cap":
        return "none (no cap known: fail-open)"
    return f"unknown (reason {reason or '?'} is not one this version knows)"


def plugin_lines(permit: Mapping[str, str], declared: Mapping[str, tuple[str, ...]]
                 ) -> list[str]:
    """Each plugin's fields under its name, its reason code explained; fields of plugins
    not loaded here under their own heading."""
    lines: list[str] = []
    shown = {*CORE_FIELDS, "config_id"}
    for plugin, fields in sorted(declared.items()):
        present = [name for name in fields if name in permit]
        if not present:
            continue
        lines.append(f"  plugin {plugin}:")
        lines += _reason_lines(permit, present)
        lines += [f"    {name} = {permit[name]}" for name in present]
        shown.update(present)
    others = [name for name in permit if name not in shown]
    if others:
        lines.append("  other fields (from plugins not active here):")
        lines += _reason_lines(permit, others)
        lines += [f"    {name} = {permit[name]}" for name in others]
    return lines


def _reason_lines(permit: Mapping[str, str], names: list[str]) -> list[str]:
    return [f"    reason: {name}={permit[name]}: "
            f"{REASON_MEANINGS.get(permit[name], 'a code this version does not know')}"
            for name in names if name.endswith("reason")]


def configuration_lines(config_id: str, snapshot: Mapping[str, str]) -> list[str]:
    """The configuration in force from its snapshot, or why it cannot be shown."""
    if not config_id:
        return ["  configuration: not recorded (no config_id: the permit was written by "
                "a version without the decision record)"]
    key = SNAPSHOT_PREFIX + config_id
    if not snapshot:
        return [f"  configuration: config_id {config_id}, but its snapshot {key} is "
                "MISSING (deleted?): the settings in force cannot be shown"]
    meta = ", ".join(f"{name} {snapshot[name]}" for name in (*META_FIELDS, "created_ts")
                     if snapshot.get(name))
    lines = [f"  configuration in force: config_id {config_id} ({key}; {meta})"]
    skip = {*META_FIELDS, "created_ts", "config_id"}
    lines += [f"    {name} = {snapshot[name]}" for name in sorted(snapshot) if name not in skip]
    return lines
