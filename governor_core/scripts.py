"""The Lua scripts, one file each in :mod:`governor_core.lua`, and how they are run.

Each ``*.lua`` file is read once, when :data:`SCRIPTS` is built at import, and named by its
file stem (``SCRIPTS["issue_permits"]``). Scripts run by ``EVALSHA``: a hot path sends
:meth:`Script.command` in its own pipeline, after :meth:`ScriptRegistry.load` at start (or
after an outage), and reloads the script when a reply :func:`is_noscript`; a cold path
calls the :class:`Script`, which does that itself (redis-py's ``register_script``
semantics). Each file opens with a header documenting its ``KEYS``, ``ARGV`` and reply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from operator import attrgetter
from typing import Any

import redis

#: The encoding of the script files and of their text on the wire (redis-py's default):
#: a script's SHA is that of these bytes.
SOURCE_ENCODING = "utf-8"


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script: its name (the file stem), its source text and its SHA.

    ``sha`` is the SHA1 hex digest of ``source`` encoded as UTF-8, the name Redis gives the
    script on ``SCRIPT LOAD``, when built by :meth:`from_source` (as the registry does).
    """

    name: str
    source: str
    sha: str

    @classmethod
    def from_source(cls, name: str, source: str) -> Script:
        """The script ``name`` with ``source``, its SHA computed as Redis computes it."""
        return cls(name, source, hashlib.sha1(source.encode(SOURCE_ENCODING)).hexdigest())

    def command(self, keys: Sequence[str], args: Sequence[str | int]) -> tuple[str, ...]:
        """The ``EVALSHA`` command that runs this script on ``keys`` and ``args``, every
        argument a string: ``("EVALSHA", sha, str(len(keys)), *keys, *map(str, args))``.

        For a pipeline: a reply that :func:`is_noscript` means the server had not loaded
        the script (see :meth:`ScriptRegistry.load`).
        """
        return ("EVALSHA", self.sha, str(len(keys)), *keys, *map(str, args))

    def __call__(self, client: redis.Redis, keys: Sequence[str],
                 args: Sequence[str | int]) -> Any:
        """Run the script on ``client`` and return its reply, as redis-py parses it.

        On a ``NOSCRIPT`` error the script is loaded (``SCRIPT LOAD``) and run once more;
        any other error, or a second ``NOSCRIPT``, is raised. Costs one round trip, three
        after a script cache flush: for cold paths (hot paths pipeline :meth:`command`).
        """
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.ResponseError as exc:
            if not is_noscript(exc):
                raise
        client.script_load(self.source)
        return client.evalsha(self.sha, len(keys), *keys, *args)


class ScriptRegistry:
    """Every ``*.lua`` file of ``package``, read once when the registry is built.

    The files are package data (read with :mod:`importlib.resources`), so the registry
    works from a source tree and from an installed wheel alike.
    """

    def __init__(self, package: str = "governor_core.lua") -> None:
        self.package = package
        found = sorted((Script.from_source(entry.name.removesuffix(".lua"),
                                           entry.read_text(encoding=SOURCE_ENCODING))
                        for entry in resources.files(package).iterdir()
                        if entry.name.endswith(".lua") and entry.is_file()),
                       key=attrgetter("name"))
        self._by_name = {script.name: script for script in found}
        self._by_sha = {script.sha: script for script in found}

    def __getitem__(self, name: str) -> Script:
        """The script from ``<name>.lua``; a :class:`KeyError` names the scripts there are."""
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name) or "none: is its package data installed?"
            raise KeyError(f"no Lua script {name!r} in {self.package} (it has {known})"
                           ) from None

    def by_sha(self, sha: str) -> Script | None:
        """The script whose SHA is ``sha`` (e.g. the second argument of an ``EVALSHA``
        that failed with ``NOSCRIPT``), or ``None`` if it is none of these."""
        return self._by_sha.get(sha)

    def load(self, client: redis.Redis) -> None:
        """``SCRIPT LOAD`` every script, in one pipeline (one round trip).

        A service calls this once at start and after an outage (a restarted server has an
        empty script cache). Raises what the pipeline raises: a connection error, or the
        :class:`redis.ResponseError` of a script Redis refused to compile.
        """
        pipe = client.pipeline(transaction=False)
        for script in self:
            pipe.script_load(script.source)
        pipe.execute()

    def __iter__(self) -> Iterator[Script]:
        """The scripts, sorted by name."""
        return iter(self._by_name.values())


#: The project's scripts, from ``governor_core/lua/*.lua``.
SCRIPTS = ScriptRegistry()


def is_noscript(reply: object) -> bool:
    """Whether ``reply`` is a ``NOSCRIPT`` error: the server does not know the script (its
    cache was flushed, or the server restarted).

    True for the :class:`redis.exceptions.NoScriptError` redis-py makes of such a reply (it
    strips the ``NOSCRIPT`` code from the message) and for any :class:`redis.ResponseError`
    whose message still starts with ``NOSCRIPT``; false for anything else, errors included.
    """
    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, redis.ResponseError) and str(reply).startswith("NOSCRIPT"))
