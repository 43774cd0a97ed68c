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
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis

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
        if not re.fullmatch(r"[+-]?\d+", value):
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
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(name, value, _range_text("a number", min, max)) from None
        if not math.isfinite(number) or "_" in value:
            raise ConfigError(name, value, _range_text("a finite number", min, max))
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
class RedisSettings:
    """Where Redis is. ``url`` may carry a password and use ``rediss://`` for TLS.

    ``REDIS_URL`` wins over ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB`` (those are read only
    when it is unset). The URL is checked here as redis-py will read it (scheme, host, a
    port from 1 to 65535, a numeric database), so a bad one stops the host at start with a
    :class:`ConfigError` naming ``REDIS_URL`` and showing the URL redacted.
    """

    url: str

    @classmethod
    def from_env(cls, env: EnvReader) -> RedisSettings:
        url = env.optional_str("REDIS_URL")
        if url is None:
            host = env.str("REDIS_HOST", "localhost")
            port = env.int("REDIS_PORT", 6379, min=1, max=65535)
            db = env.int("REDIS_DB", 0, min=0)
            return cls(url=f"redis://{host}:{port}/{db}")
        return cls.from_url(url)

    @classmethod
    def from_url(cls, url: str, name: str = "REDIS_URL") -> RedisSettings:
        """Settings for ``url``; a :class:`ConfigError` naming ``name`` if it is unusable."""
        problem = url_problem(url)
        if problem:
            raise ConfigError(name, redact_url(url), problem)
        return cls(url=url)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


_URL_SHAPE = "a redis://[[user]:password@]host[:port][/db], rediss://… or unix://… URL"


def url_problem(url: str) -> str:
    """What is wrong with a Redis URL, as the "expected …" of a :class:`ConfigError`
    (``""`` when redis-py can use it). Never quotes the URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _URL_SHAPE + " with a port from 1 to 65535"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return _URL_SHAPE
    if parts.scheme == "unix":
        return "" if parts.path else _URL_SHAPE + " (unix:// needs the socket's path)"
    if not parts.hostname:
        return _URL_SHAPE + " (the host is missing)"
    if port == 0:
        return _URL_SHAPE + " with a port from 1 to 65535"
    if not re.fullmatch(r"/?(\d+/?)?", parts.path):
        return _URL_SHAPE + " (the path is the database number)"
    try:  # redis-py's own reading of it (a pool: nothing connects), as connect() will do
        redis.ConnectionPool.from_url(url)
    except ValueError:
        return _URL_SHAPE + " (an option in its query is invalid)"
    return ""


#: Query options whose values are redacted (redis-py reads ``password`` from the query).
_SECRET_OPTION = re.compile(r"(?i)([?&;](?:[^=&;#]*(?:pass|secret|token|auth)[^=&;#]*)=)"
                            r"[^&;#]*")


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe for logs and error messages,
    whatever its shape: well-formed or not, the credentials are everything between the
    start of the authority (after ``//``, else the start) and the *last* ``@``; the user name
    before their first ``:`` is kept, the rest becomes ``***`` (all of it when there is no
    ``:``, as a password may have been written where the user name goes). Query options
    named like a password (``password=``, ``…token=``) have their values redacted too."""
    text = _SECRET_OPTION.sub(r"\1***", url)
    at = text.rfind("@")
    if at < 0:
        return text
    slashes = text.find("//")
    start = slashes + 2 if 0 <= slashes < at else 0
    userinfo = text[start:at]
    user, colon, _secret = userinfo.partition(":")
    safe = f"{user}:***" if colon else "***"
    return text[:start] + safe + text[at:]


def redact_text(text: str, url: str) -> str:
    """``text`` (say, an error message from redis-py) with every secret of ``url`` (its
    password, however the URL is shaped) replaced by ``***``."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def url_secrets(url: str) -> set[str]:
    """The substrings of ``url`` that :func:`redact_url` hides, decoded and not (empty
    strings excluded)."""
    secrets: set[str] = set()
    for match in _SECRET_OPTION.finditer(url):
        secrets.add(match.group(0)[len(match.group(1)):])
    at = url.rfind("@")
    if at >= 0:
        slashes = url.find("//")
        start = slashes + 2 if 0 <= slashes < at else 0
        user, colon, secret = url[start:at].partition(":")
        secrets.add(secret if colon else user)
    return {item for value in secrets for item in (value, unquote(value)) if item}


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
        return read_settings(cls, env, redis=RedisSettings.from_env(env))


def default_consumer() -> str:
    """A consumer name unique to this process: host name and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    """The governor host's configuration (SPEC 3 and 6)."""

    common: CommonConfig
    metrics_port: int = setting("GOVERNOR_METRICS_PORT", 8044, min=0, max=65535)
    group: str = setting("GOVERNOR_GROUP", "governor")
    #: Unset: :func:`default_consumer`.
    consumer: str = setting("GOVERNOR_CONSUMER", "")
    permit_ttl_sec: int = setting("GOVERNOR_PERMIT_TTL_SEC", 60, min=1)
    cooldown_sec: int = setting("GOVERNOR_COOLDOWN_SEC", 0, min=0)
    batch_size: int = setting("GOVERNOR_BATCH_SIZE", 500, min=1, max=10_000)
    block_ms: int = setting("GOVERNOR_BLOCK_MS", 500, min=1, max=60_000)
    stream_maxlen: int = setting("GOVERNOR_STREAM_MAXLEN", 100_000, min=100)
    claim_idle_ms: int = setting("GOVERNOR_CLAIM_IDLE_MS", 60_000, min=1_000)
    #: Another consumer of the group idle this long with nothing pending is deleted (0: never).
    consumer_idle_delete_sec: int = setting("GOVERNOR_CONSUMER_IDLE_DELETE_SEC", 3600, min=0)

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> GovernorConfig:
        env = env or EnvReader()
        config = read_settings(cls, env, common=CommonConfig.from_env(env))
        if not config.consumer:
            config = dataclasses.replace(config, consumer=default_consumer())
        return config
