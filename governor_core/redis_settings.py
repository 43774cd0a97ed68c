"""Where Redis is, whether redis-py can use that, and how to show it without its secrets.

* :class:`RedisSettings`: ``REDIS_URL`` (or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_DB``) and
  the Sentinel variables, read once and checked at start (:func:`parse_sentinels`,
  :func:`url_problem`), so a bad value stops the host with one :class:`ConfigError` line.
* Redaction: :func:`redact_url`, :func:`redact_text` and :func:`url_secrets`, used by every
  log line and error message that could quote a URL.

What lives elsewhere: the machinery this module builds on (:class:`ConfigError`,
:class:`EnvReader`, ``setting(...)`` fields) is in :mod:`governor_core.config`, and so is
:class:`~governor_core.config.CommonConfig`, the settings both hosts share (it holds a
:class:`RedisSettings`). The redaction helpers need nothing of the configuration; they sit
beside the URL checks because both read a URL's shape as redis-py does, and a check's
message must itself be redacted (:func:`_option_problem` quotes redis-py's error).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus, urlsplit

import redis

from governor_core.config import ConfigError, EnvReader


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
