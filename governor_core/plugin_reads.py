"""The plugins' ``read_commands``, sent in their host's own read round trip.

A host builds one :class:`PluginReads` and calls :meth:`~PluginReads.request` per batch or
cycle, appends the request's :attr:`ReadRequest.commands` after its own reads, and hands
the replies back through :meth:`ReadRequest.reads`. A plugin's request is checked before
anything is sent: tuples of strings naming a command of
:data:`~governor_core.hookspecs.READ_COMMANDS`. Anything else is that plugin's error
(logged, counted, its reads dropped); since the commands are encoded here, never taken as
wire text, no plugin can garble the host's own reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from governor_core.hookspecs import READ_COMMANDS, Reads
from governor_core.plugins import PluginHost
from governor_core.wire import Packed, bulk

#: Encoded plugin read commands remembered between batches (then the memory starts over).
MAX_REMEMBERED_READS = 100_000


class PluginReads:
    """Each plugin's ``read_commands`` for one host, checked and encoded.

    Each command's encoding is remembered between calls, by the identity of its tuple (a
    plugin asks for the same keys batch after batch; see the contract in
    :mod:`governor_core.hookspecs`).
    """

    def __init__(self, plugins: PluginHost) -> None:
        self.plugins = plugins
        self._wire: dict[int, tuple[tuple[str, ...], str]] = {}  # id -> (command, text)

    def __bool__(self) -> bool:
        return bool(self.plugins.implementers("read_commands"))

    def request(self, symbols: Sequence[str], now: float) -> ReadRequest:
        symbols = tuple(symbols)
        commands: list[Packed] = []
        owners: list[tuple[str, int]] = []
        for plugin, asked in self.plugins.read_commands(symbols, now):
            try:
                asked = list(asked)
                wire = self._encoded(asked)
            except (TypeError, ValueError) as exc:
                self.plugins.record_error(plugin, "read_commands", exc)
                continue
            commands.append(Packed(wire.encode(), len(asked)))
            owners.append((plugin, len(asked)))
        return ReadRequest(symbols, commands, owners)

    def _encoded(self, asked: Sequence[tuple[str, ...]]) -> str:
        """The commands as RESP text. Remembered by identity: a plugin that keeps its
        command tuples (as :class:`~governor_core.efficiency.EfficiencyReader` does) costs
        a lookup per command, not a hash of every argument (the tuple is kept with its
        text, so its id cannot be reused while remembered)."""
        memory = self._wire
        if len(memory) > MAX_REMEMBERED_READS:
            memory.clear()
        parts = []
        for command in asked:
            known = memory.get(id(command))
            if known is not None and known[0] is command:
                parts.append(known[1])
                continue
            if type(command) is not tuple or not command or not all(
                    type(arg) is str for arg in command):
                raise TypeError(f"a read command must be a tuple of strings, "
                                f"not {command!r:.80}")
            if command[0].upper() not in READ_COMMANDS:
                raise ValueError(f"{command[0]!r} is not a read command the host sends "
                                 f"(allowed: {', '.join(sorted(READ_COMMANDS))})")
            wire = f"*{len(command)}\r\n{''.join(map(bulk, command))}"
            memory[id(command)] = (command, wire)
            parts.append(wire)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """The plugins' reads for one batch or cycle: ``commands`` to send after the host's
    own, and which plugin asked for how many (in order)."""

    symbols: tuple[str, ...]
    commands: list[Packed]
    owners: list[tuple[str, int]]

    def reads(self, replies: Sequence[object]) -> dict[str, Reads]:
        """Each plugin's :class:`~governor_core.hookspecs.Reads`, from the replies to
        :attr:`commands` (in order)."""
        result, at = {}, 0
        for plugin, count in self.owners:
            result[plugin] = Reads(self.symbols, list(replies[at:at + count]))
            at += count
        return result


NO_READS = ReadRequest((), [], [])
