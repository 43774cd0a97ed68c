"""What both hosts do the same way at start and stop: config errors, signals, metrics."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from governor_core.config import ConfigError
from governor_core.redis_settings import RedisSettings, redact_text

if TYPE_CHECKING:
    from governor_core.host import HostService

log = logging.getLogger("quantum.runtime")

T = TypeVar("T")

#: Exit status for an unusable configuration or an unusable metrics port: the units in
#: ``deploy/systemd`` set ``RestartPreventExitStatus=2``, since restarting cannot fix either.
#: Redis refusing the credentials or the ACL refusing a command is a configuration error too.
EXIT_CONFIG = 2
#: Exit status of a command whose output pipe was closed (``… | head``): 128 + SIGPIPE, what
#: a shell reports for a process the signal ended.
EXIT_BROKEN_PIPE = 141
#: The error codes of an authentication or ACL refusal (redis-py raises most of them as
#: :class:`redis.AuthenticationError` or :class:`redis.exceptions.NoPermissionError`; a
#: script's refused call can arrive as a plain :class:`redis.ResponseError`).
ACCESS_ERROR_CODES = ("NOAUTH", "WRONGPASS", "NOPERM")


class StartupError(Exception):
    """A host cannot start; ``str()`` is the one line to print."""


def load_config(prog: str, loader: Callable[[], T]) -> T:
    """Run ``loader``; turn a :class:`ConfigError` into a one-line :class:`StartupError`."""
    try:
        return loader()
    except ConfigError as exc:
        raise StartupError(f"{prog}: configuration error: {exc}") from None


def is_access_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing the credentials or a command (authentication or
    ACL): a configuration error, which retrying cannot fix, not an outage."""
    if isinstance(exc, (redis.AuthenticationError, redis.exceptions.NoPermissionError,
                        redis.exceptions.AuthenticationWrongNumberOfArgsError)):
        return True
    return isinstance(exc, redis.ResponseError) and any(
        code in str(exc) for code in ACCESS_ERROR_CODES)


def access_error(prog: str, settings: RedisSettings, exc: BaseException) -> StartupError:
    """The one line for an authentication or ACL refusal, password redacted."""
    what = ("refused the credentials" if isinstance(exc, redis.ConnectionError)
            else "refused a command (ACL)")
    return StartupError(
        f"{prog}: configuration error: Redis at {settings.safe_url} {what}: "
        f"{type(exc).__name__}: {redact_text(str(exc), settings.url)} (check REDIS_URL's "
        f"user and password, and the user's ACL: `{prog} check-config` lists the commands "
        "the services need)")


def check_redis_access(prog: str, client: redis.Redis, settings: RedisSettings) -> None:
    """PING once before the loop: an authentication or ACL refusal raises
    :class:`StartupError`; an unreachable server is logged and left to the loop, which
    waits it out."""
    try:
        client.ping()
    except redis.RedisError as exc:
        if is_access_error(exc):
            raise access_error(prog, settings, exc) from None
        log.warning("redis unavailable at start; the loop retries",
                    extra={"url": settings.safe_url,
                           "error": f"{type(exc).__name__}: "
                                    f"{redact_text(str(exc), settings.url)}"})


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


def freeze_startup_heap() -> None:
    """Move every object alive now (modules, clients, plugins, the service) out of the
    garbage collector's reach (:func:`gc.freeze`), so its full collections scan only what
    the loop allocates since. Measured with ``bench/bench_governor.py``'s drain (5,000
    plans over 1,000 symbols, 16 rounds each): the rounds that ran a full collection of the
    start-up heap were 46-48k permits/s against 52-55k for the others; frozen, 51.5-54k,
    against 53-56k with the collector off. Nothing frozen is ever freed, and nothing
    frozen is garbage: these objects live as long as the process."""
    gc.collect()
    gc.freeze()


def run_service(prog: str, host: str, load: Callable[[], Any],
                build: Callable[..., HostService],
                started: Callable[[Any], dict[str, str]] = lambda _config: {}) -> int:
    """The start-up sequence of both ``run`` commands, in order: the configuration (a
    bad value stops here, naming the variable), logging, the plugins, the stop signals, the
    metrics endpoint, the Redis client (one PING: refused credentials or ACL stop here with
    exit status 2, an unreachable server is left to the loop) and the service; then its loop
    until SIGTERM/SIGINT, or until Redis refuses the credentials or a command (exit 2).

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
    client = connect(config.common.redis)
    check_redis_access(prog, client, config.common.redis)
    service = build(config, client, plugins, registry, stop=stop)
    freeze_startup_heap()
    logger = logging.getLogger(f"quantum.{host}")
    logger.info("%s started", host, extra={"url": config.common.redis.safe_url,
                                           "plugin": ",".join(plugins.active) or "-",
                                           **started(config)})
    try:
        service.run()
    except redis.RedisError as exc:  # the loop lets only access refusals through
        if not is_access_error(exc):
            raise
        raise access_error(prog, config.common.redis, exc) from None
    logger.info("%s stopped", host)
    return 0


def main_guard(run: Callable[[], int], prog: str = "quantum-governor",
               redis_url: str | None = None) -> int:
    """Run a command and turn what is not a bug into one line on stderr, no traceback:
    a :class:`StartupError` (exit 2); Redis refusing the credentials or a command (exit 2);
    any other Redis error, e.g. an unreachable server (exit 1); a closed output pipe
    (``… | head``: quietly, exit :data:`EXIT_BROKEN_PIPE`). Output is flushed here, so a
    closed pipe is seen here too. A Redis error is redacted with ``redis_url``'s secrets
    (by default, the environment's Redis settings)."""
    try:
        status = run()
        sys.stdout.flush()
        return status
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except redis.RedisError as exc:
        settings = _redis_settings(redis_url)
        if is_access_error(exc) and settings is not None:
            print(access_error(prog, settings, exc), file=sys.stderr)
            return EXIT_CONFIG
        message = str(exc) if settings is None else redact_text(str(exc), settings.url)
        where = "" if settings is None else f" at {settings.safe_url}"
        print(f"{prog}: Redis error{where}: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1


def _redis_settings(url: str | None) -> RedisSettings | None:
    """The Redis settings of ``url``, else of the environment, for redacting an error;
    None if unusable."""
    from governor_core.config import EnvReader

    try:
        return RedisSettings.from_env(EnvReader()) if url is None else RedisSettings(url)
    except ConfigError:
        return None
