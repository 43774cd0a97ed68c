"""What a refused write means: Redis's own error code and message, and whether the plan
may ever be dead-lettered for it (one function, :func:`classify`).

Only a **permanent, plan-specific** refusal may dead-letter a valid plan: its own permit
key ``quantum:permit:{plan_id}`` holding another type (:data:`Fault.PLAN_KEY`), after
:data:`~governor_core.governor.batch.MAX_WRITE_ATTEMPTS`. Everything else keeps the plan
pending, to be retried:

* :data:`Fault.OUTAGE`: Redis cannot write anything right now (``OOM``, ``LOADING``,
  ``BUSY``, ``READONLY`` of a demoted primary, ``MASTERDOWN``, ``TRYAGAIN``, ``MISCONF``,
  ``CLUSTERDOWN``, ``NOREPLICAS``, a lost connection). The loop pauses with backoff;
  every plan is retried once Redis writes again. Dead-lettering on a transient error
  loses a valid plan for good (a fault run with ``maxmemory`` flapping lost 1–18 per run).
* :data:`Fault.OTHER`: a refusal that is neither, e.g. a shared key of the wrong type
  (the dead-letter or permit stream) or an error never seen before. Not the plan's fault,
  and not known to pass: the plan stays pending and is retried with backoff while the
  plans behind it flow on.

The code is Redis's error prefix. redis-py strips it from the message of the exceptions
it maps to their own class (``OutOfMemoryError`` reads "command not allowed when used
memory > 'maxmemory'."), so the code is taken from the (public) class for those, and from
the message's first word for the others; :func:`redis_message` puts it back, so logs and
dead letters carry Redis's own words, never a label of ours.
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Callable

import redis

from governor_core.keys import PERMIT_PREFIX


class Fault(enum.Enum):
    OUTAGE = "outage"
    PLAN_KEY = "plan_key"
    OTHER = "other"


#: Error codes of a Redis that cannot write right now, whatever the plan.
OUTAGE_CODES = frozenset({"OOM", "LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN",
                          "MISCONF", "CLUSTERDOWN", "NOREPLICAS", "NOMASTERLINK"})

#: redis-py's exception classes that drop the code from their message (subclasses first).
_CLASS_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.BusyLoadingError, "LOADING"),
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
    (redis.exceptions.ExecAbortError, "EXECABORT"),
)
_CODE = re.compile(r"[A-Z][A-Z_-]+(?= |$)")
#: What the scripts say of the keys of a refused write: "<key> is a <type>" (after Redis's
#: own message, in parentheses, or after the script's WRONGTYPE).
_KEY_TYPE = re.compile(r"([^\s(),]+) is a (\w+)")


def error_code(error: object) -> str:
    """Redis's error prefix of a refused command (``"OOM"``, ``"WRONGTYPE"``…), ``""`` when
    there is none (a connection error, a reply that is not an error)."""
    for cls, code in _CLASS_CODES:
        if isinstance(error, cls):
            return code
    if not isinstance(error, redis.ResponseError):
        return ""
    match = _CODE.match(str(error))
    return match.group(0) if match else ""


def redis_message(error: object) -> str:
    """The error as Redis sent it, code first (``OOM command not allowed…``); a connection
    error as its class and message."""
    text = str(error)
    if not isinstance(error, redis.ResponseError):
        return f"{type(error).__name__}: {text}" if isinstance(error, Exception) else text
    code = error_code(error)
    return text if not code or text.startswith(code) else f"{code} {text}"


def classify(error: object, plan_id: str | None = None) -> Fault:
    """What the refusal ``error`` of a write for the plan ``plan_id`` (``None``: a write
    that involves no key of one plan, e.g. a dead letter) means; see the module docstring.

    A ``WRONGTYPE`` is :data:`Fault.PLAN_KEY` only when it names the plan's permit key as
    holding a type other than a hash; one that names no key of a wrong type (the issue
    script's reply when its ``HSETNX`` failed for another reason, say ``OOM`` on Redis 7.0)
    is an outage: Redis refused the write, not the key.
    """
    if not isinstance(error, redis.ResponseError):
        # a connection, timeout or loading error; a reply that is no error at all is
        # unexpected, not an outage
        return Fault.OUTAGE if isinstance(error, Exception) else Fault.OTHER
    code = error_code(error)
    if code in OUTAGE_CODES:
        return Fault.OUTAGE
    if code != "WRONGTYPE":
        return Fault.OTHER
    named = dict(_KEY_TYPE.findall(str(error)))
    if not named:
        return Fault.OTHER  # Redis's own WRONGTYPE: which key is not said
    wrong = {key for key, kind in named.items()
             if kind not in ("none", "hash" if key.startswith(PERMIT_PREFIX) else "stream")}
    if plan_id is not None and PERMIT_PREFIX + plan_id in wrong:
        return Fault.PLAN_KEY
    return Fault.OTHER if wrong else Fault.OUTAGE


class RetrySchedule:
    """When the governor reads its own pending plans again after refused writes, and how
    long it pauses after an outage: backoff from :attr:`initial` doubling to :attr:`cap`
    seconds while the retries keep failing, back to nothing once a pass over the pending
    plans writes them all.

    Measured on :func:`time.monotonic` (not the service's clock, which stamps permits and
    may be fixed in tests). A plan refused for its own permit key with attempts left is
    retried at once (:meth:`failed` with ``soon``): its attempts are bounded, and its
    dead letter should not wait.
    """

    initial = 0.1
    cap = 5.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.delay = 0.0
        self.due = 0.0
        self.pause_until = 0.0

    def failed(self, *, soon: bool, outage: bool) -> float:
        """A batch had refused writes: schedule the next pass; its delay in seconds."""
        now = self.clock()
        if soon and not outage:
            self.due = now
            return 0.0
        self.delay = self.initial if not self.delay else min(self.cap, self.delay * 2)
        self.due = now + self.delay
        if outage:
            self.pause_until = self.due
        return self.delay

    def succeeded(self) -> None:
        """A pass over the pending plans wrote every one of them."""
        self.delay = 0.0

    def retry_now(self) -> None:
        """After an outage the host waited out: read the pending plans at once."""
        self.due = self.pause_until = 0.0

    def is_due(self) -> bool:
        return self.clock() >= self.due

    def pause_left(self) -> float:
        """Seconds the loop still pauses after an outage (0: none)."""
        return max(0.0, self.pause_until - self.clock()) if self.pause_until else 0.0
