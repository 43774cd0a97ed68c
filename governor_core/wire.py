"""RESP, the wire format of a Redis request, built from text for the hot paths.

A request is an array of bulk strings (``*<count>\r\n`` then ``$<bytes>\r\n<arg>\r\n``
per argument). The hot paths splice it from cached text instead of packing every argument
(see :class:`Packed`), from templates generated from their field tuples
(:mod:`governor_core.templates`): no count or length is written by hand. Everything here
is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Packed:
    """``count`` commands already encoded in RESP (the wire format of a request: an array
    of bulk strings each), built by the caller from cached text with :func:`bulk` or a
    :class:`RowTemplate`.

    hiredis's ``pack_command`` costs about 0.13 µs per argument. A tick's 10⁴ stream
    entries of 20–50 arguments, most of them the same for the whole tick, are several
    times cheaper to splice column by column from cached text (see :class:`RowTemplate`).
    :meth:`commands` decodes them back (the fakeredis path and the tests use it), so an
    encoding slip shows up as a wrong argument, never as a silent difference.
    """

    wire: bytes
    count: int = 1

    @classmethod
    def of(cls, *parts: str) -> Packed:
        """One command; ``parts`` are :func:`bulk` encodings."""
        return cls(f"*{len(parts)}\r\n{''.join(parts)}".encode())

    def commands(self) -> list[tuple[str, ...]]:
        wire, at, commands = self.wire, 0, []
        while at < len(wire):
            if wire[at:at + 1] != b"*":
                raise ValueError(f"not a RESP array at byte {at}")
            count_end = wire.index(b"\r\n", at)
            size = int(wire[at + 1:count_end])
            args, at = [], count_end + 2
            for _ in range(size):
                size_end = wire.index(b"\r\n", at)
                start = size_end + 2
                end = start + int(wire[at + 1:size_end])
                args.append(wire[start:end].decode())
                at = end + 2
            commands.append(tuple(args))
        if len(commands) != self.count:
            raise ValueError(f"{len(commands)} commands encoded, {self.count} declared")
        return commands


def bulk(value: str) -> str:
    """One argument in RESP, as text (``$<bytes>\r\n<value>\r\n``)."""
    size = len(value) if value.isascii() else len(value.encode())
    return f"${size}\r\n{value}\r\n"


def bulk_column(values: Sequence[str]) -> list[str]:
    """``[bulk(v) for v in values]``; for an ASCII column (symbols, keys, numbers) without a
    Python call per value."""
    if "".join(values).isascii():
        return [f"${len(value)}\r\n{value}\r\n" for value in values]
    return list(map(bulk, values))
