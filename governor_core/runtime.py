"""What both hosts do the same way at start and stop: config errors, signals, metrics."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from governor_core.config import ConfigError

if TYPE_CHECKING:
    from governor_core.host import HostService

log = logging.getLogger("quantum.runtime")

T = TypeVar("T")

#: Exit status for an unusable configuration or an unusable metrics port: the units in
#: ``deploy/systemd`` set ``RestartPreventExitStatus=2``, since restarting cannot fix either.
EXIT_CONFIG = 2


class StartupError(Exception):
    """A host cannot start; ``str()`` is the one line to print."""


def load_config(prog: str, loader: Callable[[], T]) -> T:
    """Run ``loader``; turn a :class:`ConfigError` into a one-line :class:`StartupError`."""
    try:
        return loader()
    except ConfigError as exc:
        raise StartupError(f"{prog}: configuration error: {exc}") from None


def install_stop_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the loop to finish its batch and return."""
    def handler(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the current batch",
                 signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def serve_metrics(prog: str, registry: CollectorRegistry, addr: str, port: int) -> object:
    """Start the ``/metrics`` endpoint (port 0 disables it). Returns the server or None.

    The registry also gets the standard ``process_*`` metrics: ``process_start_time_seconds``
    is how the restart alert counts restarts, ``process_resident_memory_bytes`` shows RSS.
    """
    if port == 0:
        return None
    ProcessCollector(registry=registry)
    try:
        server, _thread = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise StartupError(f"{prog}: cannot serve metrics on {addr}:{port}: {exc.strerror}"
                           " (set the metrics port variable to a free port)") from None
    log.info("metrics on http://%s:%d/metrics", addr, port)
    return server


def run_service(prog: str, host: str, load: Callable[[], Any],
                build: Callable[..., HostService],
                started: Callable[[Any], dict[str, str]] = lambda _config: {}) -> int:
    """The start-up sequence of both ``run`` commands, in order: the configuration (a
    bad value stops here, naming the variable), logging, the plugins, the stop signals, the
    metrics endpoint, the Redis client and the service; then its loop until SIGTERM/SIGINT.

    :param host: ``"governor"`` or ``"allocation"`` (the plugins' host, the log name).
    :param build: the service class (called as ``build(config, client, plugins, registry,
        stop=stop)``).
    :param started: the configuration's extra fields for the "started" log line, e.g.
        ``{"mode": "shadow"}``.
    """
    from governor_core.logs import configure_logging
    from governor_core.plugins import build_plugin_host
    from governor_core.redis_io import connect

    config = load_config(prog, load)
    configure_logging(config.common.log_format, config.common.log_level)
    registry = CollectorRegistry()
    plugins = build_plugin_host(host, os.environ, registry,
                                disabled=config.common.disabled_plugins)
    stop = threading.Event()
    install_stop_signals(stop)
    serve_metrics(prog, registry, config.common.metrics_addr, config.metrics_port)
    service = build(config, connect(config.common.redis), plugins, registry, stop=stop)
    logger = logging.getLogger(f"quantum.{host}")
    logger.info("%s started", host, extra={"url": config.common.redis.safe_url,
                                           "plugin": ",".join(plugins.active) or "-",
                                           **started(config)})
    service.run()
    logger.info("%s stopped", host)
    return 0


def main_guard(run: Callable[[], int]) -> int:
    """Print a :class:`StartupError` as one line on stderr and exit 2, no traceback."""
    try:
        return run()
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
