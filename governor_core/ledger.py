"""The ops ledger (SPEC 8): ``quantum:stream:ops.ledger``, one entry per change of state.

Written by the operator commands (``quantum-governor kill on|off``, ``quantum-allocation
promote``/``rollback``), read by ``quantum-governor ledger``. Each entry has the fields of
:data:`LEDGER_FIELDS`, all text:

``ts``      Unix seconds (ms precision) when the command made the change;
``action``  ``kill_on``, ``kill_off``, ``promote``, ``rollback``;
``who``     ``--who`` if given, else ``SUDO_USER`` (the person behind ``sudo``), else
            ``USER``, else ``unknown``;
``why``     the command's ``--reason`` (required: a change nobody can explain later is what
            the ledger exists to prevent);
``before``/``after``  the state it changed, e.g. the kill key's value or ``(absent)``, the
            mode key's value;
``detail``  a JSON object with whatever else the action knows (``forced`` and the
            ``failing`` readiness criteria for promote, ``targets_deleted`` for rollback).

A command that would change nothing (``kill on`` while the switch is already on,
``promote`` while the key already says ``enforce``) writes no entry and says so: the ledger
records changes, and a repeated command is not one. The change and its entry go in one
``MULTI``/``EXEC`` where the change is a single command, so neither lands without the
other. The stream is capped (``XADD MAXLEN ~ QUANTUM_LEDGER_MAXLEN``, 10,000 by default:
years of operator actions).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from governor_core.config import EnvReader, read_settings, setting
from governor_core.formats import fmt_ts
from governor_core.keys import LEDGER_STREAM
from governor_core.parsing import parse_decimal, shown

LEDGER_FIELDS = ("ts", "action", "who", "why", "before", "after", "detail")
#: How a missing value is written in ``before``/``after``.
ABSENT = "(absent)"


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    maxlen: int = setting("QUANTUM_LEDGER_MAXLEN", 10_000, min=100)


def default_who(env: Mapping[str, str] | None = None) -> str:
    """``SUDO_USER``, else ``USER``, else ``unknown`` (login names, not settings)."""
    env = os.environ if env is None else env
    return (env.get("SUDO_USER") or env.get("USER") or "unknown").strip() or "unknown"


def ledger_entry(action: str, who: str, why: str, before: str, after: str,
                 detail: Mapping[str, Any] | None = None, *,
                 now: float | None = None) -> dict[str, str]:
    """One entry, field by field in :data:`LEDGER_FIELDS` order."""
    return {"ts": fmt_ts(time.time() if now is None else now), "action": action,
            "who": who, "why": why, "before": before, "after": after,
            "detail": json.dumps(dict(detail or {}), sort_keys=True, separators=(",", ":"))}


def append_to(pipe: Any, entry: Mapping[str, str], maxlen: int | None = None) -> None:
    """Queue the entry's ``XADD`` on ``pipe`` (a pipeline or a client)."""
    if maxlen is None:
        maxlen = read_settings(LedgerConfig, EnvReader()).maxlen
    pipe.xadd(LEDGER_STREAM, dict(entry), maxlen=maxlen, approximate=True)


def read_ledger(client: redis.Redis, count: int) -> list[tuple[str, dict[str, str]]]:
    """The newest ``count`` entries, oldest first."""
    return list(reversed(client.xrevrange(LEDGER_STREAM, count=count)))


def connect_to(url: str | None, prog: str) -> redis.Redis:
    """A client for ``--redis-url`` if given, else the environment's Redis settings; a bad
    URL is a one-line :class:`~governor_core.runtime.StartupError` naming it."""
    from governor_core.config import ConfigError
    from governor_core.redis_io import connect
    from governor_core.redis_settings import RedisSettings
    from governor_core.runtime import StartupError

    try:
        settings = (RedisSettings.from_url(url, name="--redis-url") if url is not None
                    else RedisSettings.from_env(EnvReader()))
    except ConfigError as exc:
        raise StartupError(f"{prog}: configuration error: {exc}") from None
    return connect(settings)


def validate_reason(reason: str, prog: str) -> str:
    from governor_core.runtime import StartupError

    reason = reason.strip()
    if not reason:
        raise StartupError(f"{prog}: --reason is empty: say why, it goes in the ops ledger")
    return reason


# -- quantum-governor ledger -------------------------------------------------------------

def add_parser(commands: Any) -> None:
    """Add the ``ledger`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    ledger = commands.add_parser("ledger", help="list the ops ledger (kill, promote, rollback)",
                                 description="List quantum:stream:ops.ledger, oldest first.")
    ledger.add_argument("--count", type=int, default=20,
                        help="how many of the newest entries (default 20)")
    ledger.add_argument("--json", action="store_true",
                        help="one JSON array of {id, ts, action, who, why, before, after, "
                             "detail} (detail parsed)")
    ledger.add_argument("--redis-url", default=None,
                        help="the Redis to read (default: REDIS_URL, else REDIS_HOST/PORT/DB)")


def run(args: argparse.Namespace) -> int:
    from governor_core.runtime import StartupError

    if args.count < 1:
        raise StartupError(f"quantum-governor ledger: --count {args.count} is invalid: "
                           "expected 1 or more")
    entries = read_ledger(connect_to(args.redis_url, "quantum-governor ledger"), args.count)
    if args.json:
        print(json.dumps([_as_json(entry_id, fields) for entry_id, fields in entries],
                         indent=2, sort_keys=True))
        return 0
    if not entries:
        print("the ops ledger is empty")
    for line in format_entries(entries):
        print(line)
    return 0


def _as_json(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": entry_id, **{name: fields.get(name, "")
                                               for name in LEDGER_FIELDS}}
    with contextlib.suppress(ValueError):  # written by something else: shown as it is
        item["detail"] = json.loads(item["detail"] or "{}")
    return item


def format_entries(entries: Sequence[tuple[str, Mapping[str, str]]]) -> list[str]:
    """One line per entry: time (UTC), action, who, before → after, why, detail."""
    lines = []
    for _entry_id, fields in entries:
        seconds = parse_decimal(fields.get("ts"))
        try:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds or 0.0))
        except (OverflowError, OSError, ValueError):  # e.g. a year past 9999
            seconds = None
        if seconds is None:
            when = shown(fields.get("ts", "?"))
        detail = fields.get("detail", "")
        lines.append(f"{when}Z  {fields.get('action', '?'):<9} {fields.get('who', '?')}: "
                     f"{fields.get('before', '')} -> {fields.get('after', '')}  "
                     f"why: {fields.get('why', '')}"
                     + (f"  {detail}" if detail and detail != "{}" else ""))
    return lines
