"""What both hosts do the same way at start and stop: config errors, signals, metrics."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from governor_core.config import ConfigError

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


def main_guard(run: Callable[[], int]) -> int:
    """Print a :class:`StartupError` as one line on stderr and exit 2, no traceback."""
    try:
        return run()
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
