"""The one Redis layer both hosts use: connecting, and riding out outages.

Services never die because Redis went away: :class:`Backoff` spaces out retries
(0.1 s doubling to 5 s), and :func:`REDIS_OUTAGE_ERRORS` lists what counts as an outage.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import redis

from governor_core.config import RedisSettings
from governor_core.wire import Packed

try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - hiredis is a declared dependency
    _hiredis = None
try:  # redis-py's "reader needs more data" marker; without it replies take the slow path
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - a redis-py that moved it
    _NOT_ENOUGH_DATA = None

log = logging.getLogger("quantum.redis")

#: Errors that mean "Redis is not reachable right now"; anything else is a bug or bad data.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    OSError,
)


#: The RESP version every reply-handling path here assumes (redis-py 8 defaults to RESP3,
#: whose push messages and map replies would arrive where RESP2 replies are expected).
PROTOCOL = 2
#: Seconds a pooled connection may sit idle before redis-py PINGs it before the next
#: command (a dead connection is then found before a batch is sent on it).
HEALTH_CHECK_INTERVAL_SEC = 30.0


def connect(settings: RedisSettings, *, health_check_interval: float = HEALTH_CHECK_INTERVAL_SEC,
            connection_class: type[redis.Connection] | None = None) -> redis.Redis:
    """The production client: RESP2, decoded responses, bounded socket timeouts and a
    health check on idle connections.

    Connecting is lazy: an unreachable server shows up on the first command, where the
    caller's retry loop handles it. ``connection_class`` (a subclass of
    :class:`redis.Connection`) is for instrumenting the client, e.g. counting round trips
    in the tests and benchmarks; it replaces the class the URL scheme would choose.
    """
    options: dict[str, Any] = {}
    if connection_class is not None:
        options["connection_class"] = connection_class
    return redis.Redis.from_url(
        settings.url,
        protocol=PROTOCOL,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=health_check_interval,
        retry_on_timeout=False,
        **options,
    )


@dataclass
class Backoff:
    """Exponential backoff that a stop event can interrupt."""

    stop: threading.Event
    initial: float = 0.1
    cap: float = 5.0
    _delay: float = field(default=0.0, init=False)

    def failed(self, what: str, error: BaseException) -> None:
        """Log the outage and wait before the next attempt (returns early on stop)."""
        self._delay = self.initial if self._delay == 0.0 else min(self.cap, self._delay * 2)
        log.warning("redis unavailable during %s; retrying", what,
                    extra={"error": f"{type(error).__name__}: {error}",
                           "delay_sec": self._delay})
        self.stop.wait(self._delay)

    def succeeded(self) -> None:
        if self._delay:
            log.info("redis reachable again")
        self._delay = 0.0


Command = tuple[str | int | float, ...]


class CommandStream:
    """Commands sent in several writes on one connection; every reply read at the end.

    Redis starts executing the first commands while the caller is still preparing the
    next ones, so a caller that sends in chunks overlaps its own work with the server's.
    Replies come back in order, one per command: a command Redis refuses yields its
    :class:`redis.ResponseError` in the list (the others still run); a connection failure
    raises. With hiredis each command is packed by one C call (redis-py's per-argument
    Python packing dominated the governor's write path). Clients that are not plain
    redis-py clients (fakeredis) get an ordinary pipeline, executed at :meth:`replies`.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._fast = _hiredis is not None and type(client) is redis.Redis
        self._connection: Any = None
        self._sent = 0
        self._queued: list[Command | Packed] = []
        self._executed: list[object] | None = None  # the pipeline's results (not fast)

    def send(self, commands: list[Command | Packed]) -> None:
        if not commands:
            return
        if not self._fast:
            self._queued.extend(commands)
            return
        if self._connection is None:
            self._connection = self._client.connection_pool.get_connection()
        try:
            self._connection.send_packed_command([b"".join(
                [c.wire if type(c) is Packed else _hiredis.pack_command(c) for c in commands])])
        except BaseException:
            self._release(broken=True)
            raise
        self._sent += sum([c.count if type(c) is Packed else 1 for c in commands])

    def take(self, count: int) -> list[object]:
        """The next ``count`` replies (as :meth:`replies` gives them), leaving the rest to
        later calls: the caller works on the first replies while Redis still runs the
        commands behind them. Nothing more may be sent on this stream afterwards."""
        if not self._fast:
            if self._executed is None:
                self._executed = self._execute_queued()
            taken, self._executed = self._executed[:count], self._executed[count:]
            return taken
        if count > self._sent:
            raise ValueError(f"{count} replies asked for, {self._sent} awaited")
        try:
            taken = _read_replies(self._connection, count) if count else []
        except BaseException:
            self._release(broken=True)
            raise
        self._sent -= count
        return taken

    def replies(self) -> list[object]:
        """Every reply not yet taken, in order; the connection goes back to the pool."""
        if not self._fast:
            rest = self._executed if self._executed is not None else self._execute_queued()
            self._executed = None
            return rest
        connection = self._connection
        if connection is None:
            return []
        try:
            replies = _read_replies(connection, self._sent)
        except BaseException:
            self._release(broken=True)
            raise
        self._release(broken=False)
        return replies

    def _execute_queued(self) -> list[object]:
        pipe = self._client.pipeline(transaction=False)
        for item in self._queued:
            for command in item.commands() if type(item) is Packed else [item]:
                pipe.execute_command(*command)
        self._queued = []
        return pipe.execute(raise_on_error=False) if len(pipe) else []

    def abandon(self) -> None:
        """Drop whatever was sent and not read (a no-op after :meth:`replies`): the
        connection is closed, since its unread replies make it unusable."""
        self._queued, self._executed = [], None
        if self._connection is not None:
            self._release(broken=True)

    def _release(self, *, broken: bool) -> None:
        if self._connection is not None:
            if broken:
                self._connection.disconnect()  # a half-read reply stream cannot be reused
            self._client.connection_pool.release(self._connection)
        self._connection, self._sent = None, 0


def _read_replies(connection: Any, count: int) -> list[object]:
    """``count`` replies, in order; a refused command's :class:`redis.ResponseError` is kept
    in the list.

    With redis-py's hiredis parser the replies are taken straight from its reader, feeding
    it from the socket when it runs dry: ``connection.read_response`` costs about 5 µs of
    Python per reply, which at 10⁴ replies a tick was a fifth of the allocation cycle. The
    parser's own reader and socket reads are used, so nothing is buffered beside it. Any
    other parser (no hiredis, a future redis-py) takes the documented path.
    """
    parser = getattr(connection, "_parser", None)
    reader = getattr(parser, "_reader", None)
    feed = getattr(parser, "read_from_socket", None)
    replies: list[object] = []
    if (_hiredis is None or _NOT_ENOUGH_DATA is None or feed is None
            or not isinstance(reader, _hiredis.Reader)):
        for _ in range(count):
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    gets, append = reader.gets, replies.append
    while len(replies) < count:
        reply = gets()
        if reply is _NOT_ENOUGH_DATA:  # the parser's marker for "feed me more"
            feed()  # raises redis.TimeoutError / ConnectionError as read_response would
            continue
        append(reply)
    for reply in replies:  # hiredis hands back a dropped connection as a value
        if isinstance(reply, redis.ConnectionError):
            raise reply
    return replies


def execute_commands(client: redis.Redis, commands: list[Command | Packed]) -> list[object]:
    """Send ``commands`` in one round trip; one reply per command (see :class:`CommandStream`)."""
    stream = CommandStream(client)
    stream.send(commands)
    return stream.replies()
