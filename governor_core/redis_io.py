"""The one Redis layer both hosts use: connecting, and riding out outages.

Services never die because Redis went away: :class:`Backoff` spaces out retries
(0.1 s doubling to 5 s), and :func:`REDIS_OUTAGE_ERRORS` lists what counts as an outage.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis

from governor_core.config import RedisSettings

try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - hiredis is a declared dependency
    _hiredis = None

log = logging.getLogger("quantum.redis")

#: Errors that mean "Redis is not reachable right now"; anything else is a bug or bad data.
REDIS_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    OSError,
)


def connect(settings: RedisSettings) -> redis.Redis:
    """A client with decoded responses and bounded socket timeouts.

    Connecting is lazy: an unreachable server shows up on the first command, where the
    caller's retry loop handles it.
    """
    return redis.Redis.from_url(
        settings.url,
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=10.0,
        health_check_interval=30,
        retry_on_timeout=False,
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


def execute_commands(client: redis.Redis, commands: list[Command]) -> list[object]:
    """Send ``commands`` in one round trip; return one reply per command, in order.

    A command Redis refuses yields its :class:`redis.ResponseError` in the list (the others
    still run); a connection failure raises. This is ``pipeline().execute(raise_on_error=
    False)`` without redis-py's per-argument Python packing, which dominates the governor's
    write path: with hiredis, each command is packed by one C call. Clients that are not
    plain TCP/Unix redis-py clients (fakeredis) take the ordinary pipeline.
    """
    if not commands:
        return []
    if _hiredis is None or type(client) is not redis.Redis:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        connection.send_packed_command([b"".join(map(_hiredis.pack_command, commands))])
        replies: list[object] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        connection.disconnect()  # a half-read reply stream cannot be reused
        raise
    finally:
        pool.release(connection)
