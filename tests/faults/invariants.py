"""The invariant every fault scenario ends with, read from Redis itself.

* every plan in is finished: plan ids in = plan ids with a permit + plans dead-lettered;
* no plan id has two entries in ``quantum:stream:permit.issued`` (exactly-once permits);
* no acknowledged plan without a permit or a dead letter (every entry of the plan stream,
  duplicates included, is accounted for);
* nothing left pending in the consumer group;
* the services still running.

The plan stream is read as bytes and decoded with ``backslashreplace``, so a scenario that
writes invalid UTF-8 is audited like any other (a poison plan is matched to its dead letter
by the entry id, the dead letter's ``source_id``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import redis
from faultkit import Service

from governor_core.keys import DEAD_STREAM, PERMIT_STREAM, PLAN_STREAM
from governor_core.testing import wait_for

GROUP = "governor"


def _text(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value or ""


def _fields(raw: dict) -> dict[str, str]:
    return {_text(name): _text(value) for name, value in raw.items()}


@dataclass
class Audit:
    """What Redis holds at the end of a scenario, and what breaks the invariant."""

    plans_in: int
    permits: int
    dead_letters: int
    lost: list[str]
    duplicates: list[str]
    unaccounted: list[str]  # plan stream entries with neither a permit nor a dead letter
    pending: int
    dead_services: list[str]
    permit_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    dead_fields: list[dict[str, str]] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} plans lost (neither permit nor dead letter), "
                         f"e.g. {self.lost[:5]}")
        if self.duplicates:
            found.append(f"{len(self.duplicates)} plan ids with two permit entries, "
                         f"e.g. {self.duplicates[:5]}")
        if self.unaccounted:
            found.append(f"{len(self.unaccounted)} acknowledged plan entries without a "
                         f"permit or dead letter, e.g. {self.unaccounted[:5]}")
        if self.pending:
            found.append(f"{self.pending} plans still pending in group {GROUP!r}")
        if self.dead_services:
            found.append(f"services not running: {', '.join(self.dead_services)}")
        return found

    def check(self, services: Iterable[Service] = ()) -> None:
        """Raise with every broken invariant (and the services' last log lines)."""
        problems = self.problems
        if problems:
            logs = "\n".join(f"--- {s.name}:\n{s.tail()}" for s in services)
            raise AssertionError("; ".join(problems) + "\n" + logs)


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=10)


def audit(url: str, plan_ids: Sequence[str], services: Iterable[Service] = ()) -> Audit:
    """Read the streams and the group and judge the invariant for ``plan_ids`` (the plans
    the scenario wrote, by id; a plan written several times is one plan)."""
    client = raw_client(url)
    try:
        permits = [_fields(raw) for _id, raw in client.xrange(PERMIT_STREAM)]
        dead = [_fields(raw) for _id, raw in client.xrange(DEAD_STREAM)]
        entries = [(_text(entry_id), _fields(raw))
                   for entry_id, raw in client.xrange(PLAN_STREAM)]
        try:
            pending = int(client.xpending(PLAN_STREAM, GROUP)["pending"])
        except redis.ResponseError:  # no group: nothing was ever read
            pending = len(entries)
    finally:
        client.close()
    per_plan = Counter(fields.get("plan_id", "") for fields in permits)
    dead_sources = {fields.get("source_id", "") for fields in dead}
    dead_plans = {fields.get("plan_id", "") for fields in dead}
    by_entry = {entry_id: fields.get("plan_id", "") for entry_id, fields in entries}
    wanted = list(dict.fromkeys(plan_ids))
    dead_plans |= {by_entry.get(source, "") for source in dead_sources}
    lost = [plan for plan in wanted if plan not in per_plan and plan not in dead_plans]
    unaccounted = [entry_id for entry_id, plan in by_entry.items()
                   if plan not in per_plan and entry_id not in dead_sources]
    return Audit(
        plans_in=len(wanted), permits=sum(per_plan.values()), dead_letters=len(dead),
        lost=lost, duplicates=sorted(plan for plan, n in per_plan.items() if n > 1),
        unaccounted=unaccounted, pending=pending,
        dead_services=[s.name for s in services if not s.alive],
        permit_fields={fields.get("plan_id", ""): fields for fields in permits},
        dead_fields=dead)


def drained(url: str, expected: int) -> bool:
    """Whether ``expected`` plans are finished (permit or dead-letter entries), every entry
    of the plan stream delivered and nothing pending: cheap enough to poll."""
    client = raw_client(url)
    try:
        done = client.xlen(PERMIT_STREAM) + client.xlen(DEAD_STREAM)
        if done < expected or int(client.xpending(PLAN_STREAM, GROUP)["pending"]):
            return False
        last = client.xrevrange(PLAN_STREAM, count=1)
        groups = {_text(g["name"]): g for g in client.xinfo_groups(PLAN_STREAM)}
        return not last or _text(groups[GROUP]["last-delivered-id"]) == _text(last[0][0])
    finally:
        client.close()


def wait_drained(url: str, expected: int, timeout: float, services: Sequence[Service] = ()
                 ) -> None:
    try:
        wait_for(lambda: drained(url, expected), timeout, f"{expected} plans finished",
                 interval=0.05)
    except AssertionError as exc:
        logs = "\n".join(f"--- {s.name}:\n{s.tail()}" for s in services)
        raise AssertionError(f"{exc}\n{logs}") from None
