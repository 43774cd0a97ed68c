"""How the services read the values other services write: the one home of each rule.

Numbers are decimal strings (SPEC 2), symbols are those plans may name (SPEC 3.1), and a
timestamp too far in the future is a clock or unit error (e.g. milliseconds), never fresh.

Text arrives as the Redis layer decodes it (:func:`governor_core.redis_io.connect`): UTF-8,
with every byte that is not valid UTF-8 turned into a lone surrogate (``surrogateescape``).
No rule here accepts a surrogate (they are not ASCII), so a bad byte is always an input
error of the value it is in; :func:`has_bad_bytes` finds them and :func:`escaped` shows
them as ``\\xff`` so that a dead letter or a log line can carry them.

One number rule everywhere (:func:`parse_decimal`): ASCII digits, at most one dot, an
optional ``+``, finite. Plan fields are taken exactly as written; the hashes other services
keep (efficiency, budgets, targets, portfolio, stress) are read through :func:`trim`
first, which drops surrounding ASCII whitespace only (``" 0.5\\n"`` is 0.5 for the governor's
caps and the allocation service alike; a no-break space or an ideographic space is not
whitespace here, so ``"\\u00a00.5"`` is malformed).
"""

from __future__ import annotations

import math
import re
import string

#: Symbols as plans name them (SPEC 3.1). A budget key with any other suffix is ignored, so
#: no odd suffix can make a target key collide with another key family.
SYMBOL_RE = re.compile(r"[A-Z0-9]{2,32}")
#: A timestamp further ahead of ``now`` than this is a clock or unit error.
FUTURE_SKEW_SEC = 30.0
#: What :func:`trim` removes: ASCII whitespace only (``str.strip()`` would also remove
#: Unicode spaces and the ASCII separators ``\x1c``-``\x1f``).
ASCII_WHITESPACE = string.whitespace
#: How much of a value a message echoes (see :func:`shown`).
ECHO_CHARS = 64
# Plain decimals of ASCII digits only (SPEC 2: decimal strings). Python's float() would
# also take "1_000", " 5", "nan", "infinity", "١٢" (Arabic-Indic digits) and "1e3"; an
# exponent is refused too, so every service reads a value the way a person reads it.
_DECIMAL = re.compile(r"\+?(\d+(\.\d*)?|\.\d+)", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_decimal(text: str | None) -> float | None:
    """A finite, non-negative number from a plain decimal string (ASCII digits, at most one
    dot, an optional leading ``+``: ``"123.45"``, ``".5"``, ``"5."``), or None for anything
    else: no exponent (``"1e3"``), no whitespace, no ``_``, no ``nan``/``inf``, no other
    script's digits (``"١٢٣"``, ``"１２"``), no surrogate (an undecodable byte)."""
    if type(text) is not str:
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
    if type(text) is str and text.startswith("-") and not text.startswith("-+"):
        value = parse_decimal(text[1:])
        return None if value is None else -value
    return parse_decimal(text)


def trim(value: object) -> str | None:
    """A hash value as the number and name rules see it: surrounding ASCII whitespace
    removed; None for anything that is not text (an absent field, a refused read)."""
    return value.strip(ASCII_WHITESPACE) if isinstance(value, str) else None


def is_fresh(ts: float | None, now: float, stale_sec: float) -> bool:
    """``ts`` is known, at most ``stale_sec`` old and at most :data:`FUTURE_SKEW_SEC` ahead."""
    return ts is not None and -FUTURE_SKEW_SEC <= now - ts <= stale_sec


def has_bad_bytes(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate: a byte that was not UTF-8 (the Redis layer's
    ``surrogateescape``), or anything else no UTF-8 encoder can write back. Free for ASCII
    text (``isascii`` is a flag check)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def escaped(text: str) -> str:
    """``text`` with each undecodable byte written as ``\\xNN`` (the rest unchanged), so
    it is always encodable and the original bytes can be read off it."""
    return _bytes(text).decode("utf-8", "backslashreplace") if has_bad_bytes(text) else text


def shown(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` as a message echoes it: quoted (``repr``, so control characters are
    escaped; text with bad bytes as the ``bytes`` literal it was read from, ``b'p\\xff1'``),
    and, when longer than ``limit`` characters (bytes), cut there with its size in bytes
    added: a 1 MB field never makes a 1 MB log line or error message."""
    if has_bad_bytes(text):
        raw = _bytes(text)
        return repr(raw) if len(raw) <= limit else f"{raw[:limit]!r}…({len(raw)} bytes)"
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}…({len(text.encode())} bytes)"


def _bytes(text: str) -> bytes:
    """The bytes ``text`` was decoded from (a surrogate that no byte decodes to, possible
    only in text not read from Redis, becomes its ``\\udNNN`` escape)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")
