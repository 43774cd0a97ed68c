"""Support for the tests and benchmarks of the host and its plugins, shipped with the host.

* :func:`start_redis`: a real ``redis-server`` on a free loopback port (:class:`RedisServer`).
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
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import redis

from governor_core.config import RedisSettings
from governor_core.redis_io import connect

__all__ = [
    "ConnectionObserver",
    "ObservedConnection",
    "RedisServer",
    "RoundTrips",
    "free_port",
    "observed_client",
    "start_redis",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(port: int | None = None, *extra_args: str) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make test installs it)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="qg-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir, *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_connect_timeout=0.2).ping():
                return RedisServer(port, process, workdir)
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


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
