"""Env files read as systemd's ``EnvironmentFile=`` reads them.

``quantum-governor check-config --env-file PATH`` checks what the unit will get, which a
shell's ``set -a; . file`` does not give: the shell expands ``$$`` in ``pa$$w0rd`` and
treats ``;`` as the end of a command. The rules (``man systemd.exec``, ``EnvironmentFile=``;
the parser is systemd's ``src/basic/env-file.c``):

* one ``KEY=VALUE`` assignment a line; blanks around the key and around ``=`` are dropped;
  a line without ``=`` is ignored; a line starting (after blanks) with ``#`` or ``;`` is a
  comment. Nothing else is a comment: a ``#`` or ``;`` *inside* a value is part of it.
* an unquoted value keeps its inner blanks, loses its trailing ones; a backslash keeps the
  next character as it is (``\\\\`` is ``\\``), and a backslash at the end of a line joins
  the next line (the newline is dropped). Quotes after the value's first character are
  kept as they are.
* a value may start with ``'…'`` (everything kept as written, newlines too, no escapes) or
  ``"…"`` (a backslash before ``"``, ``\\``, `````` ` `````` or ``$`` keeps that character,
  before a newline joins the lines, before anything else is kept with the backslash).
  What follows the closing quote, blanks dropped, is appended.
* no ``$`` expansion of any kind: ``pa$$w0rd`` is ``pa$$w0rd``.
* a later assignment of a key replaces an earlier one; a key that is not a valid variable
  name (letters, digits, ``_``, not starting with a digit) is ignored, as systemd ignores
  it (with a warning here).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_BLANK = " \t\n\r"
_NEWLINE = "\n\r"
_COMMENT = "#;"
#: Characters a backslash escapes inside double quotes (the shell's set).
_DOUBLE_QUOTE_ESCAPES = '"\\`$'
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class EnvFile:
    """An env file's assignments (in file order, later ones replacing earlier ones) and
    the warnings about what systemd would ignore in it."""

    values: dict[str, str]
    warnings: tuple[str, ...] = ()


@dataclass
class _Parser:
    values: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    line: int = 1
    key: str = ""
    value: list[str] = field(default_factory=list)
    #: Where the unquoted value's trailing blanks start (None: no trailing blank).
    trim_at: int | None = None

    def push(self, trim: bool) -> None:
        key = self.key.rstrip(_BLANK)
        value = "".join(self.value[:self.trim_at] if trim and self.trim_at is not None
                        else self.value)
        if _NAME.fullmatch(key):
            self.values[key] = value
        else:
            self.warnings.append(f"line {self.line}: {key!r} is not a variable name; "
                                 "systemd ignores this assignment")
        self.key, self.value, self.trim_at = "", [], None

    def append(self, char: str, *, unquoted: bool = False) -> None:
        if unquoted and char in _BLANK:
            if self.trim_at is None:
                self.trim_at = len(self.value)
        else:
            self.trim_at = None
        self.value.append(char)


def parse_env_text(text: str) -> EnvFile:
    """The assignments of an env file's text, by systemd's rules (module docstring)."""
    p = _Parser()
    state = "pre_key"
    for char in text:
        if state == "pre_key":
            if char in _COMMENT:
                state = "comment"
            elif char not in _BLANK:
                state, p.key = "key", char
        elif state == "key":
            if char in _NEWLINE:
                state, p.key = "pre_key", ""  # no "=": ignored
            elif char == "=":
                state, p.trim_at = "pre_value", None
            else:
                p.key += char
        elif state == "pre_value":
            if char in _NEWLINE:
                p.push(trim=False)
                state = "pre_key"
            elif char == "'":
                state = "single"
            elif char == '"':
                state = "double"
            elif char == "\\":
                state = "escape"
            elif char not in _BLANK:
                state = "value"
                p.append(char, unquoted=True)
        elif state == "value":
            if char in _NEWLINE:
                p.push(trim=True)
                state = "pre_key"
            elif char == "\\":
                state, p.trim_at = "escape", None
            else:
                p.append(char, unquoted=True)
        elif state == "escape":
            state = "value"
            if char not in _NEWLINE:
                p.value.append(char)
        elif state == "single":
            if char == "'":
                state = "pre_value"
            else:
                p.value.append(char)
        elif state == "double":
            if char == '"':
                state = "pre_value"
            elif char == "\\":
                state = "double_escape"
            else:
                p.value.append(char)
        elif state == "double_escape":
            state = "double"
            if char in _DOUBLE_QUOTE_ESCAPES:
                p.value.append(char)
            elif char != "\n":
                p.value.extend(("\\", char))
        elif state == "comment":
            if char == "\\":
                state = "comment_escape"
            elif char in _NEWLINE:
                state = "pre_key"
        else:  # comment_escape: since systemd 254 the next line is not part of the comment
            state = "pre_key" if char in _NEWLINE else "comment"
        if char in _NEWLINE:
            p.line += 1
    if state not in ("pre_key", "key", "comment", "comment_escape"):
        p.push(trim=state == "value")
    return EnvFile(p.values, tuple(p.warnings))


def read_env_file(path: str | Path) -> EnvFile:
    """:func:`parse_env_text` of the file at ``path`` (UTF-8, as systemd requires).

    :raises OSError: the file cannot be read.
    :raises UnicodeDecodeError: it is not UTF-8.
    """
    return parse_env_text(Path(path).read_text(encoding="utf-8"))
