"""How much of an allocation tick is Redis's own work: record one tick's exact bytes, then
send them again from a client that does nothing else.

:class:`TickRecorder` notes, per connection and in order, every send (the RESP bytes) and
every read (how many replies the service waited for). :func:`replay` sends the same bytes in
the same order on fresh sockets and waits for the same reply counts, with no encoding,
decoding or computing in between. Its wall time is the floor any client of this Redis could
reach for that tick (Redis executes commands on one thread); its Redis CPU time is what the
tick's commands cost the server.

The replayed writes land for real (stream entries added under the same caps, the same
hashes overwritten), so replays are done after the measured ticks.

Linux only: the server's CPU time is read from ``/proc/<pid>/schedstat``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import hiredis
import redis

from governor_core import redis_io


def server_cpu_ms(pid: int) -> float:
    """CPU time the process has run for, in ms (all its threads' run time)."""
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as stats:
        return int(stats.read().split()[0]) / 1e6


@dataclass
class TickRecorder:
    """Patches the two I/O points of the service's Redis layer while active.

    ``events`` is a list of ``("send", connection, bytes)`` and ``("read", connection,
    reply count)``, connection being an opaque number that tells connections apart.
    A connection opened while recording does its handshake (``HELLO``, ``CLIENT SETINFO``…)
    through the same send, with replies redis-py reads itself: those sends are left out,
    so a replay sends the service's commands only.
    """

    events: list[tuple[str, int, bytes | int]] = field(default_factory=list)

    def __enter__(self) -> TickRecorder:
        connection = redis.connection.AbstractConnection
        self._send = connection.send_packed_command
        self._read = redis_io._read_replies
        # redis-py >= 6 opens a connection in connect_check_health, older ones in connect.
        self._connect_name = ("connect_check_health" if hasattr(connection,
                                                                "connect_check_health")
                              else "connect")
        self._connect = getattr(connection, self._connect_name)
        send, read, connect, events = self._send, self._read, self._connect, self.events
        opening: set[int] = set()

        def recording_send(conn: object, command: object, check_health: bool = True) -> None:
            if id(conn) not in opening:
                data = b"".join(command) if isinstance(command, list | tuple) else command
                events.append(("send", id(conn), bytes(data)))
            send(conn, command, check_health)

        def noting_connect(conn: object, *args: object, **kwargs: object) -> object:
            opening.add(id(conn))
            try:
                return connect(conn, *args, **kwargs)
            finally:
                opening.discard(id(conn))

        def recording_read(conn: object, count: int) -> list[object]:
            events.append(("read", id(conn), count))
            return read(conn, count)

        connection.send_packed_command = recording_send
        setattr(connection, self._connect_name, noting_connect)
        redis_io._read_replies = recording_read
        return self

    def __exit__(self, *exc: object) -> None:
        connection = redis.connection.AbstractConnection
        connection.send_packed_command = self._send
        setattr(connection, self._connect_name, self._connect)
        redis_io._read_replies = self._read


def replay(events: list[tuple[str, int, bytes | int]], host: str, port: int) -> None:
    """Send the recorded bytes in order, one socket per recorded connection, and wait for
    each recorded read's replies (counted by a hiredis reader, never turned into Python
    objects beyond that). Raises if Redis refuses any replayed command."""
    sockets: dict[int, tuple[socket.socket, hiredis.Reader]] = {}
    try:
        for kind, conn, payload in events:
            if conn not in sockets:
                sock = socket.create_connection((host, port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sockets[conn] = (sock, hiredis.Reader())
            sock, reader = sockets[conn]
            if kind == "send":
                assert isinstance(payload, bytes)
                sock.sendall(payload)
                continue
            awaited = int(payload)
            while awaited:
                reply = reader.gets()
                if reply is False:
                    data = sock.recv(1 << 20)
                    if not data:
                        raise ConnectionError("redis closed the connection during replay")
                    reader.feed(data)
                elif isinstance(reply, hiredis.ReplyError):
                    raise RuntimeError(f"replayed command refused: {reply}")
                else:
                    awaited -= 1
    finally:
        for sock, _ in sockets.values():
            sock.close()
