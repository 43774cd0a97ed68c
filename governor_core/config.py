"""Environment → typed, frozen configuration.

Every service and plugin reads its environment exactly once, through :class:`EnvReader`,
into a frozen dataclass. A value that does not parse raises :class:`ConfigError`, whose
message names the variable, the value seen and what was expected, so a host can stop at
start with one line instead of a traceback (and a plugin can be disabled with the same line).

Every variable read goes through one of the ``EnvReader`` methods with a literal name;
``tests/test_deploy_files.py`` relies on that to check the env files in ``deploy/`` list
exactly the variables the code reads.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

_UNSET = object()


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
class RedisSettings:
    """Where Redis is. ``url`` may carry a password and use ``rediss://`` for TLS."""

    url: str

    @classmethod
    def from_env(cls, env: EnvReader) -> RedisSettings:
        url = env.optional_str("REDIS_URL")
        if url is None:
            host = env.str("REDIS_HOST", "localhost")
            port = env.int("REDIS_PORT", 6379, min=1, max=65535)
            db = env.int("REDIS_DB", 0, min=0)
            url = f"redis://{host}:{port}/{db}"
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError("REDIS_URL", redact_url(url),
                              "a redis://, rediss:// or unix:// URL")
        return cls(url=url)

    @property
    def safe_url(self) -> str:
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    user = quote(parts.username or "", safe="")
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query,
                       parts.fragment))


@dataclass(frozen=True, slots=True)
class CommonConfig:
    """Settings every host shares: Redis, metrics endpoint, logging, plugin blocking."""

    redis: RedisSettings
    metrics_addr: str
    log_format: str
    log_level: str
    disabled_plugins: frozenset[str]

    @classmethod
    def from_env(cls, env: EnvReader) -> CommonConfig:
        return cls(
            redis=RedisSettings.from_env(env),
            metrics_addr=env.str("METRICS_ADDR", "127.0.0.1"),
            log_format=env.choice("LOG_FORMAT", "json", ("json", "text")),
            log_level=env.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            disabled_plugins=env.names("QUANTUM_DISABLE_PLUGINS"),
        )


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    """The governor host's configuration (SPEC 3 and 6)."""

    common: CommonConfig
    metrics_port: int
    group: str
    consumer: str
    permit_ttl_sec: int
    cooldown_sec: int
    batch_size: int
    block_ms: int
    stream_maxlen: int
    claim_idle_ms: int

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> GovernorConfig:
        env = env or EnvReader()
        return cls(
            common=CommonConfig.from_env(env),
            metrics_port=env.int("GOVERNOR_METRICS_PORT", 8044, min=0, max=65535),
            group=env.str("GOVERNOR_GROUP", "governor"),
            consumer=env.str("GOVERNOR_CONSUMER", f"{socket.gethostname()}-{os.getpid()}"),
            permit_ttl_sec=env.int("GOVERNOR_PERMIT_TTL_SEC", 60, min=1),
            cooldown_sec=env.int("GOVERNOR_COOLDOWN_SEC", 0, min=0),
            batch_size=env.int("GOVERNOR_BATCH_SIZE", 500, min=1, max=10_000),
            block_ms=env.int("GOVERNOR_BLOCK_MS", 500, min=1, max=60_000),
            stream_maxlen=env.int("GOVERNOR_STREAM_MAXLEN", 100_000, min=100),
            claim_idle_ms=env.int("GOVERNOR_CLAIM_IDLE_MS", 60_000, min=1_000),
        )
