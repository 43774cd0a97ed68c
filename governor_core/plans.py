"""Trade plans as read from ``quantum:stream:apply.plan`` (SPEC 3.1), and their validation.

Validation is strict and total: :func:`parse_plan` turns any mapping of strings into either a
:class:`Plan` or a :class:`PlanRejection` with a bounded reason code (used as a metric label)
and a human-readable message (written to the dead-letter stream). It never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from governor_core.parsing import SYMBOL_RE, parse_decimal

_PLAN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

SIDES = ("BUY", "SELL")


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
    """Why a stream entry is not a plan. ``code`` is one of :data:`REJECTION_CODES`."""

    entry_id: str
    code: str
    message: str
    fields: Mapping[str, str]


REJECTION_CODES = ("bad_plan_id", "bad_symbol", "bad_side", "bad_notional", "bad_ts")


def _shown(fields: Mapping[str, str], name: str) -> str:
    """A field as an error message names it: its value quoted, or ``missing``."""
    value = fields.get(name)
    return f"{name} missing" if value is None else f"{name} {value!r}"


def parse_plan(entry_id: str, fields: Mapping[str, str]) -> Plan | PlanRejection:
    """The plan in a stream entry's fields, or why it is not one: the first failing rule
    in field order, its message naming the field and its value (or ``missing``) and what
    was expected, e.g. ``notional_usd missing: expected a plain decimal number > 0``."""
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
