"""``check-config``'s Redis checks: reachable, authenticated, which server, and whether the
ACL lets each service send every command it sends.

The commands are listed here per host (and per plugin that sends its own), with the key
names the services use, as :data:`COMMANDS`: the Lua scripts' own calls are listed too,
since Redis checks the ACL on each call inside a script. Each is checked without being
run: with ``ACL DRYRUN`` (Redis 7+) when the user may use it, else by queueing it inside
``MULTI`` and discarding the transaction (Redis checks the ACL before it queues a command).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import redis

from governor_core.keys import (
    ALLOCATION_ERROR_STREAM,
    BUDGET_PREFIX,
    CLUSTER_MAP_KEY,
    DEAD_STREAM,
    DECISION_STREAM,
    EFFICIENCY_PREFIX,
    KILL_KEY,
    MODE_KEY,
    PERMIT_PREFIX,
    PERMIT_STREAM,
    PLAN_STREAM,
    PORTFOLIO_KEY,
    PROPOSAL_PREFIX,
    PROPOSAL_STREAM,
    REGIME_STREAM,
    SNAPSHOT_PREFIX,
    STRESS_PREFIX,
    TARGET_PREFIX,
)
from governor_core.redis_io import REDIS_OUTAGE_ERRORS, connect
from governor_core.redis_settings import RedisSettings, redact_text
from governor_core.runtime import is_access_error
from governor_core.scripts import SCRIPTS

if TYPE_CHECKING:
    from governor_core.check_config import Report

Command = tuple[str, ...]
SYMBOL = "BTCUSDT"
_PERMIT = PERMIT_PREFIX + "check-config"
_XADD = ("MAXLEN", "~", "100", "*", "field", "value")
_SCRIPT_LOAD = ("SCRIPT", "LOAD", "return 1")
#: The configuration snapshot each host writes at start (governor_core/snapshot.py).
_SNAPSHOT = (("MULTI",), ("HSETNX", SNAPSHOT_PREFIX + "check-config", "field", "value"),
             ("EXEC",))

#: host → sender (``"core"`` or a plugin's name) → the commands it sends.
COMMANDS: Mapping[str, Mapping[str, Sequence[Command]]] = {
    "governor": {
        "core": (
            ("PING",),
            ("XGROUP", "CREATE", PLAN_STREAM, "governor", "0", "MKSTREAM"),
            ("XREADGROUP", "GROUP", "governor", "check", "COUNT", "1", "STREAMS",
             PLAN_STREAM, ">"),
            ("XAUTOCLAIM", PLAN_STREAM, "governor", "check", "60000", "0-0", "COUNT", "1"),
            ("XINFO", "GROUPS", PLAN_STREAM),
            # consumer housekeeping (GOVERNOR_CONSUMER_IDLE_DELETE_SEC)
            ("XINFO", "CONSUMERS", PLAN_STREAM, "governor"),
            ("XGROUP", "DELCONSUMER", PLAN_STREAM, "governor", "check"),
            *_SNAPSHOT,
            ("TYPE", KILL_KEY), ("GET", KILL_KEY),
            ("HGET", TARGET_PREFIX + SYMBOL, "target_usd"),
            ("HGET", BUDGET_PREFIX + SYMBOL, "budget_usd"),
            _SCRIPT_LOAD,
            SCRIPTS["issue_permits"].command((PERMIT_STREAM, PLAN_STREAM, _PERMIT), ()),
            SCRIPTS["dead_letter"].command((DEAD_STREAM, PLAN_STREAM), ()),
            # inside issue_permits.lua and dead_letter.lua
            ("TYPE", _PERMIT), ("TYPE", PERMIT_STREAM),
            ("HSETNX", _PERMIT, "field", "value"), ("HSET", _PERMIT, "field", "value"),
            ("EXPIRE", _PERMIT, "60"),
            ("XADD", PERMIT_STREAM, *_XADD), ("XADD", DEAD_STREAM, *_XADD),
            ("XACK", PLAN_STREAM, "governor", "0-1"),
            ("WAIT", "1", "1000"),  # after each batch when GOVERNOR_WAIT_REPLICAS > 0
        ),
        "p31_efficiency": (("HMGET", EFFICIENCY_PREFIX + SYMBOL, "efficiency_score"),),
    },
    "allocation": {
        "core": (
            ("PING",),
            _SCRIPT_LOAD,
            SCRIPTS["list_keys"].command((), (BUDGET_PREFIX + "*", 1000)),
            # inside list_keys.lua
            ("KEYS", BUDGET_PREFIX + "*"),
            ("SCAN", "0", "MATCH", BUDGET_PREFIX + "*", "COUNT", "1000"),
            ("HGETALL", PORTFOLIO_KEY), ("HGETALL", BUDGET_PREFIX + SYMBOL),
            ("HGETALL", STRESS_PREFIX + "check"), ("HGETALL", CLUSTER_MAP_KEY),
            ("XREVRANGE", REGIME_STREAM, "+", "-", "COUNT", "1"),
            ("HSET", TARGET_PREFIX + SYMBOL, "field", "value"),
            ("EXPIRE", TARGET_PREFIX + SYMBOL, "300"),
            ("XADD", DECISION_STREAM, *_XADD),
            ("GET", MODE_KEY),
            # a shadow cycle after an enforce one, and the errors the service records
            ("UNLINK", TARGET_PREFIX + SYMBOL),
            ("XADD", ALLOCATION_ERROR_STREAM, *_XADD),
            *_SNAPSHOT,
        ),
        "p29_shadow": (
            ("HMGET", EFFICIENCY_PREFIX + SYMBOL, "efficiency_score"),
            ("HSET", PROPOSAL_PREFIX + SYMBOL, "field", "value"),
            ("EXPIRE", PROPOSAL_PREFIX + SYMBOL, "600"),
            ("XADD", PROPOSAL_STREAM, *_XADD),
        ),
    },
}


def commands_of(host: str, active_plugins: Sequence[str]) -> list[Command]:
    """The commands ``host`` sends with these plugins active, each once, in order."""
    senders = COMMANDS[host]
    found = [*senders["core"]]
    for plugin in active_plugins:
        found.extend(senders.get(plugin, ()))
    return list(dict.fromkeys(found))


def check_redis(settings: RedisSettings, active: Mapping[str, Sequence[str]],
                report: Report) -> None:
    """Reachability, authentication, the server, then the ACL for each host's commands
    (``active``: host → its active plugins)."""
    client = connect(settings)
    where = f"redis at {settings.safe_url}"
    try:
        client.ping()
    except redis.RedisError as exc:
        why = f"{type(exc).__name__}: {redact_text(str(exc), settings.url)}"
        if is_access_error(exc):
            report.error(f"{where}: authentication or ACL refused: {why} (check REDIS_URL's "
                         "user and password)")
        elif isinstance(exc, REDIS_OUTAGE_ERRORS):
            report.error(f"{where}: unreachable: {why}")
        else:
            report.error(f"{where}: {why}")
        return
    user = _whoami(client)
    report.ok(f"{where}: reachable, authenticated"
              + (f" as user {user!r}" if user else ""))
    if settings.sentinels:  # the pool of redis.sentinel's master_for: whom they named
        host, port = client.connection_pool.get_master_address()
        report.ok(f"redis sentinel: the primary of {settings.sentinel_master!r} is "
                  f"{host}:{port} (as named by {len(settings.sentinels)} sentinel(s))")
    report.ok(f"redis server: {server_version(client)}")
    method, check = acl_checker(client, user)
    for host, plugins in active.items():
        commands = commands_of(host, plugins)
        refused = [(command, why) for command in commands if (why := check(command))]
        for command, why in refused:
            report.error(f"redis ACL ({method}): {host} may not run {_show(command)}: {why}")
        if not refused:
            names = ", ".join(dict.fromkeys(_name(command) for command in commands))
            report.ok(f"redis ACL ({method}): {host} may run all {len(commands)} of its "
                      f"commands ({names})")


def server_version(client: redis.Redis) -> str:
    """``redis 7.2.4``, ``valkey 8.0.1 (redis_version 7.2.4)``, from ``INFO server``."""
    try:
        info = client.info("server")
    except redis.ResponseError as exc:
        return f"unknown (INFO refused: {exc})"
    name = str(info.get("server_name") or "redis")
    version = str(info.get(f"{name}_version") or info.get("redis_version") or "?")
    compat = info.get("redis_version")
    if name != "redis" and compat and str(compat) != version:
        return f"{name} {version} (redis_version {compat})"
    return f"{name} {version}"


def acl_checker(client: redis.Redis, user: str | None
                ) -> tuple[str, Callable[[Command], str]]:
    """How commands are checked (``ACL DRYRUN`` or the ``MULTI`` probe) and the check:
    ``""`` when the command is allowed, else Redis's reason."""
    if user is not None:
        try:
            if client.acl_dryrun(user, "PING") == "OK":
                return f"ACL DRYRUN as {user}", lambda command: _dryrun(client, user, command)
        except redis.ResponseError:
            pass  # Redis < 7, or the user may not use ACL: probe instead
    return "queued in MULTI, discarded", lambda command: _probe(client, command)


