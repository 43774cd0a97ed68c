"""The one Redis layer both hosts use: connecting, and riding out outages.

Services never die because Redis went away: :class:`Backoff` spaces out retries
(0.1 s doubling to 5 s), and :func:`REDIS_OUTAGE_ERRORS` lists what counts as an outage.

Decoding, decided once, here: replies are decoded as UTF-8 with redis-py's public
``encoding_errors="surrogateescape"`` option (:data:`ENCODING_ERRORS`; hiredis's parser
honours it, and so does every read of :class:`CommandStream`, which goes through the
connection's own ``read_response``). A byte that is not valid UTF-8, in a value, a field
name or a key name, becomes a lone surrogate (``b"p\\xff"`` → ``"p\\udcff"``) instead of a
``UnicodeDecodeError`` that would stop a service at every restart. No input rule accepts a
surrogate (:mod:`governor_core.parsing`: numbers, ids, symbols are ASCII), so a bad byte is an
input error of the value it is in (a ``bad_encoding`` dead letter, ``invalid_eff``, a
fallback), and the original bytes are ``text.encode("utf-8", "surrogateescape")``. Writes are
strict: hiredis's packer refuses a surrogate (``UnicodeEncodeError``), so whatever is written
back (a dead letter's fields) is escaped first, where it is read (:mod:`governor_core.plans`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from hiredis import pack_command

from governor_core.redis_settings import RedisSettings
from governor_core.scripts import SCRIPTS, is_noscript
from governor_core.sentinel import sentinel_client
from governor_core.wire import Packed

log = logging.getLogger("quantum.redis")

#: Errors that mean "Redis is not reachable right now"; anything else is a bug or bad data.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    # A demoted primary (after a failover) refuses writes until the client reconnects.
    redis.ReadOnlyError,
    OSError,
)


#: How replies are decoded from UTF-8: a bad byte becomes a lone surrogate (module docstring).
ENCODING_ERRORS = "surrogateescape"
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
    With ``REDIS_SENTINELS`` set, the client of the primary the sentinels name
    (:func:`governor_core.sentinel.sentinel_client`).
    """
    options: dict[str, Any] = {}
    if connection_class is not None:
        options["connection_class"] = connection_class
    common: dict[str, Any] = {"protocol": PROTOCOL, "decode_responses": True,
                              "encoding_errors": ENCODING_ERRORS,
                              "socket_connect_timeout": 2.0, "socket_timeout": 10.0}
    if settings.sentinels:
        return sentinel_client(settings, common, health_check_interval, options)
    return redis.Redis.from_url(
        settings.url,
        **common,
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
    raises. Clients that are not plain redis-py clients (fakeredis) get an ordinary
    pipeline, executed at :meth:`replies`.

    Only public APIs are used: redis-py's ``ConnectionPool.get_connection``,
    ``Connection.send_packed_command`` and ``read_response``, and hiredis's
    ``pack_command`` (one C call per command; redis-py's own packer wraps it in a few
    Python calls: 1.35 µs against 0.25 µs a command, measured). The health
    check redis-py runs before a send (a PING, when the connection was idle longer than
    its ``health_check_interval``) is allowed on the first send only: on a later send the
    PING's reply would queue behind this stream's pending replies, and redis-py would read
    one of ours as its PONG.

    Scripts sent as ``EVALSHA`` (:mod:`governor_core.scripts`) that Redis no longer has
    (``NOSCRIPT``: a restart or ``SCRIPT FLUSH``) are loaded and run once more by
    :meth:`replies`, in one more round trip after this stream's other commands; their
    replies take the refused ones' places (the ``register_script`` semantics of redis-py).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._direct = type(client) is redis.Redis
        self._connection: Any = None
        self._sent: list[Command | Packed] = []
        self._awaited = 0  # replies sent for and not read yet
        self._taken = 0  # replies handed out by take()
        self._results: list[object] | None = None  # the pipeline's, when not direct
        self._missing_scripts: list[int] = []  # replies (by number) that were NOSCRIPT

    def send(self, commands: list[Command | Packed]) -> None:
        if not commands:
            return
        self._sent.extend(commands)
        if not self._direct:
            return
        first = self._connection is None
        if first:
            self._connection = self._client.connection_pool.get_connection()
        connection = self._connection
        try:
            # One buffer, one sendall: redis-py sends each item of a list on its own.
            connection.send_packed_command(
                [b"".join([item.wire if type(item) is Packed else pack_command(item)
                           for item in commands])],
                check_health=first)
        except BaseException:
            self._release(broken=True)
            raise
        self._awaited += sum([item.count if type(item) is Packed else 1 for item in commands])

    def take(self, count: int) -> list[object]:
        """The next ``count`` replies (as :meth:`replies` gives them, but without the
        ``NOSCRIPT`` retry), leaving the rest to later calls: the caller works on the first
        replies while Redis still runs the commands behind them. Nothing more may be sent
        on this stream afterwards."""
        if not self._direct:
            return self._pipeline_replies(count)
        if count > self._awaited:
            raise ValueError(f"{count} replies asked for, {self._awaited} awaited")
        taken = self._read(count)
        self._taken += count
        return taken

    def replies(self) -> list[object]:
        """Every reply not yet taken, in order; the connection goes back to the pool."""
        first = self._taken
        if not self._direct:
            replies = self._pipeline_replies(None)
        elif self._connection is None:
            return []
        else:
            replies = self._read(self._awaited)
            self._release(broken=False)
        return self._run_missing_scripts(replies, first)

    def abandon(self) -> None:
        """Drop whatever was sent and not read (a no-op after :meth:`replies`): the
        connection is closed, since its unread replies make it unusable."""
        self._sent, self._taken, self._results = [], 0, None
        if self._connection is not None:
            self._release(broken=True)

    def refusals(self) -> list[redis.ResponseError]:
        """:meth:`replies`, keeping only the commands Redis refused: a write stream's check,
        without a look at every reply (the refusals are noted as they are read)."""
        if not self._direct:
            return [reply for reply in self.replies() if isinstance(reply, Exception)]
        if self._connection is None:
            return []
        first, refused = self._taken, []
        replies = self._read(self._awaited, refused)
        self._release(broken=False)
        if not self._missing_scripts:
            return refused
        return [reply for reply in self._run_missing_scripts(replies, first)
                if isinstance(reply, Exception)]

    def _read(self, count: int, refused: list[redis.ResponseError] | None = None
              ) -> list[object]:
        """The next ``count`` replies, in order; each refusal also goes to ``refused``."""
        read, replies = self._connection.read_response, []
        append = replies.append
        try:
            for index in range(count):
                try:
                    append(read())
                except redis.ResponseError as exc:  # rare: noted here, not searched for
                    append(exc)
                    if refused is not None:
                        refused.append(exc)
                    if is_noscript(exc):
                        self._missing_scripts.append(self._taken + index)
        except BaseException:
            self._release(broken=True)
            raise
        self._awaited -= count
        return replies

    def _pipeline_replies(self, count: int | None) -> list[object]:
        if self._results is None:  # the pipeline runs once, at the first read
            pipe = self._client.pipeline(transaction=False)
            for command in _decoded(self._sent):
                pipe.execute_command(*command)
            self._results = pipe.execute(raise_on_error=False) if len(pipe) else []
        results = self._results
        count = len(results) if count is None else count
        taken, self._results = results[:count], results[count:]
        self._taken += count
        return taken

    def _run_missing_scripts(self, replies: list[object], first: int) -> list[object]:
        """``replies`` (from the ``first`` command sent on), with each ``NOSCRIPT`` refusal
        replaced by the reply of the same command run again after loading its script."""
        if not self._direct:  # the pipeline's replies were not read one by one
            self._missing_scripts = [first + at for at, reply in enumerate(replies)
                                     if is_noscript(reply)]
        refused = [number - first for number in self._missing_scripts if number >= first]
        self._missing_scripts = []
        if not refused:
            return replies
        commands = _decoded(self._sent)[first:]
        again = [commands[at] for at in refused]
        scripts = {script.sha: script for command in again
                   if (script := SCRIPTS.by_sha(str(command[1]))) is not None}
        log.warning("Redis had lost %d script(s); loading them again", len(scripts))
        loads: list[Command | Packed] = [("SCRIPT", "LOAD", script.source)
                                         for script in scripts.values()]
        retried = execute_commands(self._client, [*loads, *again])[len(loads):]
        for at, reply in zip(refused, retried, strict=True):
            replies[at] = reply
        return replies

    def _release(self, *, broken: bool) -> None:
        if self._direct and self._connection is not None:
            if broken:
                self._connection.disconnect()  # a half-read reply stream cannot be reused
            self._client.connection_pool.release(self._connection)
        self._connection, self._awaited = None, 0


def _decoded(items: Sequence[Command | Packed]) -> list[Command]:
    return [command for item in items
            for command in (item.commands() if type(item) is Packed else [item])]


def execute_commands(client: redis.Redis, commands: list[Command | Packed]) -> list[object]:
    """Send ``commands`` in one round trip; one reply per command (see :class:`CommandStream`)."""
    stream = CommandStream(client)
    stream.send(commands)
    return stream.replies()
