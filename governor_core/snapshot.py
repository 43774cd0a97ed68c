"""The configuration in force, as a record: ``config_id`` and its snapshot (SPEC 8).

A host's **configuration snapshot** is its effective settings (every variable its config
classes read, by :func:`~governor_core.config.settings_of`, with the value in force,
defaults included), the same for every *active* plugin that keeps its config dataclass as
``config`` (see :mod:`governor_core.hookspecs`), plus ``service``, ``version`` (of
``governor_core``) and ``plugins`` (each active plugin's name and version). Its
``config_id`` is the first 12 hex digits of the SHA-256 of that text, ``NAME=value`` lines
in sorted order: the same settings and the same code give the same id, on every process
and every restart; any change of a value, a default, a plugin or a version gives another.

What it leaves out, and why:

* ``REDIS_URL`` (and ``REDIS_HOST``/``PORT``/``DB``): where Redis is, not how decisions
  are made, and the URL may hold a password. The snapshot is written to Redis and shown by
  ``explain``: it never holds a secret.
* ``GOVERNOR_CONSUMER``: a process's name in the consumer group (host name and pid by
  default). Every governor of a group with the same settings shares one ``config_id``.
* ``created_ts`` (below) is written with the snapshot, but is no part of the fingerprint.

A setting two sources read (core and a plugin, or two plugins) with different values is
kept under ``{plugin}.{NAME}`` for the later one; equal values are one field.

The snapshot is written once per ``config_id`` to ``quantum:config:snapshot:{config_id}``
(a hash, no TTL), with ``created_ts`` (when it was first written) and ``config_id``: one
``MULTI`` of ``HSETNX`` per field, so a snapshot is never overwritten (the first
``created_ts`` stays) and a partial one (a crash between fields cannot happen inside
``MULTI``, but an operator's edit can) is completed. Each host writes its own at start
(:meth:`~governor_core.host.HostService.prepare`, again after an outage: idempotent).

One ``config_id`` per host: the governor's covers the core governor settings and its
active plugins (``p31_efficiency``); the allocation service's covers the allocation and
formula settings and its active plugins (``p29_shadow``), whose proposal entries carry
the allocation host's id (:attr:`~governor_core.allocation.model.AllocationTick.config_id`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from governor_core import __version__
from governor_core.check_config import plugin_state
from governor_core.formats import fmt_ts
from governor_core.keys import SNAPSHOT_PREFIX
from governor_core.plugins import PluginHost

log = logging.getLogger("quantum.snapshot")

#: Settings that are no part of the snapshot (see the module docstring).
EXCLUDED = frozenset({"GOVERNOR_CONSUMER", "REDIS_URL", "REDIS_HOST", "REDIS_PORT",
                      "REDIS_DB"})
#: Snapshot fields that describe the record itself, not a setting.
META_FIELDS = ("service", "version", "plugins")
#: Hex digits of the SHA-256 kept as the id: 48 bits, no collision among the handful of
#: configurations a deployment ever runs.
ID_DIGITS = 12


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """A host's effective configuration (``fields``: name → value, strings) and its id."""

    config_id: str
    fields: Mapping[str, str]

    @property
    def key(self) -> str:
        return SNAPSHOT_PREFIX + self.config_id


