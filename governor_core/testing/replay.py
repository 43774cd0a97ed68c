"""How much of an allocation tick is Redis's own work: record one tick's exact bytes, then
send them again from a client that does nothing else.

:class:`TickRecorder` notes, per connection and in order, every send (the RESP bytes) and
every read (how many replies the service waited for), on a production client built to be
observed (:func:`governor_core.testing.observed_client`). :func:`replay` sends the same bytes in
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
from typing import Any

import hiredis
import redis

from governor_core.testing import ObservedConnection, observed_client


def server_cpu_ms(pid: int) -> float:
    """CPU time the process has run for, in ms (all its threads' run time)."""
    with open(f"/proc/{pid}/schedstat", encoding="ascii") as stats:
        return int(stats.read().split()[0]) / 1e6


@dataclass
class TickRecorder:
    """Records what the clients made by :meth:`client` send and read, inside ``with`` blocks.

    ``events`` is a list of ``("send", connection, bytes)``, one per ``send_packed_command``,
    and ``("read", connection, reply count)``, one per run of ``read_response`` calls on one
    connection with nothing recorded in between; connection is a number that tells
    connections apart. A connection opened while recording does its handshake (``HELLO``,
    ``CLIENT SETINFO``…) through the same send and read: that is left out, so a replay sends
    the service's commands only. Entering a ``with`` block starts a new recording::

        recorder = TickRecorder()
        service = Service(recorder.client(url))
        with recorder:
            service.step()
        replay(recorder.events, host, port)
    """

    events: list[tuple[str, int, bytes | int]] = field(default_factory=list)
    recording: bool = field(default=False, init=False)

    def client(self, url: str, **kw: Any) -> redis.Redis:
        """The production client for ``url``, recorded here; ``kw`` go to ``connect``."""
        return observed_client(url, self, **kw)

    def __enter__(self) -> TickRecorder:
        self.events.clear()
        self.recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.recording = False

    def sent(self, connection: ObservedConnection, command: Any, new_round_trip: bool) -> None:
        if self.recording and not connection.opening:
            data = b"".join(command) if isinstance(command, list | tuple) else command
            self.events.append(("send", connection.serial, bytes(data)))

    def read(self, connection: ObservedConnection) -> None:
        if not self.recording or connection.opening:
            return
        events, serial = self.events, connection.serial
        if events and events[-1][0] == "read" and events[-1][1] == serial:
            events[-1] = ("read", serial, int(events[-1][2]) + 1)
        else:
            events.append(("read", serial, 1))


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
