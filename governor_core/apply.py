"""For the apply layer: wait for a plan's permit, and what it lets you trade.

A public module, kept stable like :mod:`governor_core.plugin_api` (a change to a name here
is a breaking change, named in the release notes), so the team that executes plans does not
re-derive the design's rule::

    from governor_core.apply import effective_size, read_permit

    permit = read_permit(client, plan_id, timeout_sec=1.0)   # None: no permit in time
    size = None if permit is None else effective_size(permit, now=time.time())
    if size is None or not size.tradable:
        skip the plan (size.why says why)
    else:
        trade at most size.notional_usd, then wait size.cooldown_sec before the symbol's next

The rule (``design/p31_integration_steps_1_2.md``, "Example logic (Apply Layer)"; SPEC 3.3):

* ``decision=DENY`` → 0 (not tradable);
* otherwise the cap is ``allowed_notional_usd`` (the plan's notional, or the cap it was
  clamped to), and when ``eff_action == DOWNSIZE``: ``adjusted_cap = allowed_notional_usd ×
  eff_factor`` and ``cooldown = cooldown_sec + extra_cooldown_sec``; with ``NONE`` (or no
  P3.1 fields: the plugin is not active) the cap and cooldown are the permit's own.
  Worked example of the design: score 0.2 → ``eff_factor`` 0.4444, ``extra_cooldown_sec`` 96:
  a 1,000 USD permit with ``cooldown_sec`` 0 gives 444.40 USD and 96 s.

Nothing here raises on a permit's contents (:func:`effective_size` is total):

* a core field that is missing or malformed (``decision``, ``allowed_notional_usd``,
  ``cooldown_sec``; ``expires_ts`` when ``now`` is given) makes the permit **not tradable**
  (the governor always writes them, so the hash is not one of its permits), as does a permit
  whose ``expires_ts`` has passed;
* a downsize hint that does not parse or contradicts itself (an ``eff_action`` other than
  ``NONE``/``DOWNSIZE``, a factor outside [0, 1], ``eff_factor`` ≠ ``downsize_factor``, an
  ``extra_cooldown_sec`` that is not a whole number ≥ 0) is **ignored**, and ``hint`` says
  so: P3.1 is fail-open everywhere, a hint never blocks a trade.

:func:`read_permit` polls ``quantum:permit:{plan_id}`` (``HGETALL``) until it exists or the
timeout passes. It polls because Redis has no blocking read of a hash; blocking on the
permit stream instead would hand every waiting client every permit issued. The first
retries are quick (the governor's plan → permit p99 is under 10 ms), then spaced out to
:data:`MAX_POLL_SEC`. The apply layer's Redis user needs ``HGETALL`` on
``quantum:permit:*`` only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from governor_core.keys import PERMIT_PREFIX
from governor_core.parsing import parse_decimal

__all__ = ["DEFAULT_TIMEOUT_SEC", "MAX_POLL_SEC", "EffectiveSize", "effective_size",
           "permit_key", "read_permit"]

DEFAULT_TIMEOUT_SEC = 1.0
#: The first poll interval, doubled after each miss up to :data:`MAX_POLL_SEC`.
FIRST_POLL_SEC = 0.002
MAX_POLL_SEC = 0.05
_WHOLE = re.compile(r"\+?\d+", re.ASCII)


def permit_key(plan_id: str) -> str:
    """The permit hash of ``plan_id``: ``quantum:permit:{plan_id}``."""
    return PERMIT_PREFIX + plan_id


def read_permit(client: Any, plan_id: str, timeout_sec: float = DEFAULT_TIMEOUT_SEC, *,
                clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, str] | None:
    """The permit of ``plan_id`` as a dict of strings, read at once and then polled until
    ``timeout_sec`` has passed; ``None`` if it did not appear in time (or has expired).

    ``client`` is a ``redis.Redis`` with decoded responses (``decode_responses=True``).
    Redis errors (an outage) are the caller's: they are raised as redis-py raises them."""
    deadline = clock() + max(0.0, timeout_sec)
    pause = FIRST_POLL_SEC
    key = permit_key(plan_id)
    while True:
        permit = client.hgetall(key)
        if permit:
            return dict(permit)
        left = deadline - clock()
        if left <= 0:
            return None
        sleep(min(pause, left))
        pause = min(pause * 2, MAX_POLL_SEC)


