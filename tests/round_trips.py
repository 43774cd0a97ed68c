"""Counting Redis round trips on the client, for the tests and the benchmarks.

A round trip is a send that has to wait for a reply: every request phase of a connection,
however many writes it takes. A pipeline sent in several chunks before any reply is read
(:class:`governor_core.redis_io.CommandStream`) is one round trip; a send that follows a
read on the same connection starts the next one. Sends go through redis-py's
``send_packed_command``; every socket read of the hiredis parser goes through
``read_from_socket``.
"""

from __future__ import annotations

import redis
from redis._parsers.hiredis import _HiredisParser


class RoundTrips:
    """Patches both methods while active (``with RoundTrips() as trips: …; trips.count``)."""

    def __init__(self) -> None:
        self.count = 0
        self._awaiting: dict[int, bool] = {}
        self._send = redis.connection.AbstractConnection.send_packed_command
        self._read = _HiredisParser.read_from_socket

    def __enter__(self) -> RoundTrips:
        send, read, awaiting = self._send, self._read, self._awaiting

        def counting_send(conn: object, command: object, check_health: bool = True) -> None:
            key = id(getattr(conn, "_parser", conn))
            if not awaiting.get(key):
                self.count += 1
                awaiting[key] = True
            send(conn, command, check_health)

        def noting_read(parser: object, *args: object, **kwargs: object) -> object:
            awaiting[id(parser)] = False
            return read(parser, *args, **kwargs)

        redis.connection.AbstractConnection.send_packed_command = counting_send
        _HiredisParser.read_from_socket = noting_read
        return self

    def __exit__(self, *exc: object) -> None:
        redis.connection.AbstractConnection.send_packed_command = self._send
        _HiredisParser.read_from_socket = self._read
