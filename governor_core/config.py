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
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, unquote_plus, urlsplit

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
class RedisSettings:
    """Where Redis is. ``url`` may carry a password and use ``rediss://`` for TLS.

    ``REDIS_URL`` wins over ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB`` (those are read only
    when it is unset). The URL is checked here as redis-py will read it (scheme, host, a
    port from 1 to 65535, a numeric database), so a bad one stops the host at start with a
    :class:`ConfigError` naming ``REDIS_URL`` and showing the URL redacted.

    High availability (Redis Sentinel): with ``REDIS_SENTINELS=host:port,…`` (port 26379
    when left out) and ``REDIS_SENTINEL_MASTER=name``, the primary is the one the sentinels
    name, asked again on every reconnect (:func:`governor_core.redis_io.connect`). Then
    ``REDIS_URL``, if set, gives only the data nodes' user, password, database, TLS
    (``rediss://``) and query options: its host and port are not used (``REDIS_DB`` gives
    the database when it is unset). ``REDIS_SENTINEL_PASSWORD`` is the sentinels' own
    ``requirepass``, when they have one (it is not the data nodes' password).
    """

    url: str
    #: ``(host, port)`` of each sentinel; empty: ``url`` is the server itself.
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = ""
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: EnvReader) -> RedisSettings:
        url = env.optional_str("REDIS_URL")
        sentinels = env.optional_str("REDIS_SENTINELS")
        master = env.optional_str("REDIS_SENTINEL_MASTER")
        sentinel_password = env.optional_str("REDIS_SENTINEL_PASSWORD")
        if sentinels is not None or master is not None:
            if sentinels is None:
                raise ConfigError("REDIS_SENTINELS", "", "host:port[,host:port…] of the "
                                  "sentinels, since REDIS_SENTINEL_MASTER is set")
            if master is None or not re.fullmatch(r"[^\s\x00-\x1f]+", master):
                raise ConfigError("REDIS_SENTINEL_MASTER", master or "", "the name the "
                                  "sentinels monitor the primary under (sentinel monitor "
                                  "<name> …), required with REDIS_SENTINELS")
            if url is None:
                url = f"redis://sentinel/{env.int('REDIS_DB', 0, min=0)}"
            elif urlsplit(url).scheme not in ("redis", "rediss"):
                raise ConfigError("REDIS_URL", redact_url(url), "a redis:// or rediss:// URL "
                                  "with REDIS_SENTINELS (only its credentials, database, TLS "
                                  "and options are used)")
            return cls(cls.from_url(url).url, parse_sentinels(sentinels), master,
                       sentinel_password)
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
        """The URL without secrets; with sentinels, in the form
        ``redis+sentinel://[user:***@]host:port,…/master/db`` (for logs and messages)."""
        if not self.sentinels:
            return redact_url(self.url)
        parts = urlsplit(self.url)
        auth = (f"{parts.username or ''}:***@" if parts.password is not None
                else f"{parts.username}@" if parts.username else "")
        hosts = ",".join(f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                         for host, port in self.sentinels)
        db = parts.path.strip("/") or "0"
        return f"{parts.scheme}+sentinel://{auth}{hosts}/{self.sentinel_master}/{db}"


