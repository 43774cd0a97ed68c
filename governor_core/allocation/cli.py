"""``quantum-allocation``: the P2.9 capital allocation service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from governor_core import __version__
from governor_core.allocation.config import AllocationConfig
from governor_core.runtime import main_guard, run_service

PROG = "quantum-allocation"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="compute targets every P29_INTERVAL_SEC until "
                                    "SIGTERM/SIGINT")
    parser.parse_args(argv)
    return main_guard(run_allocation)


def run_allocation() -> int:
    from governor_core.allocation.service import AllocationService

    return run_service(PROG, "allocation", AllocationConfig.from_env, AllocationService,
                       started=lambda config: {"mode": config.mode})


if __name__ == "__main__":
    sys.exit(main())
