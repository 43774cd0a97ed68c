"""Drafting a batch's permits: plans, gate inputs and plugin fields in, permits out.

Pure: no Redis, no clock (``now`` is given), no metrics. :func:`sort_entries` splits the
stream entries of a batch into plans, rejections and entries trimmed away while pending;
:func:`draft_permits` runs the gates and the plugins' permit hooks for some plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from governor_core.governor.extensions import NO_FIELDS, BatchExtensions, PluginFields
from governor_core.governor.gates import NO_CAP, core_permit, decide, is_stale
from governor_core.governor.inputs import GateInputs
from governor_core.plans import Plan, PlanRejection, parse_plan

#: A stream entry as ``XREADGROUP`` / ``XAUTOCLAIM`` return it (fields ``None``: trimmed).
Entry = tuple[str, dict[str, str] | None]


class PermitDraft(NamedTuple):
    """One plan's permit before it is written: the core fields (in ``CORE_FIELDS``
    order, all strings) and what the plugins added.

    A named tuple, immutable like a frozen dataclass and several times cheaper to build
    (one per plan, on the hot path)."""

    plan: Plan
    permit: dict[str, str]
    extra: PluginFields = NO_FIELDS

    def fields(self) -> dict[str, str]:
        """Core and plugin fields together (a dead letter's record of the permit)."""
        return {**self.permit, **self.extra.merged()}


@dataclass(frozen=True, slots=True)
class SortedEntries:
    """A batch's entries: valid ``plans``, ``rejections`` for the dead-letter stream, and
    the ids of ``vanished`` entries (trimmed from the stream while pending: nothing to
    issue, only to acknowledge)."""

    plans: list[Plan] = field(default_factory=list)
    rejections: list[PlanRejection] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)


def sort_entries(entries: Sequence[Entry]) -> SortedEntries:
    result = SortedEntries()
    for entry_id, fields in entries:
        if fields is None:
            result.vanished.append(entry_id)
            continue
        parsed = parse_plan(entry_id, fields)
        if isinstance(parsed, Plan):
            result.plans.append(parsed)
        else:
            result.rejections.append(parsed)
    return result


def draft_permits(plans: Sequence[Plan], gates: GateInputs,
                  extensions: BatchExtensions | None, *, cooldown_sec: int, ttl_sec: int,
                  now: float, max_age_sec: float = 0.0) -> list[PermitDraft]:
    """Each plan's gate decision, core permit and plugin fields, in order. A plan older
    than ``max_age_sec`` (0: no limit) is denied as ``stale_plan``."""
    drafts = []
    kill, caps = gates.kill_switch, gates.caps
    for plan in plans:
        stale = max_age_sec > 0 and is_stale(plan, now, max_age_sec)
        gate = decide(plan.notional_usd, kill, caps.get(plan.symbol, NO_CAP), stale=stale)
        permit = core_permit(plan, gate, cooldown_sec=cooldown_sec, ttl_sec=ttl_sec, now=now)
        extra = extensions.extend(plan, permit) if extensions else NO_FIELDS
        drafts.append(PermitDraft(plan, permit, extra))
    return drafts
