"""Which mode the allocation service is in, and why: ``P29_MODE`` or the runtime key.

``quantum:config:allocation.mode`` (SPEC 2, written by ``quantum-allocation promote`` and
``rollback``) overrides ``P29_MODE`` while it exists. The service reads it in its first round
trip of every cycle (one ``GET`` beside the others: no extra round trip), so a switch takes
effect at the next cycle, without a restart.

The rule (:func:`resolve_mode`, pure):

* no key → ``P29_MODE``, source ``env``;
* ``shadow`` or ``enforce`` (any case, trimmed) → that mode, source ``key``;
* anything else (another text, another Redis type, a refused read) → **shadow**, source
  ``key_invalid``, with an error log. Fail safe: someone meant to override the mode and got
  it wrong, and of the two modes only shadow can never change a cap (the governor then caps
  from budgets, as before P2.9), so an unreadable override never turns enforcement on, nor
  keeps it on. ``promote`` writes the key again to turn it back.

:class:`ModeTracker` logs and exports the mode at every change: ``p29_mode{mode,source}``
is 1 for the pair in force and 0 for the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from governor_core.allocation.config import MODES
from governor_core.keys import MODE_KEY

log = logging.getLogger("quantum.allocation")

SOURCES = ("env", "key", "key_invalid")
#: The mode in force when the key holds something unusable.
FAIL_SAFE_MODE = "shadow"


@dataclass(frozen=True, slots=True)
class ModeChoice:
    mode: str
    source: str
    #: What was wrong with the key (``source == "key_invalid"``), for the log.
    problem: str = ""


def resolve_mode(env_mode: str, reply: object) -> ModeChoice:
    """The mode in force given ``P29_MODE`` and the ``GET`` reply for the mode key."""
    if reply is None:
        return ModeChoice(env_mode, "env")
    if isinstance(reply, bytes):
        try:
            reply = reply.decode("utf-8")
        except UnicodeDecodeError:
            return ModeChoice(FAIL_SAFE_MODE, "key_invalid", "holds bytes that are not UTF-8")
    if isinstance(reply, str):
        text = reply.strip().lower()
        if text in MODES:
            return ModeChoice(text, "key")
        return ModeChoice(FAIL_SAFE_MODE, "key_invalid", f"has the value {reply[:64]!r}")
    if isinstance(reply, Exception):
        return ModeChoice(FAIL_SAFE_MODE, "key_invalid", f"is unreadable ({reply})")
    return ModeChoice(FAIL_SAFE_MODE, "key_invalid", f"gave an unexpected reply {reply!r}")


class ModeTracker:
    """The mode of the latest cycle: logged and exported whenever it changes."""

    def __init__(self, registry: CollectorRegistry, env_mode: str) -> None:
        self.env_mode = env_mode
        self.gauge = Gauge("p29_mode", "Allocation mode in force (1) by mode and source "
                           "(env: P29_MODE; key: quantum:config:allocation.mode)",
                           ["mode", "source"], registry=registry)
        #: None until the first cycle has read the key (the gauge shows P29_MODE till then).
        self.current: ModeChoice | None = None
        self._export(ModeChoice(env_mode, "env"))

    def _export(self, choice: ModeChoice) -> None:
        for mode in MODES:
            for source in SOURCES:
                self.gauge.labels(mode=mode, source=source).set(
                    1 if (mode, source) == (choice.mode, choice.source) else 0)

    def update(self, choice: ModeChoice) -> bool:
        """Record ``choice``; True (and one log line) when it differs from the last one
        (the first cycle's is always logged)."""
        if choice == self.current:
            return False
        previous, self.current = self.current, choice
        self._export(choice)
        was = f"{previous.mode} ({previous.source})" if previous else "-"
        extra = {"mode": choice.mode, "source": choice.source}
        if choice.source == "key_invalid":
            log.error("mode key %s %s: running in %s (fail safe; P29_MODE=%s); expected "
                      "shadow or enforce, or no key", MODE_KEY, choice.problem, choice.mode,
                      self.env_mode, extra=extra)
        else:
            how = "P29_MODE" if choice.source == "env" else MODE_KEY
            # The first cycle's mode is news only when the key overrides P29_MODE.
            level = logging.INFO if previous is None and choice.source == "env" else (
                logging.WARNING)
            log.log(level, "allocation mode %s from %s (was %s)", choice.mode, how, was,
                    extra=extra)
        return True


def describe_mode(env_mode: str, reply: object) -> tuple[bool, str]:
    """``(usable, one line)`` saying which mode a service would run in now and why, for
    ``quantum-governor plugins`` and ``check-config``."""
    choice = resolve_mode(env_mode, reply)
    if choice.source == "env":
        return True, f"allocation mode {choice.mode} (P29_MODE; {MODE_KEY} is not set)"
    if choice.source == "key":
        return True, (f"allocation mode {choice.mode} (from {MODE_KEY}, overriding "
                      f"P29_MODE={env_mode})")
    return False, (f"allocation mode {choice.mode} (fail safe: {MODE_KEY} {choice.problem}; "
                   f"P29_MODE={env_mode})")


def read_mode_line(env_mode: str, client: object) -> tuple[bool, str]:
    """:func:`describe_mode` with the key read from ``client``; an unreachable Redis is a
    usable line that says the key was not read."""
    import redis

    try:
        reply: object = client.get(MODE_KEY)  # type: ignore[attr-defined]
    except redis.ResponseError as exc:
        reply = exc
    except redis.RedisError as exc:
        return True, (f"allocation mode {env_mode} by P29_MODE; {MODE_KEY} not read "
                      f"({type(exc).__name__})")
    return describe_mode(env_mode, reply)


def mode_status_line(env: dict[str, str]) -> str:
    """The mode line of ``quantum-governor plugins``: the environment's ``P29_MODE`` and,
    when Redis answers, the key's override. Never raises."""
    from governor_core.allocation.config import AllocationConfig
    from governor_core.config import ConfigError, EnvReader
    from governor_core.redis_io import connect

    try:
        config = AllocationConfig.from_env(EnvReader(env))
    except ConfigError as exc:
        return f"allocation mode unknown: {exc}"
    return read_mode_line(config.mode, connect(config.common.redis))[1]
