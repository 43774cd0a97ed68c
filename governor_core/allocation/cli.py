"""``quantum-allocation``: the P2.9 capital allocation service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from governor_core import __version__
from governor_core.allocation import ops, promotion
from governor_core.allocation.config import AllocationConfig
from governor_core.cli import add_check_config_parser, plain, run_check_config
from governor_core.keys import MODE_KEY
from governor_core.runtime import main_guard, run_service

PROG = "quantum-allocation"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=plain(__doc__))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="compute targets every P29_INTERVAL_SEC until "
                                    "SIGTERM/SIGINT")
    add_check_config_parser(commands, "validate the environment for this service and its "
                                      "plugins, and connect to Redis")
    ops.add_parser(commands)
    promotion.add_parsers(commands)
    args = parser.parse_args(argv)
    if args.command in promotion.COMMANDS:
        command = promotion.COMMANDS[args.command]
        return main_guard(lambda: command(args), PROG, redis_url=args.redis_url)
    if args.command == "clear-targets":
        return main_guard(lambda: ops.run(args), PROG, redis_url=args.redis_url)
    if args.command == "check-config":
        return main_guard(lambda: run_check_config(PROG, ("allocation",), args), PROG)
    return main_guard(run_allocation, PROG)


def run_allocation() -> int:
    from governor_core.allocation.service import AllocationService

    return run_service(PROG, "allocation", AllocationConfig.from_env, AllocationService,
                       started=lambda config: {"mode": config.mode,
                                               "mode_key": MODE_KEY})


if __name__ == "__main__":
    sys.exit(main())
