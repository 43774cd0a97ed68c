"""``quantum-governor what-if --set NAME=VALUE … [--window 1h] [--json]`` (SPEC 8): the
command around :mod:`governor_core.whatif`.

Here are the subcommand's options, ``--window``'s durations, where the command reads from
(``--redis-url``, else the environment) and the text it prints; the replay and the report
(the ``--json`` object) are :mod:`governor_core.whatif`'s, so the demo shows the same report
without the command. ``docs/what-if.md`` is the user's page.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from governor_core.config import ConfigError, EnvReader
from governor_core.redis_io import connect
from governor_core.redis_settings import RedisSettings
from governor_core.runtime import StartupError
from governor_core.whatif import PROG, QUANTILES, replay_window

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parser(commands: Any) -> None:
    """Add the ``what-if`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    parser = commands.add_parser(
        "what-if", help="replay the recorded permits and proposals under changed settings",
        description="Replay the window's permit and proposal stream entries through the "
                    "plugins' formulas with the given settings changed, and show before/after. "
                    "Reads only.")
    parser.add_argument("--set", dest="changes", action="append", default=[],
                        metavar="NAME=VALUE", help="a setting to change (repeatable)")
    parser.add_argument("--window", default="1h", help="how far back (default 1h)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--redis-url", default=None,
                        help="the Redis to read (default: REDIS_URL, else REDIS_HOST/PORT/DB)")



def run(args: argparse.Namespace) -> int:
    """The ``what-if`` command: validate, read the window, print the report."""
    env = dict(os.environ)
    window = parse_window(args.window)
    try:
        where = (RedisSettings.from_url(args.redis_url, name="--redis-url")
                 if args.redis_url is not None else RedisSettings.from_env(EnvReader(env)))
    except ConfigError as exc:
        raise StartupError(f"{PROG}: configuration error: {exc}") from None
    report = replay_window(connect(where), args.changes, window, env)
    text = json.dumps(report, indent=2) if args.json else format_report(report)
    # A byte that was not UTF-8 (read as a lone surrogate) is printed as its escape.
    print(text.encode("utf-8", "backslashreplace").decode("utf-8"))
    return 0


def parse_window(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``2d`` as seconds (> 0)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    seconds = float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    if not 0 < seconds < math.inf:
        raise StartupError(f"{PROG}: --window {text!r} is invalid: expected a duration "
                           "such as 90s, 30m, 1h or 2d")
    return seconds


def format_report(report: Mapping[str, Any]) -> str:
    """The report (:func:`~governor_core.whatif.replay_window`'s) as the command prints it
    without ``--json``: the counts before -> after, then the symbols the changes changed."""
    changes = " ".join(f"{k}={v}" for k, v in report["changes"].items()) or "(no change)"
    lines = [f"what-if {changes} over the last {report['window_sec']:g} s"]
    lines += [f"  note: {note}" for note in report["notes"]]
    for kind, counted in (("permits", ("by_action", "by_reason")),
                          ("proposals", ("by_reason",))):
        section = report[kind]
        if section is None:
            lines.append(f"{kind}: no plugin replays them")
            continue
        lines.append(f"{kind}: {section['entries']} in the window, {section['replayed']} "
                     f"replayed, {section['reproduced']} reproduced without changes, "
                     f"{section['changed']} changed")
        before, after = section["before"], section["after"]
        for name in counted:
            keys = sorted(before[name].keys() | after[name].keys())
            lines += [f"  {name[3:]} {key or '-'}: {before[name].get(key, 0)} -> "
                      f"{after[name].get(key, 0)}" for key in keys]
        if kind == "permits":
            lines.append(f"  notional affected (USD): {before['notional_affected_usd']:.2f} "
                         f"-> {after['notional_affected_usd']:.2f}")
        else:
            for name in QUANTILES:
                lines.append(f"  multiplier {name}: {before['multiplier_quantiles'][name]} -> "
                             f"{after['multiplier_quantiles'][name]}")
        for row in section["symbols"]:
            detail = ", ".join(f"{k} {v}" for k, v in row.items()
                               if k not in ("symbol", "entries", "changed"))
            lines.append(f"  {row['symbol']}: {row['changed']} of {row['entries']} changed "
                         f"({detail})")
    return "\n".join(lines)
