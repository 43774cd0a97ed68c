"""A real Redis Sentinel deployment on loopback, for high-availability tests.

:func:`start_sentinels` starts a primary, its replicas (``--replicaof``) and sentinels
(``--sentinel``, with a config file generated in a temporary directory: Sentinel rewrites
it as it learns the topology), each on a free port, with the server binary the test
server setting names (``QG_TEST_SERVER``: ``redis-server`` or ``valkey-server``), and
returns once every replica is in sync and every sentinel knows the replicas and the other
sentinels, so a failover can start as soon as the primary dies. :meth:`SentinelCluster.stop`
kills them all.

Timings are small so a failover takes seconds, not the 30 s and more of Sentinel's defaults:
``down-after-milliseconds`` 1000 (a primary silent that long is subjectively down), and a
``failover-timeout`` of 3000 ms (how soon a failed failover is tried again)::

    cluster = start_sentinels()
    try:
        client = connect(cluster.settings())     # follows the primary the sentinels name
        old = cluster.kill_primary()             # SIGKILL, like a crashed host
        new = cluster.wait_for_failover(old)     # the port of the promoted replica
    finally:
        cluster.stop()
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import redis

from governor_core.config import EnvReader
from governor_core.redis_settings import RedisSettings
from governor_core.testing import RedisServer, free_port, server_binary, start_redis

__all__ = ["SentinelCluster", "start_sentinels"]

#: The name the sentinels monitor the primary under (``REDIS_SENTINEL_MASTER``).
MASTER_NAME = "qg-primary"


@dataclass
class SentinelCluster:
    """The processes of a Sentinel deployment; data nodes by port (any may be the primary)."""

    master_name: str
    nodes: dict[int, RedisServer]
    sentinels: dict[int, subprocess.Popen[bytes]]
    workdir: str
    password: str | None = None
    sentinel_password: str | None = None
    killed: list[int] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        """The services' environment for this deployment."""
        env = {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinels),
               "REDIS_SENTINEL_MASTER": self.master_name}
        if self.password:
            env["REDIS_URL"] = f"redis://:{self.password}@sentinel/0"
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def settings(self) -> RedisSettings:
        return RedisSettings.from_env(EnvReader(self.env))

    def sentinel(self, port: int | None = None) -> redis.Redis:
        """A client of one sentinel (the first one still running by default)."""
        port = port or next(p for p, proc in self.sentinels.items() if proc.poll() is None)
        return redis.Redis(port=port, password=self.sentinel_password,
                           decode_responses=True, socket_timeout=2)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, decode_responses=True,
                           socket_timeout=2)

    def primary_port(self) -> int:
        """The primary's port as the sentinels see it now."""
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(self.master_name)
        return int(port)

    def kill_primary(self) -> int:
        """SIGKILL the current primary (no shutdown, no last replication); its port."""
        port = self.primary_port()
        self.nodes[port].process.kill()
        self.nodes[port].process.wait(timeout=10)
        self.killed.append(port)
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until every live sentinel names a primary other than ``old_port`` and that
        node says it is a primary; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ports = {int(self.sentinel(port).sentinel_get_master_addr_by_name(
                    self.master_name)[1]) for port, proc in self.sentinels.items()
                    if proc.poll() is None}
                if len(ports) == 1 and old_port not in ports:
                    new = ports.pop()
                    if self.node(new).info("replication")["role"] == "master":
                        return new
            except (redis.ConnectionError, redis.TimeoutError, TypeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no failover from port {old_port} within {timeout} s")

    def wait_in_sync(self, timeout: float = 30.0) -> None:
        """Wait until every live data node but the primary is its replica, linked and
        online (after a switchover, the old primary is demoted and resynchronised only
        after the new one is promoted)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                primary = self.primary_port()
                live = [port for port, node in self.nodes.items()
                        if node.process.poll() is None and port != primary]
                info = self.node(primary).info("replication")
                online = {int(info[f"slave{n}"]["port"]) for n in range(
                    info.get("connected_slaves", 0)) if info[f"slave{n}"]["state"] == "online"}
                if info["role"] == "master" and set(live) <= online:
                    return
            except (redis.ConnectionError, redis.TimeoutError, KeyError, TypeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the replicas were not in sync within {timeout} s")

    def stop(self) -> None:
        """Kill every process (data nodes and sentinels) and remove the files."""
        for process in self.sentinels.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        for server in self.nodes.values():
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait(timeout=10)
            shutil.rmtree(server.workdir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_sentinels(*, replicas: int = 1, sentinels: int = 3, quorum: int = 2,
                    down_after_ms: int = 1000, failover_timeout_ms: int = 3000,
                    password: str | None = None, sentinel_password: str | None = None,
                    master_name: str = MASTER_NAME, timeout: float = 30.0
                    ) -> SentinelCluster:
    """Start a primary, ``replicas`` replicas and ``sentinels`` sentinels on free loopback
    ports; return once the deployment is ready for a failover (see the module's docstring).

    ``password`` is the data nodes' ``requirepass`` (and ``masterauth``, and the sentinels'
    ``auth-pass``); ``sentinel_password`` the sentinels' own ``requirepass``.
    """
    binary = server_binary()
    auth = ("--requirepass", password, "--masterauth", password) if password else ()
    cluster = SentinelCluster(master_name, {}, {}, tempfile.mkdtemp(prefix="qg-sentinel-"),
                              password, sentinel_password)
    try:
        primary = _start_node(None, auth)
        cluster.nodes[primary.port] = primary
        for _ in range(replicas):
            replica = _start_node(primary.port, auth)
            cluster.nodes[replica.port] = replica
        for _ in range(sentinels):
            port = free_port()
            path = os.path.join(cluster.workdir, f"sentinel-{port}.conf")
            lines = [f"port {port}", "bind 127.0.0.1", f"dir {cluster.workdir}",
                     f"sentinel monitor {master_name} 127.0.0.1 {primary.port} {quorum}",
                     f"sentinel down-after-milliseconds {master_name} {down_after_ms}",
                     f"sentinel failover-timeout {master_name} {failover_timeout_ms}",
                     f"sentinel parallel-syncs {master_name} 1"]
            if password:
                lines.append(f"sentinel auth-pass {master_name} {password}")
            if sentinel_password:
                lines.append(f"requirepass {sentinel_password}")
            with open(path, "w", encoding="utf-8") as file:
                file.write("\n".join(lines) + "\n")
            cluster.sentinels[port] = subprocess.Popen(
                [binary, path, "--sentinel"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
        _wait_ready(cluster, replicas, sentinels, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_node(primary_port: int | None, auth: tuple[str, ...]) -> RedisServer:
    """A data node (a replica of ``primary_port`` if given), of :func:`server_kind`."""
    replicaof = ("--replicaof", "127.0.0.1", str(primary_port)) if primary_port else ()
    return start_redis(None, *auth, *replicaof)


def _wait_ready(cluster: SentinelCluster, replicas: int, sentinels: int,
                timeout: float) -> None:
    """Every replica linked to the primary; every sentinel sees the primary up, all the
    replicas and all the other sentinels (discovered through the primary's hello channel,
    every 2 s), so the quorum and the leader election of a failover can be reached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            linked = all(cluster.node(port).info("replication").get("master_link_status")
                         == "up" for port in list(cluster.nodes)[1:])
            states = [cluster.sentinel(port).sentinel_master(cluster.master_name)
                      for port in cluster.sentinels]
            if linked and all(state["num-slaves"] == replicas
                              and state["num-other-sentinels"] == sentinels - 1
                              and not state["is_sdown"] for state in states):
                return
        except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the Sentinel deployment was not ready within {timeout} s")
