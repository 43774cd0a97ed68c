"""RESP templates generated from field tuples, for writes of 10⁴ entries per tick.

A :class:`CommandTemplate` is a command's arguments, each a literal (the command, a key,
a field name) or a :class:`Slot` filled in at encode time; :func:`field_pairs` turns a
field tuple into name/value pairs. A :class:`RowTemplate` is the commands written per row
(e.g. per symbol ``XADD``, ``HSET``, ``EXPIRE``), compiled once: argument counts and byte
lengths are computed, never written by hand, so adding a field is a one-tuple edit.
Pure: text in, :class:`~governor_core.wire.Packed` out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import count
from typing import Any

from governor_core.wire import Packed, bulk


@dataclass(frozen=True, slots=True)
class Slot:
    """An argument of a :class:`CommandTemplate` that is filled in at encode time, by
    name (the same name may appear in several commands of a row)."""

    name: str


def field_pairs(names: Iterable[str]) -> tuple[str | Slot, ...]:
    """A hash's or a stream entry's fields as template arguments: each name as a literal,
    then a :class:`Slot` of the same name for its value."""
    return tuple(item for name in names for item in (name, Slot(name)))


class CommandTemplate:
    """One command; each argument a literal (the command, a key, a field name) or a
    :class:`Slot`. Its argument count is that of ``args``."""

    __slots__ = ("args",)

    def __init__(self, *args: str | Slot) -> None:
        if not args or not isinstance(args[0], str):
            raise ValueError(f"a command template starts with the command's name: {args!r}")
        self.args = args

    def parts(self) -> Iterator[str | Slot]:
        """The command's RESP: the count and each literal already encoded, slots as such."""
        yield f"*{len(self.args)}\r\n"
        for arg in self.args:
            yield arg if isinstance(arg, Slot) else bulk(arg)


@dataclass(frozen=True, slots=True)
class Group:
    """Slot values that follow from a per-row key which takes few distinct values (the
    fields a cluster's symbols share): encoded once per distinct key, not once per row.

    ``keys`` holds one hashable key per row; ``columns`` is called once with the distinct
    keys (in order of first appearance) and returns, per slot of the group, one value per
    distinct key.
    """

    keys: Sequence[Hashable]
    columns: Callable[[list[Any]], Mapping[str, Sequence[str]]]


def _merged(parts: Iterable[str | Slot]) -> list[str | Slot]:
    """``parts`` with each run of adjacent literals joined into one."""
    merged: list[str | Slot] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return merged


@dataclass(frozen=True, slots=True)
class _Values:
    """One text per item for a place in a template: plain ASCII values, whose RESP the
    splice writes inline (``encoded`` False), or texts already in RESP."""

    texts: Sequence[str]
    encoded: bool


def _values(values: Sequence[str], name: str) -> _Values:
    try:
        ascii_only = "".join(values).isascii()
    except TypeError:
        raise TypeError(f"slot {name!r}: every value must be a str") from None
    return _Values(values, False) if ascii_only else _Values(list(map(bulk, values)), True)


@lru_cache(maxsize=256)
def _splicer(shape: tuple[tuple[str, int], ...], sequences: int) -> Callable[..., list[str]]:
    """A function ``(literal0, …, sequence0, …)`` → one text per item, written for this
    shape: ``("literal", i)``, ``("value", j)`` (a plain value, bulk-encoded inline) or
    ``("text", j)`` (already RESP), in wire order.

    Generated (as :func:`collections.namedtuple` and :mod:`dataclasses` generate code):
    one f-string per item costs one Python step per item, where a list per column costs
    one per value. Only parameter names are written into the source, never a value.
    """
    pieces = []
    for kind, index in shape:
        if kind == "literal":
            pieces.append(f"{{literal{index}}}")
        elif kind == "text":
            pieces.append(f"{{value{index}}}")
        else:
            pieces.append(f"${{len(value{index})}}\\r\\n{{value{index}}}\\r\\n")
    literals = sum(kind == "literal" for kind, _ in shape)
    parameters = [*(f"literal{number}" for number in range(literals)),
                  *(f"sequence{number}" for number in range(sequences))]
    values = ", ".join(f"value{number}" for number in range(sequences))
    source = (f"def splice({', '.join(parameters)}):\n"
              f"    return [f\"{''.join(pieces)}\"\n"
              f"            for {values}, in zip({', '.join(parameters[literals:])})]\n")
    namespace: dict[str, Any] = {}
    exec(compile(source, "<RowTemplate splice>", "exec"), namespace)
    return namespace["splice"]


