"""Trade plans as read from ``quantum:stream:apply.plan`` (SPEC 3.1), and their validation.

Validation is strict and total: :func:`parse_plan` turns any mapping of strings into either a
:class:`Plan` or a :class:`PlanRejection` with a bounded reason code (used as a metric label)
and a human-readable message (written to the dead-letter stream). It never raises.

Bad bytes. The Redis layer decodes undecodable bytes to lone surrogates
(:func:`governor_core.redis_io.connect`); a plan with one in any field name or value,
``plan_id`` included, is rejected first, as ``bad_encoding``, whatever else it holds. Its
dead letter must still be writable (no encoder writes a lone surrogate), so the rejection's
``fields`` are the plan's with each such name and value backslash-escaped
(``p\\xff1``; :func:`~governor_core.parsing.escaped`), and the message names which ones.
This happens here, not in the writer: the writer is only ever handed encodable text.

Bounded echo. A message quotes at most :data:`~governor_core.parsing.ECHO_CHARS`
characters of a value, then its size (``'99999…'…(1000000 bytes)``), so a 1 MB field never
makes a 1 MB error or log line. The dead letter still keeps every original field whole: it
is the plan's own data (for replay and for its producer to see), the plan stream already
held it, and the dead-letter stream is capped by entries like every stream written here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from governor_core.parsing import SYMBOL_RE, escaped, has_bad_bytes, parse_decimal, shown

_PLAN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

SIDES = ("BUY", "SELL")
#: Bad fields a ``bad_encoding`` message names, at most (then how many more).
NAMED_BAD_FIELDS = 3


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated trade plan. ``entry_id`` is its id in the plan stream."""

    entry_id: str
    plan_id: str
    symbol: str
    side: str
    notional_usd: float
    ts: float | None


@dataclass(frozen=True, slots=True)
class PlanRejection:
    """Why a stream entry is not a plan. ``code`` is one of :data:`REJECTION_CODES`;
    ``fields`` are the entry's own, encodable (see the module's docstring)."""

    entry_id: str
    code: str
    message: str
    fields: Mapping[str, str]

    @property
    def plan_id(self) -> str | None:
        """The entry's ``plan_id`` for a log line's context: at most 128 characters (the
        longest valid id), cut with ``…`` beyond, ``None`` when absent."""
        value = self.fields.get("plan_id")
        if not isinstance(value, str) or len(value) <= 128:
            return value
        return value[:128] + "…"


REJECTION_CODES = ("bad_encoding", "bad_plan_id", "bad_symbol", "bad_side", "bad_notional",
                   "bad_ts")


def _shown(fields: Mapping[str, str], name: str) -> str:
    """A field as an error message names it: its value quoted and bounded, or ``missing``."""
    value = fields.get(name)
    return f"{name} missing" if value is None else f"{name} {shown(value)}"


def parse_plan(entry_id: str, fields: Mapping[str, str]) -> Plan | PlanRejection:
    """The plan in a stream entry's fields, or why it is not one: ``bad_encoding`` if any
    field name or value has bad bytes, else the first failing rule in field order, its
    message naming the field and its value (or ``missing``) and what was expected, e.g.
    ``notional_usd missing: expected a plain decimal number > 0``.

    The encoding is checked after the rules, with the same result: a plan that passes
    them with no field but the core ones is ASCII throughout, so only a rejection or a
    plan with extra fields needs the check."""
    parsed = _parse_rules(entry_id, fields)
    if type(parsed) is Plan and len(fields) == (4 if parsed.ts is None else 5):
        # Only the core fields, each ASCII by its own rule: nothing else to check (the
        # hot path: no per-field encoding check for a plain valid plan).
        return parsed
    bad = _bad_fields(fields)
    return _bad_encoding(entry_id, fields, bad) if bad else parsed


def _parse_rules(entry_id: str, fields: Mapping[str, str]) -> Plan | PlanRejection:
    """SPEC 3.1's rules in field order, encoding aside (see :func:`parse_plan`)."""
    def reject(code: str, message: str) -> PlanRejection:
        return PlanRejection(entry_id, code, message, fields)

    plan_id = fields.get("plan_id")
    if plan_id is None or not _PLAN_ID.fullmatch(plan_id):
        return reject("bad_plan_id",
                      f"{_shown(fields, 'plan_id')}: expected 1-128 of A-Za-z0-9._:-")
    symbol = fields.get("symbol")
    if symbol is None or not SYMBOL_RE.fullmatch(symbol):
        return reject("bad_symbol", f"{_shown(fields, 'symbol')}: expected 2-32 of A-Z0-9")
    side = fields.get("side")
    if side not in SIDES:
        return reject("bad_side", f"{_shown(fields, 'side')}: expected BUY or SELL")
    notional = parse_decimal(fields.get("notional_usd"))
    if notional is None or notional <= 0:
        return reject("bad_notional", f"{_shown(fields, 'notional_usd')}: expected a plain "
                      "decimal number > 0 (e.g. 2500.5)")
    ts: float | None = None
    if "ts" in fields:
        ts = parse_decimal(fields["ts"])
        if ts is None:
            return reject("bad_ts", f"{_shown(fields, 'ts')}: expected Unix epoch seconds "
                          "as a plain decimal")
    return Plan(entry_id, plan_id, symbol, side, notional, ts)


def _bad_fields(fields: Mapping[str, str]) -> list[tuple[str, bool]]:
    """Each field whose name or value has bad bytes, as ``(name, name_is_bad)``. An entry
    of ASCII text is cleared by two ``isascii`` checks."""
    try:
        if "".join(fields).isascii() and "".join(fields.values()).isascii():
            return []
    except TypeError:  # not all text: checked one by one
        pass
    return [(name, bad_name) for name, value in fields.items()
            if (bad_name := isinstance(name, str) and has_bad_bytes(name))
            or (isinstance(value, str) and has_bad_bytes(value))]


def _bad_encoding(entry_id: str, fields: Mapping[str, str],
                  bad: list[tuple[str, bool]]) -> PlanRejection:
    named = [f"field name {shown(name)}" if bad_name else _shown(fields, name)
             for name, bad_name in bad[:NAMED_BAD_FIELDS]]
    more = f" and {len(bad) - NAMED_BAD_FIELDS} more" if len(bad) > NAMED_BAD_FIELDS else ""
    message = (f"{', '.join(named)}{more}: not valid UTF-8 (kept in this dead letter with "
               "each bad byte written as \\xNN)")
    kept: dict[str, str] = {}
    for name, value in fields.items():
        name = escaped(name) if isinstance(name, str) else name
        while name in kept:  # two names that differ only in how a byte is written
            name = f"{name}~"
        kept[name] = escaped(value) if isinstance(value, str) else value
    return PlanRejection(entry_id, "bad_encoding", message, kept)
