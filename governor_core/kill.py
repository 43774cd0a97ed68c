"""``quantum-governor kill on|off|status``: the kill switch, with an ops ledger entry.

``on`` sets ``quantum:governor:kill`` to ``1``; ``off`` deletes it; every running governor
denies (``DENY``/``kill_switch``) or resumes from its next batch, no restart. ``--reason`` is
required for both and goes in the ledger with ``who`` (``--who``, else ``SUDO_USER``, else
``USER``) and the key's value before and after (``(absent)`` for no key).

"Already in that state" is judged as the governor reads the key (SPEC 2, the rule of
:func:`governor_core.governor.inputs.kill_switch_on`): ``kill on`` while it reads as on
with the value ``1``, or ``kill off`` while it reads as off, changes nothing, writes no
ledger entry, says so and exits 0. A key that reads as on only because it is unusable (a
value like ``maybe``, a hash) is not left alone: ``on`` writes ``1``, ``off`` deletes it,
each with its entry. The change and its entry are one ``MULTI``/``EXEC``.

``status`` prints the state, the key's raw value and the newest kill entry of the ledger.
"""

from __future__ import annotations

import argparse
from typing import Any

import redis

from governor_core.governor.inputs import KILL_OFF, KILL_ON
from governor_core.keys import KILL_KEY
from governor_core.ledger import (
    ABSENT,
    append_to,
    connect_to,
    default_who,
    format_entries,
    ledger_entry,
    read_ledger,
    validate_reason,
)

PROG = "quantum-governor kill"
#: How many of the ledger's newest entries ``status`` searches for the last kill action.
STATUS_LOOKBACK = 200


def read_switch(client: redis.Redis) -> tuple[bool, str, bool]:
    """``(on, value, usable)``: as the governor reads the key, its value as the ledger
    records it (the text, ``(absent)``, ``(a hash)``) and whether the rule names it."""
    pipe = client.pipeline(transaction=False)
    pipe.type(KILL_KEY)
    pipe.get(KILL_KEY)
    key_type, value = pipe.execute(raise_on_error=False)
    if isinstance(value, str):
        text = value.strip().lower()
        usable = text in KILL_ON or text in KILL_OFF
        return (text in KILL_ON or not usable), value, usable
    if key_type == "none" or (value is None and key_type == "string"):
        return False, ABSENT, True
    return True, f"(a {key_type})" if isinstance(key_type, str) else "(unreadable)", False


def switch(client: redis.Redis, turn_on: bool, *, who: str, why: str) -> str:
    """Turn the switch on or off; the line to print. No entry when nothing changes."""
    on, shown, usable = read_switch(client)
    if usable and on == turn_on and (not turn_on or shown == "1"):
        return (f"kill switch already {'ON' if on else 'OFF'} ({KILL_KEY} = {shown!r}): "
                "nothing changed, no ledger entry")
    after = "1" if turn_on else ABSENT
    entry = ledger_entry("kill_on" if turn_on else "kill_off", who, why, shown, after,
                         {"key": KILL_KEY, "was_usable": usable})
    pipe = client.pipeline(transaction=True)
    if turn_on:
        pipe.set(KILL_KEY, "1")
    else:
        pipe.delete(KILL_KEY)
    append_to(pipe, entry)
    pipe.execute()
    if turn_on:
        return (f"kill switch ON ({KILL_KEY} = '1', was {shown!r}): every governor denies "
                "plans (reason kill_switch) from its next batch; ledger entry written")
    return (f"kill switch OFF ({KILL_KEY} deleted, was {shown!r}): governors issue permits "
            "again from their next batch; ledger entry written")


def status(client: redis.Redis) -> str:
    on, shown, usable = read_switch(client)
    state = "ON" if on else "OFF"
    if not usable:
        state += " (fail closed: the value is not one of 1/true/on/yes or 0/false/off/no)"
    last = next((fields for _id, fields in reversed(read_ledger(client, STATUS_LOOKBACK))
                 if fields.get("action", "").startswith("kill_")), None)
    line = f"kill switch {state} ({KILL_KEY} = {shown!r})"
    if last:
        line += "; last change: " + format_entries([("", last)])[0]
    return line


def add_parser(commands: Any) -> None:
    """Add the ``kill`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    kill = commands.add_parser("kill", help="turn the kill switch on or off, or show it",
                               description=__doc__.split("\n\n")[1].replace("``", ""))
    kill.add_argument("state", choices=("on", "off", "status"))
    kill.add_argument("--reason", default=None, help="why (required for on/off; ledger)")
    kill.add_argument("--who", default=None,
                      help="who is doing it (default: SUDO_USER, else USER)")
    kill.add_argument("--redis-url", default=None,
                      help="the Redis (default: REDIS_URL, else REDIS_HOST/PORT/DB)")


def run(args: argparse.Namespace) -> int:
    from governor_core.runtime import StartupError

    client = connect_to(args.redis_url, PROG)
    if args.state == "status":
        print(status(client))
        return 0
    if args.reason is None:
        raise StartupError(f"{PROG} {args.state}: --reason TEXT is required (it goes in "
                           "the ops ledger)")
    why = validate_reason(args.reason, PROG)
    print(switch(client, args.state == "on", who=args.who or default_who(), why=why))
    return 0