def column_splicer(kinds: Sequence[str]) -> Callable[..., list[str]]:
    """A function of ``len(kinds)`` columns (sequences of equal length) that returns, per
    row, the row's values one after the other: a ``"value"`` column holds plain ASCII
    values, written as RESP bulk strings; a ``"text"`` column holds text already in RESP,
    written as it is. One generated f-string per row (see :func:`_splicer`)::

        column_splicer(("value", "value"))(["a", "bc"], ["d", "e"])
        == ["$1\\r\\na\\r\\n$1\\r\\nd\\r\\n", "$2\\r\\nbc\\r\\n$1\\r\\ne\\r\\n"]
    """
    unknown = sorted(set(kinds) - {"value", "text"})
    if unknown:
        raise ValueError(f"column kinds are 'value' or 'text', not {unknown}")
    return _splicer(tuple((kind, index) for index, kind in enumerate(kinds)), len(kinds))


class _Splice:
    """Literals and :class:`_Values` in wire order, spliced into one text per item."""

    def __init__(self, parts: Sequence[str | _Values], items: int) -> None:
        # A value used more than once in an item is encoded once, beforehand: measured,
        # a second inline length costs more than a list of its own.
        uses = Counter(id(part) for part in parts if isinstance(part, _Values))
        literals: list[str] = []
        sequences: list[Sequence[str]] = []
        index_of: dict[int, int] = {}
        shape: list[tuple[str, int]] = []
        for part in parts:
            if isinstance(part, str):
                shape.append(("literal", len(literals)))
                literals.append(part)
                continue
            index = index_of.setdefault(id(part), len(sequences))
            inline = not part.encoded and uses[id(part)] == 1
            if index == len(sequences):
                sequences.append(part.texts if part.encoded or inline else [
                    f"${len(value)}\r\n{value}\r\n" for value in part.texts])
            shape.append(("value" if inline else "text", index))
        self._items = items
        self._literals = literals
        self._sequences = sequences
        self._splice = _splicer(tuple(shape), len(sequences)) if sequences else None

    def texts(self, start: int = 0, end: int | None = None) -> list[str]:
        """The texts of items ``start`` to ``end``."""
        if self._splice is None:
            return ["".join(self._literals)] * len(range(self._items)[start:end])
        return self._splice(*self._literals,
                            *[sequence[start:end] for sequence in self._sequences])


class _EncodedGroup:
    """A :class:`Group` at encode time: its distinct keys and their columns, and each
    row's key as the first row that has it (one hash per row)."""

    def __init__(self, group: Group) -> None:
        first_row: dict[Hashable, int] = {}
        self._row_keys = list(map(first_row.setdefault, group.keys, count()))
        self._first_rows = first_row.values()
        self.distinct = len(first_row)
        self.columns = group.columns(list(first_row))
        self._values: dict[str, _Values] = {}
        self._runs: dict[tuple[str | Slot, ...], _Values] = {}

    def run(self, parts: tuple[str | Slot, ...]) -> _Values:
        """``parts`` (the group's slots and the literals between them), spliced once per
        distinct key, then one text per row; the same run twice in a row is spliced once."""
        known = self._runs.get(parts)
        if known is not None:
            return known
        spliced = _Splice([part if isinstance(part, str) else self._value(part.name)
                           for part in parts], self.distinct).texts()
        if self.distinct < len(self._row_keys):
            by_first_row = dict(zip(self._first_rows, spliced, strict=True))
            spliced = list(map(by_first_row.__getitem__, self._row_keys))
        known = self._runs[parts] = _Values(spliced, True)
        return known

    def _value(self, name: str) -> _Values:
        if name not in self._values:
            self._values[name] = _values(self.columns[name], name)
        return self._values[name]


