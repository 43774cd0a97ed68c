"""Redis Sentinel settings (``REDIS_SENTINELS``, ``REDIS_SENTINEL_MASTER``,
``REDIS_SENTINEL_PASSWORD``) and the governor's ``WAIT`` (``GOVERNOR_WAIT_REPLICAS``,
``GOVERNOR_WAIT_TIMEOUT_MS``): read and checked at start, used by the production client,
``check-config`` and the governor against real sentinels and replicas.

The failover mid-drain itself is ``tests/faults/test_sentinel_failover.py``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from governor_core.config import ConfigError, EnvReader
from governor_core.governor.config import GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.keys import PERMIT_STREAM, PLAN_STREAM
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import REDIS_OUTAGE_ERRORS, connect, execute_commands
from governor_core.redis_settings import RedisSettings
from governor_core.testing import RedisServer, start_redis
from governor_core.testing.sentinel import SentinelCluster, start_sentinels

BIN = Path(sys.executable).parent


def settings(**env: str) -> RedisSettings:
    return RedisSettings.from_env(EnvReader(env))


# -- reading the settings ------------------------------------------------------------------

@pytest.mark.parametrize(("sentinels", "expected"), [
    ("10.0.0.1:26379", (("10.0.0.1", 26379),)),
    ("a:1,b:2, c:3 ", (("a", 1), ("b", 2), ("c", 3))),
    ("sentinel-1", (("sentinel-1", 26379),)),  # Sentinel's default port
    ("[::1]:26380,[fe80::1]", (("::1", 26380), ("fe80::1", 26379))),
    ("a:1,a:1,b:1", (("a", 1), ("b", 1))),  # a repeated address is asked once
])
def test_sentinel_addresses(sentinels: str, expected: tuple[tuple[str, int], ...]) -> None:
    found = settings(REDIS_SENTINELS=sentinels, REDIS_SENTINEL_MASTER="mymaster")
    assert (found.sentinels, found.sentinel_master) == (expected, "mymaster")
    assert found.url == "redis://sentinel/0"


@pytest.mark.parametrize(("env", "name"), [
    ({"REDIS_SENTINELS": "a:0", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:65536", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:1,,b:2", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:x", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:１２", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "redis://a:1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a b:1", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "my master"},
     "REDIS_SENTINEL_MASTER"),
    ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
    ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m",
      "REDIS_URL": "unix:///run/redis.sock"}, "REDIS_URL"),
    ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://h/x"},
     "REDIS_URL"),
    ({"REDIS_SENTINELS": "a:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_DB": "-1"}, "REDIS_DB"),
])
def test_bad_sentinel_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GovernorConfig.from_env(EnvReader(env))
    assert caught.value.name == name


def test_with_sentinels_the_url_gives_credentials_database_and_tls_not_the_host() -> None:
    found = settings(REDIS_SENTINELS="s1:26379,s2:26380", REDIS_SENTINEL_MASTER="prod",
                     REDIS_URL="rediss://app:hunter2@ignored.example:6380/3",
                     REDIS_SENTINEL_PASSWORD="s3cret")
    assert found.url == "rediss://app:hunter2@ignored.example:6380/3"
    assert found.safe_url == "rediss+sentinel://app:***@s1:26379,s2:26380/prod/3"
    assert "s3cret" not in repr(found) and "s3cret" not in found.safe_url
    assert settings(REDIS_SENTINELS="s1", REDIS_SENTINEL_MASTER="m", REDIS_DB="5",
                    ).safe_url == "redis+sentinel://s1:26379/m/5"
    assert settings(REDIS_SENTINELS="[::1]:1", REDIS_SENTINEL_MASTER="m",
                    REDIS_URL="redis://:pw@x/0").safe_url == "redis+sentinel://:***@[::1]:1/m/0"


def test_without_sentinels_nothing_changes() -> None:
    found = settings(REDIS_URL="redis://h:7000/2")
    assert (found.url, found.sentinels, found.safe_url) == ("redis://h:7000/2", (),
                                                            "redis://h:7000/2")


@pytest.mark.parametrize(("env", "expected"), [
    ({}, (0, 1000)),
    ({"GOVERNOR_WAIT_REPLICAS": "1", "GOVERNOR_WAIT_TIMEOUT_MS": "50"}, (1, 50)),
    ({"GOVERNOR_WAIT_REPLICAS": "2", "GOVERNOR_WAIT_TIMEOUT_MS": "5000"}, (2, 5000)),
])
def test_wait_settings(env: dict[str, str], expected: tuple[int, int]) -> None:
    config = GovernorConfig.from_env(EnvReader(env))
    assert (config.wait_replicas, config.wait_timeout_ms) == expected


@pytest.mark.parametrize(("name", "value"), [
    ("GOVERNOR_WAIT_REPLICAS", "-1"), ("GOVERNOR_WAIT_REPLICAS", "one"),
    ("GOVERNOR_WAIT_TIMEOUT_MS", "0"),  # WAIT n 0 blocks for ever while no replica is up
    ("GOVERNOR_WAIT_TIMEOUT_MS", "10000"),  # beyond the client's socket timeout
])
def test_bad_wait_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GovernorConfig.from_env(EnvReader({name: value}))
    assert caught.value.name == name


def clean_env(**env: str) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_", "LOG_"))}
    full.update(env)
    return full


def test_run_stops_at_start_on_a_bad_sentinel_list() -> None:
    result = subprocess.run([str(BIN / "quantum-governor"), "run"], capture_output=True,
                            text=True, timeout=30,
                            env=clean_env(REDIS_SENTINELS="s1:99999",
                                          REDIS_SENTINEL_MASTER="m"))
    assert result.returncode == 2, result.stderr
    assert "REDIS_SENTINELS='s1:99999' is invalid" in result.stderr
    assert "Traceback" not in result.stderr


# -- against real sentinels ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    if not _has_redis():
        pytest.skip("redis-server is not installed")
    deployment = start_sentinels(password="data-pw-1", sentinel_password="sentinel-pw-1")
    try:
        yield deployment
    finally:
        deployment.stop()


def _has_redis() -> bool:
    import shutil

    return shutil.which("redis-server") is not None


@pytest.mark.redis
@pytest.mark.slow
def test_the_client_writes_to_the_primary_the_sentinels_name(cluster: SentinelCluster) -> None:
    client = connect(cluster.settings())
    assert execute_commands(client, [("SET", "ha:probe", "1")]) == ["OK"]
    primary = cluster.primary_port()
    assert cluster.node(primary).get("ha:probe") == "1"
    assert client.connection_pool.get_master_address() == ("127.0.0.1", primary)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("program", ["quantum-governor", "quantum-allocation"])
def test_check_config_names_the_primary(cluster: SentinelCluster, program: str) -> None:
    result = subprocess.run([str(BIN / program), "check-config"],
                            capture_output=True, text=True, timeout=60,
                            env=clean_env(**cluster.env))
    out = result.stdout + result.stderr
    assert (f"redis sentinel: the primary of 'qg-primary' is 127.0.0.1:"
            f"{cluster.primary_port()} (as named by 3 sentinel(s))") in out, out
    assert "redis primary from Sentinel" in out
    assert "data-pw-1" not in out and "sentinel-pw-1" not in out


@pytest.mark.redis
@pytest.mark.slow
def test_a_wrong_sentinel_password_is_not_reachable(cluster: SentinelCluster) -> None:
    env = {**cluster.env, "REDIS_SENTINEL_PASSWORD": "wrong"}
    with pytest.raises(REDIS_OUTAGE_ERRORS):
        connect(RedisSettings.from_env(EnvReader(env))).ping()


@pytest.mark.redis
@pytest.mark.slow
def test_a_command_stream_follows_a_switchover(cluster: SentinelCluster) -> None:
    """``SENTINEL FAILOVER``: once the sentinels name the new primary, the next round trip
    of the same client writes there, although the old primary still takes writes on the
    connection the client holds (Sentinel demotes it only at its next ``INFO``, up to 10 s
    later, and drops what it took meanwhile): the pool sees the change
    (``FollowingPool``) and reports it once as an outage (``ConnectionError``)."""
    client = connect(cluster.settings())
    assert execute_commands(client, [("SET", "ha:before", "1")]) == ["OK"]
    old = cluster.primary_port()
    cluster.sentinel().execute_command("SENTINEL", "FAILOVER", cluster.master_name)
    new = cluster.wait_for_failover(old)
    failures = 0
    deadline = time.monotonic() + 20
    while True:
        try:
            replies = execute_commands(client, [("SET", "ha:after", "1"), ("GET", "ha:before")])
            break
        except REDIS_OUTAGE_ERRORS:  # the demoted primary's connection: an outage, retried
            failures += 1
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert replies == ["OK", "1"]
    assert cluster.node(new).get("ha:after") == "1"
    assert failures == 1
    assert client.connection_pool.get_master_address() == ("127.0.0.1", new)
    cluster.wait_in_sync()
    assert cluster.node(new).get("ha:after") == "1"


def test_readonly_of_a_demoted_primary_is_an_outage() -> None:
    """A plain client (no Sentinel) still connected to a node that became a replica gets
    READONLY for every write: an outage to wait out, not a bad command."""
    if not _has_redis():
        pytest.skip("redis-server is not installed")
    primary = start_redis()
    demoted: RedisServer | None = None
    try:
        demoted = start_redis(None, "--replicaof", "127.0.0.1", str(primary.port))
        with pytest.raises(redis.ReadOnlyError) as caught:
            demoted.client().set("k", "v")
        assert isinstance(caught.value, REDIS_OUTAGE_ERRORS)
    finally:
        primary.stop()
        if demoted is not None:
            demoted.stop()


# -- WAIT after each batch ------------------------------------------------------------------

def governor(client: redis.Redis, **env: str) -> GovernorService:
    full = {"GOVERNOR_CONSUMER": "wait-test", "GOVERNOR_BLOCK_MS": "1", **env}
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", full, registry)
    service = GovernorService(GovernorConfig.from_env(EnvReader(full)), client, plugins,
                              registry)
    service.ensure_group()
    return service


def add_plans(client: redis.Redis, count: int, prefix: str) -> None:
    for number in range(count):
        client.xadd(PLAN_STREAM, {"plan_id": f"{prefix}-{number}", "symbol": "BTCUSDT",
                                  "side": "BUY", "notional_usd": "100"})


def wait_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


@pytest.mark.redis
@pytest.mark.slow
def test_wait_after_each_batch_with_a_replica(cluster: SentinelCluster,
                                              caplog: pytest.LogCaptureFixture) -> None:
    client = connect(cluster.settings())
    cluster.wait_in_sync()
    client.delete(PLAN_STREAM, PERMIT_STREAM)
    service = governor(client, GOVERNOR_WAIT_REPLICAS="1", GOVERNOR_WAIT_TIMEOUT_MS="2000",
                       GOVERNOR_BATCH_SIZE="100")
    add_plans(client, 250, "wait")
    before = wait_calls(client)
    with caplog.at_level(logging.WARNING, logger="quantum.governor"):
        while service.step():
            pass
    assert client.xlen(PERMIT_STREAM) == 250
    assert wait_calls(client) - before == 3  # one WAIT per batch: 100 + 100 + 50
    assert not [r for r in caplog.records if "WAIT" in r.getMessage()]


@pytest.mark.redis
def test_wait_without_enough_replicas_is_logged_and_the_permits_stand(
        real_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    service = governor(real_redis, GOVERNOR_WAIT_REPLICAS="1", GOVERNOR_WAIT_TIMEOUT_MS="20")
    add_plans(real_redis, 30, "alone")
    with caplog.at_level(logging.WARNING, logger="quantum.governor"):
        while service.step():
            pass
    assert real_redis.xlen(PERMIT_STREAM) == 30
    assert wait_calls(real_redis) >= 1
    lines = [r.getMessage() for r in caplog.records if "WAIT" in r.getMessage()]
    assert lines == ["WAIT: 0 of 1 replica(s) acknowledged the batch's writes in time"]


@pytest.mark.redis
def test_no_wait_by_default(real_redis: redis.Redis) -> None:
    service = governor(real_redis)
    add_plans(real_redis, 30, "default")
    before = wait_calls(real_redis)
    while service.step():
        pass
    assert real_redis.xlen(PERMIT_STREAM) == 30
    assert wait_calls(real_redis) == before
