"""The governor's read round trip for a batch: the kill switch and every symbol's caps
(the plugins' ``read_commands`` ride behind them), and the judging of the replies (pure).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from governor_core.governor.gates import Cap, choose_cap
from governor_core.keys import BUDGET_PREFIX, KILL_KEY, TARGET_PREFIX
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


def kill_switch_on(key_type: object, value: object) -> bool:
    """``"1"`` is on; absent or any other string is off. A key of another type means
    someone meant to set it and got it wrong: the one gate that fails closed."""
    if key_type not in ("string", "none"):
        log.error("kill switch key %s has type %s: treating it as ON", KILL_KEY, key_type)
        return True
    return value == "1"


def _text(reply: object, symbol: str) -> str | None:
    if isinstance(reply, Exception):
        log.warning("cap key unreadable, ignoring it: %s", reply, extra={"symbol": symbol})
        return None
    return reply if isinstance(reply, str) else None
