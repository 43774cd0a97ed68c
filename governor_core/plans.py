"""Trade plans as read from ``quantum:stream:apply.plan`` (SPEC 3.1), and their validation.

Validation is strict and total: :func:`parse_plan` turns any mapping of strings into either a
:class:`Plan` or a :class:`PlanRejection` with a bounded reason code (used as a metric label)
and a human-readable message (written to the dead-letter stream). It never raises.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

_PLAN_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SYMBOL = re.compile(r"[A-Z0-9]{2,32}")
# Plain decimal or exponent notation only: Python's float() would also take "1_000",
# " 5", "nan" and "infinity", none of which a plan producer means.
_DECIMAL = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

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


def parse_decimal(text: str | None) -> float | None:
    """A finite, non-negative number from a decimal string, or None for anything else."""
    if text is None:
        return None
    # The common "123.45" skips the regex (10⁴ numbers a tick); ASCII digits and at most
    # one dot are a subset of what _DECIMAL accepts, so the result is the same.
    if not (text.isascii() and text.replace(".", "", 1).isdigit()) and not _DECIMAL.fullmatch(
            text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def parse_signed_decimal(text: str | None) -> float | None:
    """Like :func:`parse_decimal`, but a leading ``-`` is allowed (e.g. a cluster's alpha)."""
    if text is not None and text.startswith("-") and not text.startswith("-+"):
        value = parse_decimal(text[1:])
        return None if value is None else -value
    return parse_decimal(text)


def parse_plan(entry_id: str, fields: Mapping[str, str]) -> Plan | PlanRejection:
    def reject(code: str, message: str) -> PlanRejection:
        return PlanRejection(entry_id, code, message, fields)

    plan_id = fields.get("plan_id")
    if plan_id is None or not _PLAN_ID.fullmatch(plan_id):
        return reject("bad_plan_id", f"plan_id {plan_id!r}: expected 1-128 of A-Za-z0-9._:-")
    symbol = fields.get("symbol")
    if symbol is None or not _SYMBOL.fullmatch(symbol):
        return reject("bad_symbol", f"symbol {symbol!r}: expected 2-32 of A-Z0-9")
    side = fields.get("side")
    if side not in SIDES:
        return reject("bad_side", f"side {side!r}: expected BUY or SELL")
    notional = parse_decimal(fields.get("notional_usd"))
    if notional is None or notional <= 0:
        return reject("bad_notional",
                      f"notional_usd {fields.get('notional_usd')!r}: expected a finite number > 0")
    ts: float | None = None
    if "ts" in fields:
        ts = parse_decimal(fields["ts"])
        if ts is None:
            return reject("bad_ts", f"ts {fields['ts']!r}: expected Unix epoch seconds")
    return Plan(entry_id, plan_id, symbol, side, notional, ts)
