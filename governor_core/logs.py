"""One line per event: JSON by default, plain text with ``LOG_FORMAT=text``.

Context such as ``plan_id``, ``symbol`` or ``plugin`` is passed with ``extra={...}`` and
appears as its own JSON key. Anything that looks like a Redis URL with a password is
redacted before it is written, whichever code produced the message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

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