@dataclass(frozen=True, slots=True)
class EffectiveSize:
    """What a permit lets the apply layer do.

    :ivar tradable: trade this plan (False: denied, expired, malformed, or sized to 0).
    :ivar notional_usd: the most to trade, in USD (0 when not tradable).
    :ivar cooldown_sec: seconds to wait before the symbol's next trade
        (``cooldown_sec`` + ``extra_cooldown_sec`` of a downsize; 0 when unreadable).
    :ivar factor: the downsize factor applied (1.0 when none).
    :ivar hint: ``"downsize"`` (applied), ``"none"`` (``eff_action=NONE``), ``"absent"``
        (no P3.1 fields) or ``"ignored: …"`` (a malformed hint, and why).
    :ivar why: one line saying how the size was reached, e.g. ``"DENY (kill_switch)"``.
    """

    tradable: bool
    notional_usd: float
    cooldown_sec: int
    factor: float
    hint: str
    why: str


def _whole(text: str | None) -> int | None:
    return int(text) if isinstance(text, str) and _WHOLE.fullmatch(text) else None


def _hint(permit: Mapping[str, str]) -> tuple[float, int, str]:
    """``(factor, extra cooldown, hint)`` of the P3.1 fields."""
    action = permit.get("eff_action")
    if action is None:
        return 1.0, 0, "absent"
    if action == "NONE":
        return 1.0, 0, "none"
    if action != "DOWNSIZE":
        return 1.0, 0, f"ignored: eff_action={action!r} is neither NONE nor DOWNSIZE"
    texts = {name: permit[name] for name in ("eff_factor", "downsize_factor") if name in permit}
    factors = {name: parse_decimal(text) for name, text in texts.items()}
    if not factors:
        return 1.0, 0, "ignored: DOWNSIZE without eff_factor"
    for name, factor in factors.items():
        if factor is None or factor > 1.0:
            return 1.0, 0, f"ignored: {name}={texts[name]!r} is not a factor from 0 to 1"
    if len(set(factors.values())) > 1:
        return 1.0, 0, (f"ignored: eff_factor={texts['eff_factor']!r} differs from "
                        f"downsize_factor={texts['downsize_factor']!r}")
    extra = _whole(permit.get("extra_cooldown_sec", "0"))
    if extra is None:
        return 1.0, 0, (f"ignored: extra_cooldown_sec={permit.get('extra_cooldown_sec')!r} "
                        "is not a whole number of seconds")
    return next(iter(factors.values())), extra, "downsize"


def _refused(why: str, cooldown: int = 0, hint: str = "absent") -> EffectiveSize:
    return EffectiveSize(False, 0.0, cooldown, 1.0, hint, why)


def effective_size(permit: Mapping[str, str], now: float | None = None) -> EffectiveSize:
    """The trade a permit allows, by the design's rule (module docstring); never raises.

    :param permit: the permit's fields (:func:`read_permit`, or a permit stream entry).
    :param now: Unix seconds: a permit past its ``expires_ts`` is then not tradable.
        ``None`` skips the check (the caller checked, or sizes a recorded permit)."""
    decision = permit.get("decision")
    cooldown = _whole(permit.get("cooldown_sec"))
    if decision not in ("ALLOW", "CLAMP", "DENY"):
        return _refused(f"malformed permit: decision={decision!r}")
    if cooldown is None:
        return _refused(f"malformed permit: cooldown_sec={permit.get('cooldown_sec')!r}")
    factor, extra, hint = _hint(permit)
    cooldown += extra
    if decision == "DENY":
        return _refused(f"DENY ({permit.get('reason', '?')})", cooldown, hint)
    allowed = parse_decimal(permit.get("allowed_notional_usd"))
    if allowed is None:
        return _refused("malformed permit: allowed_notional_usd="
                        f"{permit.get('allowed_notional_usd')!r}", cooldown, hint)
    if now is not None:
        expires = parse_decimal(permit.get("expires_ts"))
        if expires is None:
            return _refused(f"malformed permit: expires_ts={permit.get('expires_ts')!r}",
                            cooldown, hint)
        if now > expires:
            return _refused(f"expired at {permit['expires_ts']} (now {now:.3f})",
                            cooldown, hint)
    notional = allowed * factor
    why = f"{decision} {allowed:g} USD"
    if hint == "downsize":
        why += (f" × eff_factor {factor:g} = {notional:g} USD, cooldown {cooldown - extra} + "
                f"{extra} s")
    return EffectiveSize(notional > 0, notional, cooldown, factor, hint, why)
