"""One line per event: JSON by default, plain text with ``LOG_FORMAT=text``.

Context such as ``plan_id``, ``symbol`` or ``plugin`` is passed with ``extra={...}`` and
appears as its own JSON key. Anything that looks like a Redis URL with a password is
redacted before it is written, whichever code produced the message.

An error that can repeat for every plan or every batch (a refused write, an unreadable key)
goes through a :class:`RepeatLimiter`: logged the first time, then at most once per
interval with the count of the repeats in between, so a fault writes a few lines a minute
instead of thousands a second.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

CONTEXT_FIELDS = ("plan_id", "symbol", "plugin", "hook", "cluster", "variable", "error",
                  "data_source", "count", "delay_sec", "url", "mode")

_URL_PASSWORD = re.compile(r"(rediss?://[^:/@\s]*:)[^@\s]+@")


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(r"\1***@", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = redact(str(value)) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        context = " ".join(f"{field}={getattr(record, field)}" for field in CONTEXT_FIELDS
                           if getattr(record, field, None) is not None)
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if context:
            line = f"{line} [{context}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        # One event, one line (the journal splits on newlines): escape them, as JSON does.
        return redact(line).replace("\n", "\\n")


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    """Route every ``quantum`` logger to stderr in the chosen format (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("quantum")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


class RepeatLimiter:
    """Logs a repeated message once per ``interval_sec``, with a count.

    :meth:`log` writes a message the first time it is seen; the same message again within
    ``interval_sec`` of the last line written for it is only counted; the first one after the
    interval is written with `` (repeated N times in the last S s)`` appended and
    ``count=N`` as a context field. "The same message" is the formatted text (context fields
    such as ``plan_id`` do not count), or ``key`` when given. At most ``max_keys`` messages
    are remembered (the least recently logged is forgotten first), so memory stays bounded
    whatever the errors say. A count left when the errors stop is written by :meth:`flush`.
    """

    def __init__(self, logger: logging.Logger, interval_sec: float = 10.0, *,
                 max_keys: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval_sec = interval_sec
        self.max_keys = max_keys
        self.clock = clock
        #: key -> [time of the last line written, repeats since, level, message]
        self._seen: OrderedDict[object, list] = OrderedDict()

    def log(self, level: int, msg: str, *args: object, key: object = None,
            **extra: object) -> bool:
        """Log ``msg % args`` at ``level`` unless it was logged less than ``interval_sec``
        ago; whether a line was written."""
        if not self.logger.isEnabledFor(level):
            return False
        text = msg % args if args else msg
        key = (level, text) if key is None else key
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval_sec:
            seen[1] += 1
            seen[2], seen[3] = level, text
            return False
        repeats = seen[1] if seen is not None else 0
        self._seen[key] = [now, 0, level, text]
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_keys:
            self._seen.popitem(last=False)
        self._write(level, text, repeats, now - seen[0] if seen else 0.0, extra)
        return True

    def flush(self) -> None:
        """Write the count of every message repeated since its last line (at a stop)."""
        now = self.clock()
        for seen in self._seen.values():
            if seen[1]:
                self._write(seen[2], seen[3], seen[1], now - seen[0], {})
                seen[0], seen[1] = now, 0

    def _write(self, level: int, text: str, repeats: int, span: float,
               extra: dict[str, object]) -> None:
        if repeats:
            text = f"{text} (repeated {repeats} times in the last {span:.0f} s)"
            extra = {**extra, "count": repeats}
        self.logger.log(level, "%s", text, extra=extra or None)