def _dryrun(client: redis.Redis, user: str, command: Command) -> str:
    try:
        reply = client.acl_dryrun(user, *command)
    except redis.ResponseError as exc:
        return str(exc)
    return "" if reply == "OK" else str(reply)


def _probe(client: redis.Redis, command: Command) -> str:
    if command[0] in ("MULTI", "EXEC"):
        # Not queueable: the probe's own MULTI shows MULTI is allowed; EXEC cannot be
        # checked without running a transaction (ACL DRYRUN, Redis 7+, checks it).
        return ""
    connection = client.connection_pool.get_connection()
    try:
        connection.send_command("MULTI")
        connection.read_response()
        try:
            connection.send_command(*command)
            connection.read_response()
            return ""
        except redis.ResponseError as exc:
            return str(exc)
        finally:
            connection.send_command("DISCARD")
            connection.read_response()
    except redis.ResponseError as exc:
        return f"cannot check: MULTI refused: {exc}"
    finally:
        client.connection_pool.release(connection)


def _whoami(client: redis.Redis) -> str | None:
    try:
        return str(client.acl_whoami())
    except redis.ResponseError:
        return None


def _name(command: Command) -> str:
    two_words = command[0] in ("XGROUP", "XINFO", "SCRIPT")
    return " ".join(command[:2]) if two_words else command[0]


def _show(command: Command) -> str:
    text = " ".join(command)
    return text if len(text) <= 80 else text[:77] + "…"