class RowTemplate:
    """The commands written for each row (e.g. per symbol: ``XADD``, ``HSET``,
    ``EXPIRE``), compiled at construction: counts and literals encoded, adjacent literals
    merged.

    At encode time each slot gets its value one of three ways: ``tick`` (one text for every
    row, merged with the literals around it), ``columns`` (one text per row) or a
    :class:`Group`. Byte lengths are computed, and correct for non-ASCII text (the inline
    length is used only for an all-ASCII column). Each row is then one f-string over its
    literals, columns and group texts.
    """

    __slots__ = ("commands_per_row", "parts", "slots")

    def __init__(self, *commands: CommandTemplate) -> None:
        self.commands_per_row = len(commands)
        self.parts = tuple(_merged(part for command in commands for part in command.parts()))
        self.slots = tuple(dict.fromkeys(
            part.name for part in self.parts if isinstance(part, Slot)))

    def chunks(self, *, tick: Mapping[str, str] | None = None,
               columns: Mapping[str, Sequence[str]] | None = None,
               groups: Sequence[Group] = (), chunk_rows: int | None = None,
               ) -> Iterator[Packed]:
        """Every row's commands, in row order, ``chunk_rows`` rows per :class:`Packed`
        (all in one when None). Every slot must get exactly one value and every column
        and group one entry per row (else :class:`ValueError`, naming the slot)."""
        tick, columns = tick or {}, columns or {}
        rows = self._rows(columns, groups)
        encoded_groups = [_EncodedGroup(group) for group in groups]
        self._check(tick, columns, encoded_groups)
        if not rows:
            return
        group_of = {name: group for group in encoded_groups for name in group.columns}
        layout = _merged(bulk(tick[part.name]) if isinstance(part, Slot) and part.name in tick
                         else part for part in self.parts)
        column_values = {name: _values(values, name) for name, values in columns.items()}
        parts: list[str | _Values] = []
        at = 0
        while at < len(layout):
            part = layout[at]
            group = None if isinstance(part, str) else group_of.get(part.name)
            if group is None:
                parts.append(part if isinstance(part, str) else column_values[part.name])
                at += 1
                continue
            end = at + 1  # the run: this group's slots and the literals between them
            while end < len(layout):
                if _slot_of(layout[end], group_of) is group:
                    end += 1
                elif (isinstance(layout[end], str) and end + 1 < len(layout)
                      and _slot_of(layout[end + 1], group_of) is group):
                    end += 2
                else:
                    break
            parts.append(group.run(tuple(layout[at:end])))
            at = end
        splice = _Splice(parts, rows)
        step = chunk_rows or rows
        for start in range(0, rows, step):
            end = min(start + step, rows)
            wire = "".join(splice.texts(start, end))
            yield Packed(wire.encode(), self.commands_per_row * (end - start))

    @staticmethod
    def _rows(columns: Mapping[str, Sequence[str]], groups: Sequence[Group]) -> int:
        sizes = {f"column {name!r}": len(values) for name, values in columns.items()}
        sizes.update((f"group {number}'s keys", len(group.keys))
                     for number, group in enumerate(groups))
        if not sizes:
            raise ValueError("no per-row values: give at least one column or group")
        rows = max(sizes.values())
        short = [name for name, size in sizes.items() if size != rows]
        if short:
            raise ValueError(f"{', '.join(short)}: fewer values than the {rows} rows")
        return rows

    def _check(self, tick: Mapping[str, str], columns: Mapping[str, Sequence[str]],
               groups: list[_EncodedGroup]) -> None:
        not_text = [name for name, value in tick.items() if not isinstance(value, str)]
        if not_text:
            raise TypeError(f"tick slots {not_text}: the value must be a str")
        given = [*tick, *columns]
        for number, group in enumerate(groups):
            given += group.columns
            short = [name for name, column in group.columns.items()
                     if len(column) != group.distinct]
            if short:
                raise ValueError(f"group {number}: slots {short} need one value for each "
                                 f"of the {group.distinct} distinct keys")
        twice = sorted({name for name in given if given.count(name) > 1})
        unknown = sorted(set(given) - set(self.slots))
        missing = [name for name in self.slots if name not in given]
        if twice or unknown or missing:
            raise ValueError(
                f"slot values do not fit the template: given twice {twice}, not a slot "
                f"{unknown}, missing {missing} (slots: {', '.join(self.slots)})")


def _slot_of(part: str | Slot, group_of: Mapping[str, _EncodedGroup]) -> _EncodedGroup | None:
    return None if isinstance(part, str) else group_of.get(part.name)
