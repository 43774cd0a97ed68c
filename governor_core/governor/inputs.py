"""The governor's read round trip for a batch: the kill switch and every symbol's caps
(the plugins' ``read_commands`` ride behind them), and the judging of the replies (pure).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from governor_core.governor.gates import Cap, choose_cap
from governor_core.keys import BUDGET_PREFIX, KILL_KEY, TARGET_PREFIX
from governor_core.logs import RepeatLimiter
from governor_core.parsing import shown, trim
from governor_core.redis_io import Command

log = logging.getLogger("quantum.governor")

#: Replies per symbol in :func:`gate_commands`, after the two kill-switch replies.
_PER_SYMBOL = 2
_KILL_REPLIES = 2


@dataclass(frozen=True, slots=True)
class GateInputs:
    """What the gates of a batch decide on: the kill switch and each symbol's cap."""

    kill_switch: bool
    caps: Mapping[str, Cap]


def gate_commands(symbols: Sequence[str]) -> list[Command]:
    """The kill switch's type and value, then each symbol's live target and budget."""
    commands: list[Command] = [("TYPE", KILL_KEY), ("GET", KILL_KEY)]
    for symbol in symbols:
        commands.append(("HGET", TARGET_PREFIX + symbol, "target_usd"))
        commands.append(("HGET", BUDGET_PREFIX + symbol, "budget_usd"))
    return commands


def reply_count(symbols: Sequence[str]) -> int:
    """How many replies :func:`gate_commands` gets for ``symbols``."""
    return _KILL_REPLIES + _PER_SYMBOL * len(symbols)


def judge_gates(symbols: Sequence[str], replies: Sequence[object]) -> GateInputs:
    """The replies of :func:`gate_commands` (in order) as gate inputs. An unreadable cap
    key (a refused command) counts as absent: the next cap source is used."""
    caps = {}
    for index, symbol in enumerate(symbols):
        at = _KILL_REPLIES + _PER_SYMBOL * index
        caps[symbol] = choose_cap(_text(replies[at], symbol), _text(replies[at + 1], symbol))
    return GateInputs(kill_switch_on(replies[0], replies[1]), caps)


#: Kill-switch texts (SPEC 2), compared trimmed and lower-cased.
KILL_ON = frozenset({"1", "true", "on", "yes"})
KILL_OFF = frozenset({"", "0", "false", "off", "no"})


class _Complaints:
    """The last unusable kill-switch reading logged: the switch is read every batch, so an
    error is logged once per distinct problem (and again after a good reading)."""

    last: str | None = None


def kill_switch_on(key_type: object, value: object) -> bool:
    """Whether ``quantum:governor:kill`` (its ``TYPE`` and ``GET`` replies) means on.

    ``1``/``true``/``on``/``yes`` (any case, surrounding whitespace ignored) are on;
    absent, ``0``/``false``/``off``/``no`` and empty are off. Anything else (another text,
    another Redis type, a refused read) is **on**, with an error log naming what was found
    and what is accepted: someone meant to set the switch and got it wrong, so this is the
    one gate that fails closed. A value with bytes that are not UTF-8 is such a value (it
    is logged as the bytes it holds, ``b'1\\xff'``); "surrounding whitespace" is ASCII
    whitespace (:func:`~governor_core.parsing.trim`). The log is written once per
    distinct problem, not every batch; the ``governor_kill_switch`` gauge shows the state
    all along.
    """
    if isinstance(value, str):
        text = trim(value).lower()
        if text in KILL_ON or text in KILL_OFF:
            _Complaints.last = None
            return text in KILL_ON
        problem = f"has the value {shown(value)}"
    elif value is None and key_type in ("none", "string"):
        _Complaints.last = None
        return False  # absent (or deleted between the two reads)
    elif isinstance(key_type, str) and key_type not in ("string", "none"):
        problem = f"has type {key_type}"
    else:
        problem = f"is unreadable ({value if isinstance(value, Exception) else key_type})"
    if _Complaints.last != problem:
        _Complaints.last = problem
        log.error("kill switch key %s %s: treating it as ON (on: 1/true/on/yes; off: "
                  "0/false/off/no/empty or no key; redis-cli SET %s 0 turns it off)",
                  KILL_KEY, problem, KILL_KEY)
    return True


#: An unreadable cap key (e.g. a wrong type) is read every batch: one line per key and minute.
_UNREADABLE = RepeatLimiter(log, 60.0)


def _text(reply: object, symbol: str) -> str | None:
    """A cap's text as the number rule reads it: trimmed of ASCII whitespace, as the
    allocation service reads the same budget keys (:func:`~governor_core.parsing.trim`),
    so both services see one budget."""
    if isinstance(reply, Exception):
        _UNREADABLE.log(logging.WARNING, "cap key of %s unreadable, ignoring it: %s", symbol,
                        reply, symbol=symbol)
        return None
    return trim(reply)