def parse_sentinels(text: str, name: str = "REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """``host:port,…`` (``[v6]:port`` for an IPv6 address, port 26379 when left out) as
    ``(host, port)`` pairs; a :class:`ConfigError` naming ``name`` if one is unusable."""
    expected = ("a comma-separated list of sentinel host:port (port from 1 to 65535, "
                "[address]:port for IPv6)")
    found = []
    for item in (part.strip() for part in text.split(",")):
        match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^\s:\[\]/@]+))"
                             r"(?::(?P<port>\d{1,5}))?", item, re.ASCII)
        port = int(match["port"] or 26379) if match else 0
        if not match or not 1 <= port <= 65535:
            raise ConfigError(name, text, expected)
        found.append((match["v6"] or match["host"], port))
    return tuple(dict.fromkeys(found))


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
    return _option_problem(url)


#: TLS options naming a file (or, ``ssl_ca_path``, a directory) that must be readable.
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path")


def _option_problem(url: str) -> str:
    """What redis-py would refuse in the URL's query, found now rather than at the first
    connection (an unknown option is a ``TypeError`` there, a missing CA file a
    ``ConnectionError`` that a service would wait out as an outage forever). The URL is read
    as connect() reads it (a pool) and one connection object is made from it, which checks
    every option but connects nothing. ``protocol`` other than 2 is refused: the hot path
    reads RESP2 replies (:data:`governor_core.redis_io.PROTOCOL`), and the query would win."""
    try:
        pool = redis.ConnectionPool.from_url(url)
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:  # "__init__() got an unexpected keyword argument 'name'"
        unknown = re.findall(r"'([^']*)'", str(exc))[-1:] or ["?"]
        return (f"{_URL_SHAPE} (its query has an option that redis-py does not take here: "
                f"{unknown[0]!r}; TLS options need rediss://)")
    except (ValueError, redis.RedisError) as exc:
        return f"{_URL_SHAPE} (its query: {redact_text(str(exc), url)})"
    options = pool.connection_kwargs
    if options.get("protocol", 2) != 2:
        return f"{_URL_SHAPE} (the services speak RESP2: leave protocol out of the query)"
    for name in _TLS_FILES:
        path = options.get(name)
        if path and not os.access(path, os.R_OK):
            return f"{_URL_SHAPE} ({name} names {path!r}, which cannot be read)"
    return ""


#: A query option whose name (percent-decoded) matches is a secret: redis-py reads
#: ``password`` from the query; the rest cover misspellings and options yet to come.
_SECRET_NAME = re.compile(r"(?i)pass|secret|token|auth|credential")
#: One ``name=value`` of a query, split as redis-py's ``parse_qs`` splits it: on ``&`` only
#: (a ``;`` belongs to the value), the value running to the next ``&`` or a ``#``.
_QUERY_OPTION = re.compile(r"[?&]([^=&#]*)=([^&#]*)")


def _secret_spans(url: str) -> list[tuple[int, int]]:
    """Where the secrets are in ``url``, as sorted, disjoint ``(start, end)`` spans.

    Whatever its shape: the credentials are everything between the start of the
    authority (after ``//``, else the start) and the *last* ``@``, less the user name before
    their first ``:`` (all of it when there is no ``:``, as a password may have been written
    where the user name goes); the value of each query option named like a secret; and a
    fragment after the last ``@`` (an unencoded ``#`` in a password starts one)."""
    spans: list[tuple[int, int]] = []
    at = url.rfind("@")
    if at >= 0:
        slashes = url.find("//")
        start = slashes + 2 if 0 <= slashes < at else 0
        colon = url.find(":", start, at)
        spans.append((colon + 1 if colon >= 0 else start, at))
    for match in _QUERY_OPTION.finditer(url):
        if _SECRET_NAME.search(unquote_plus(match.group(1))):
            spans.append(match.span(2))
    hash_mark = url.find("#", at + 1)
    if hash_mark >= 0:
        spans.append((hash_mark + 1, len(url)))
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(span for span in spans if span[1] > span[0]):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    return merged


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``, safe for logs and error messages,
    whatever its shape (well-formed or not): the password (``user:***@``), the values of
    query options named like one (``?password=***``, ``…token=***``, however spelled or
    percent-encoded), and any fragment (see :func:`_secret_spans`)."""
    parts, last = [], 0
    for begin, end in _secret_spans(url):
        parts += [url[last:begin], "***"]
        last = end
    return "".join(parts) + url[last:]


def redact_text(text: str, url: str) -> str:
    """``text`` (say, an error message from redis-py) with every secret of ``url`` (its
    password, however the URL is shaped) replaced by ``***``."""
    for secret in sorted(url_secrets(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def url_secrets(url: str) -> set[str]:
    """The substrings of ``url`` that :func:`redact_url` hides, as written and as redis-py
    may decode them (empty strings excluded)."""
    found = {url[begin:end] for begin, end in _secret_spans(url)}
    return {item for value in found
            for item in (value, unquote(value), unquote_plus(value), unquote(unquote_plus(value)))
            if item}


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
    #: README, "Stale plans and claiming": a 500-plan batch measured 11 ms (median), 33 ms
    #: at worst, so 10 s is ~300× the slowest batch plus the 500 ms read wait; was 60 s,
    #: which left a crashed governor's plans waiting 60-90 s.
    claim_idle_ms: int = setting("GOVERNOR_CLAIM_IDLE_MS", 10_000, min=1_000)
    #: Gate 1a (SPEC 3.2): a plan older than this (from its ``ts``, else its stream entry
    #: id) is denied as ``stale_plan``; 0 turns the gate off. 30 s covers a crashed
    #: governor's plans claimed after ``GOVERNOR_CLAIM_IDLE_MS`` (10 s, checked every 5 s)
    #: and drained (5,100 in ~1 s, measured) twice over; README, "Stale plans and claiming".
    max_plan_age_sec: int = setting("GOVERNOR_MAX_PLAN_AGE_SEC", 30, min=0)
    #: Another consumer of the group idle this long with nothing pending is deleted (0: never).
    consumer_idle_delete_sec: int = setting("GOVERNOR_CONSUMER_IDLE_DELETE_SEC", 3600, min=0)
    #: ``WAIT`` for this many replicas after each batch's writes (0: off); the next batch's
    #: writes go out only once it returns (deploy/README.md, "High availability").
    wait_replicas: int = setting("GOVERNOR_WAIT_REPLICAS", 0, min=0, max=100)
    #: ``WAIT``'s timeout: never 0 (that would block the governor while no replica is up),
    #: at most 5 s (under the client's 10 s socket timeout, which would call it an outage).
    wait_timeout_ms: int = setting("GOVERNOR_WAIT_TIMEOUT_MS", 1000, min=1, max=5_000)

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> GovernorConfig:
        env = env or EnvReader()
        config = read_settings(cls, env, common=CommonConfig.from_env(env))
        if not config.consumer:
            config = dataclasses.replace(config, consumer=default_consumer())
        return config
