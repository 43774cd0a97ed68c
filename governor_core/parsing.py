"""How the services read the values other services write: the one home of each rule.

Numbers are decimal strings (SPEC 2), symbols are those plans may name (SPEC 3.1), and a
timestamp too far in the future is a clock or unit error (e.g. milliseconds), never fresh.
"""

from __future__ import annotations

import math
import re

#: Symbols as plans name them (SPEC 3.1). A budget key with any other suffix is ignored, so
#: no odd suffix can make a target key collide with another key family.
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,32}")
#: A timestamp further ahead of ``now`` than this is a clock or unit error.
FUTURE_SKEW_SEC = 30.0
# Plain decimals of ASCII digits only (SPEC 2: decimal strings). Python's float() would
# also take "1_000", " 5", "nan", "infinity", "١٢" (Arabic-Indic digits) and "1e3"; an
# exponent is refused too, so every service reads a value the way a person reads it.
_DECIMAL = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)", re.ASCII)


def parse_decimal(text: str | None) -> float | None:
    """A finite, non-negative number from a plain decimal string (ASCII digits, at most one
    dot, an optional leading ``+``: ``"123.45"``, ``".5"``, ``"5."``), or None for anything
    else: no exponent (``"1e3"``), no whitespace, no ``_``, no ``nan``/``inf``."""
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


def is_fresh(ts: float | None, now: float, stale_sec: float) -> bool:
    """``ts`` is known, at most ``stale_sec`` old and at most :data:`FUTURE_SKEW_SEC` ahead."""
    return ts is not None and -FUTURE_SKEW_SEC <= now - ts <= stale_sec
