"""``quantum-allocation``: the P2.9 capital allocation service."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from governor_core import __version__
from governor_core.allocation.config import AllocationConfig
from governor_core.logs import configure_logging
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect
from governor_core.runtime import install_stop_signals, load_config, main_guard, serve_metrics

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

    config = load_config(PROG, AllocationConfig.from_env)
    configure_logging(config.common.log_format, config.common.log_level)
    registry = CollectorRegistry()
    plugins = build_plugin_host("allocation", os.environ, registry,
                                disabled=config.common.disabled_plugins)
    stop = threading.Event()
    install_stop_signals(stop)
    serve_metrics(PROG, registry, config.common.metrics_addr, config.metrics_port)
    service = AllocationService(config, connect(config.common.redis), plugins, registry,
                                stop=stop)
    logger = logging.getLogger("quantum.allocation")
    logger.info("allocation started", extra={
        "url": config.common.redis.safe_url, "mode": config.mode,
        "plugin": ",".join(plugins.active) or "-"})
    service.run()
    logger.info("allocation stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