def setting_values(config: Any) -> dict[str, str]:
    """Every :func:`~governor_core.config.setting` field of the config dataclass ``config``
    and of the config dataclasses it holds (``common``, ``formula``…), variable name →
    value as text; :data:`EXCLUDED` names left out."""
    values: dict[str, str] = {}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        spec = item.metadata.get("setting")
        if spec is not None:
            if spec.env not in EXCLUDED:
                values[spec.env] = format_value(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            values.update(setting_values(value))
    return values


def format_value(value: Any) -> str:
    """A setting's value as the snapshot writes it: ``repr`` of a float (exact, ``0.45``),
    names sorted and comma-joined, ``""`` for None, else ``str``."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (frozenset, set, tuple, list)):
        return ",".join(sorted(map(str, value)))
    return str(value)


def config_id_of(fields: Mapping[str, str]) -> str:
    """The first :data:`ID_DIGITS` hex digits of the SHA-256 of ``NAME=value`` lines, sorted
    (UTF-8, ``\\n`` after each line)."""
    text = "".join(f"{name}={fields[name]}\n" for name in sorted(fields))
    return hashlib.sha256(text.encode()).hexdigest()[:ID_DIGITS]


def plugin_configs(plugins: PluginHost) -> dict[str, Any]:
    """Each plugin active on this host (``active`` as ``quantum-governor plugins`` says it:
    loaded, and implementing a hook this host calls) with its config dataclass (its
    ``config`` attribute, see :mod:`governor_core.hookspecs`), or None for a plugin that
    keeps none. A plugin idle here is left out even if one process configured it for the
    other host too (the demo builds both)."""
    configs: dict[str, Any] = {}
    for status in plugins.statuses:
        if plugin_state(plugins.host, status) != "active":
            continue
        config = getattr(plugins.manager.get_plugin(status.name), "config", None)
        configs[status.name] = (config if dataclasses.is_dataclass(config)
                                and not isinstance(config, type) else None)
    return configs


def host_snapshot(service: str, config: Any, plugins: PluginHost,
                  extra: Mapping[str, str] | None = None) -> ConfigSnapshot:
    """The snapshot of a host: ``config``'s settings, ``extra`` (settings read outside a
    config class, e.g. the allocation's cluster map), each plugin that is active and keeps a
    config on this host, and the :data:`META_FIELDS`."""
    fields = setting_values(config)
    fields.update(extra or {})
    versions = {status.name: status.version or "" for status in plugins.statuses}
    in_force = []
    for name, plugin_config in plugin_configs(plugins).items():
        if plugin_config is None:
            continue
        in_force.append(f"{name} {versions.get(name, '')}".rstrip())
        for setting, value in setting_values(plugin_config).items():
            if fields.setdefault(setting, value) != value:
                fields[f"{name}.{setting}"] = value
    fields.update(service=service, version=__version__, plugins=",".join(sorted(in_force)))
    return ConfigSnapshot(config_id_of(fields), fields)


def cluster_map_value(cluster_map: Mapping[str, str] | None) -> dict[str, str]:
    """The allocation's ``P29_CLUSTER_MAP_FILE`` as a snapshot field: which source maps
    symbols to clusters, and for a file its size and a digest of its content (a changed
    file is another configuration; the path alone would not say so)."""
    if cluster_map is None:
        return {"P29_CLUSTER_MAP_FILE": ""}
    text = "".join(f"{symbol}={cluster_map[symbol]}\n" for symbol in sorted(cluster_map))
    digest = hashlib.sha256(text.encode()).hexdigest()[:ID_DIGITS]
    return {"P29_CLUSTER_MAP_FILE": f"{len(cluster_map)} symbols, sha256 {digest}"}


def write_snapshot(client: redis.Redis, snapshot: ConfigSnapshot, now: float) -> bool:
    """Write ``snapshot`` unless its key holds it already (one ``MULTI`` of ``HSETNX`` per
    field, plus ``config_id`` and ``created_ts``); whether anything was written.

    Redis refusing it (the key holds another type, an ACL without the snapshot keys) is
    logged as an error and the service runs on: a missing snapshot costs ``explain`` the
    configuration, never a permit. An outage is raised, for the run loop to wait out."""
    fields = {**snapshot.fields, "config_id": snapshot.config_id, "created_ts": fmt_ts(now)}
    pipe = client.pipeline(transaction=True)
    for name, value in fields.items():
        pipe.hsetnx(snapshot.key, name, value)
    try:
        return any(reply is True or reply == 1 for reply in pipe.execute())
    except redis.ResponseError as exc:
        log.error("configuration snapshot %s not written: %s (decisions still carry "
                  "config_id %s; check the key's type and the user's ACL for "
                  "%s*)", snapshot.key, exc, snapshot.config_id, SNAPSHOT_PREFIX)
        return False


def read_snapshot(client: redis.Redis, config_id: str) -> dict[str, str]:
    """The snapshot named ``config_id`` (empty when there is none, or its key is not a
    hash)."""
    if not config_id:
        return {}
    try:
        return client.hgetall(SNAPSHOT_PREFIX + config_id)
    except redis.ResponseError as exc:
        if "WRONGTYPE" not in str(exc):
            raise
        return {}
