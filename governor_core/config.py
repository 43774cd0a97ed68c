"""Environment → typed, frozen configuration.

Every service and plugin reads its environment exactly once, through :class:`EnvReader`,
into a frozen dataclass. A value that does not parse raises :class:`ConfigError`, whose
message names the variable, the value seen and what was expected, so a host can stop at
start with one line instead of a traceback (and a plugin can be disabled with the same line).

A config class declares each variable once, as a field: ``min_conf: float =
setting("P31_MIN_CONF", 0.65, min=0.0, max=1.0)`` names the variable, its default and its
bounds; :func:`read_settings` reads every such field with the reader its annotation names.
So a default is written in one place, and :func:`settings_of` lists what a class reads
(for ``check-config`` and the configuration snapshot). Reads outside a config class go
through one of the ``EnvReader`` methods with a literal name. ``tests/test_deploy_files.py``
relies on both forms to check that the env files in ``deploy/`` list exactly the variables
the code reads.

What lives where: this module holds that machinery and :class:`CommonConfig`, the settings
both hosts share. Where Redis is (:class:`~governor_core.redis_settings.RedisSettings`, the
URL and Sentinel checks) and how a URL is shown without its secrets (``redact_url``,
``redact_text``) are :mod:`governor_core.redis_settings`; each host's own settings are
:mod:`governor_core.governor.config` and :mod:`governor_core.allocation.config`.

``redis_settings`` builds on :class:`ConfigError` and :class:`EnvReader` from here, so
:meth:`CommonConfig.from_env` imports it when called rather than at the top: an import at
the top would be a cycle (whichever module came first would meet the other half-made).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from governor_core.redis_settings import RedisSettings

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is unusable. ``str(err)`` is a complete one-line message."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"{name}={value!r} is invalid: expected {expected}")


class EnvReader:
    """Typed accessors over an environment mapping (``os.environ`` by default)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = os.environ if env is None else env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def str(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def optional_str(self, name: str) -> str | None:
        return self._raw(name)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.str(name, default)
        if value.lower() not in choices:
            raise ConfigError(name, value, "one of " + ", ".join(choices))
        return value.lower()

    def int(self, name: str, default: int, *, min: int | None = None,
            max: int | None = None) -> int:
        value = self._raw(name)
        if value is None:
            return default
        if not re.fullmatch(r"[+-]?\d+", value, re.ASCII):
            raise ConfigError(name, value, _range_text("an integer", min, max))
        number = int(value)
        if (min is not None and number < min) or (max is not None and number > max):
            raise ConfigError(name, value, _range_text("an integer", min, max))
        return number

    def float(self, name: str, default: float, *, min: float | None = None,
              max: float | None = None) -> float:
        value = self._raw(name)
        if value is None:
            return default
        # Plain ASCII decimals, as everywhere else (float() would take "１０", "1e3", "1_0").
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", value, re.ASCII):
            raise ConfigError(name, value, _range_text("a plain decimal number", min, max))
        number = float(value)
        if (min is not None and number < min) or (max is not None and number > max):
            raise ConfigError(name, value, _range_text("a number", min, max))
        return number

    def names(self, name: str) -> frozenset[str]:
        """A comma-separated list of names; blanks are ignored."""
        value = self._raw(name) or ""
        return frozenset(part.strip() for part in value.split(",") if part.strip())


def _range_text(kind: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} >= {low}"
    if high is not None:
        return f"{kind} <= {high}"
    return kind


@dataclass(frozen=True, slots=True)
class Setting:
    """How one config field is read: its variable, and the bounds or choices it must meet."""

    env: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None

    def read(self, env: EnvReader, annotation: str, default: Any) -> Any:
        """The variable's value, read as the field's ``annotation`` says (``int``,
        ``float``, ``str``, ``str | None`` or ``frozenset[str]``), else ``default``."""
        if annotation == "float":
            return env.float(self.env, default, min=self.min, max=self.max)
        if annotation == "int":
            return env.int(self.env, default, min=self._int(self.min), max=self._int(self.max))
        if annotation == "str" and self.choices:
            return env.choice(self.env, default, self.choices)
        if annotation == "str":
            return env.str(self.env, default)
        if annotation == "str | None":
            value = env.optional_str(self.env)
            return default if value is None else value
        if annotation == "frozenset[str]":
            return env.names(self.env) or default
        raise TypeError(f"setting {self.env}: no reader for a field of type {annotation}")

    @staticmethod
    def _int(bound: float | None) -> int | None:
        return None if bound is None else int(bound)


def setting(env: str, default: Any, *, min: float | None = None, max: float | None = None,
            choices: tuple[str, ...] | None = None) -> Any:
    """A config dataclass field read from the variable ``env`` by :func:`read_settings`, with
    ``default`` when the variable is unset or blank."""
    return dataclasses.field(default=default,
                             metadata={"setting": Setting(env, min, max, choices)})


def settings_of(cls: type) -> list[tuple[str, Setting]]:
    """``(field name, setting)`` of each field of the config class ``cls`` read from the
    environment, in declaration order."""
    return [(item.name, item.metadata["setting"]) for item in dataclasses.fields(cls)
            if "setting" in item.metadata]


def read_settings(cls: type[T], env: EnvReader, **given: Any) -> T:
    """An instance of the config dataclass ``cls``: every :func:`setting` field read from
    ``env`` (a bad value raises :class:`ConfigError` naming it), the others from ``given``."""
    values = dict(given)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        spec = item.metadata.get("setting")
        if spec is not None:
            values[item.name] = spec.read(env, str(item.type), item.default)
    return cls(**values)


@dataclass(frozen=True, slots=True)
class CommonConfig:
    """Settings every host shares: Redis, metrics endpoint, logging, plugin blocking."""

    redis: RedisSettings
    metrics_addr: str = setting("METRICS_ADDR", "127.0.0.1")
    log_format: str = setting("LOG_FORMAT", "json", choices=("json", "text"))
    log_level: str = setting("LOG_LEVEL", "info",
                             choices=("debug", "info", "warning", "error"))
    disabled_plugins: frozenset[str] = setting("QUANTUM_DISABLE_PLUGINS", frozenset())

    @classmethod
    def from_env(cls, env: EnvReader) -> CommonConfig:
        from governor_core.redis_settings import RedisSettings  # not at the top: see above

        return read_settings(cls, env, redis=RedisSettings.from_env(env))
