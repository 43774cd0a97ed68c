"""The real ``quantum-governor run`` process: signals, metrics, Redis outages, passwords.
(The Step 2 proof is tested with the others in ``test_proofs.py``.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from governor_core.testing import RedisServer, free_port, start_redis, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BIN = Path(sys.executable).parent
PLANS = "quantum:stream:apply.plan"


class GovernorProcess:
    def __init__(self, tmp_path: Path, redis_url: str, **env: str) -> None:
        self.metrics_port = free_port()
        self.log = tmp_path / f"governor-{self.metrics_port}.log"
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_",
                                         "LOG_"))}
        full_env.update({"REDIS_URL": redis_url, "GOVERNOR_METRICS_PORT":
                         str(self.metrics_port), "GOVERNOR_BLOCK_MS": "50",
                         "METRICS_ADDR": "127.0.0.1", **env})
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen([str(BIN / "quantum-governor"), "run"], env=full_env,
                                        stdout=self._log_file, stderr=subprocess.STDOUT)
        wait_for(self.metrics, what="the metrics endpoint")

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
            return response.read().decode()

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        self._log_file.close()
        return self.process.returncode


@pytest.fixture
def governors(tmp_path: Path) -> Iterator[Callable[..., GovernorProcess]]:
    started: list[GovernorProcess] = []

    def start(redis_url: str, **env: str) -> GovernorProcess:
        process = GovernorProcess(tmp_path, redis_url, **env)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.process.kill()
            process.process.wait()


def push_plan(client: redis.Redis, plan_id: str, symbol: str = "BTCUSDT") -> None:
    client.xadd(PLANS, {"plan_id": plan_id, "symbol": symbol, "side": "BUY",
                        "notional_usd": "100"})


def permit(client: redis.Redis, plan_id: str, timeout: float = 10.0) -> dict[str, str]:
    return wait_for(lambda: client.hgetall(f"quantum:permit:{plan_id}"), timeout,
                    f"permit {plan_id}")  # type: ignore[return-value]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stops_cleanly_on_signal(real_redis, redis_server, governors, sig: int) -> None:
    governor = governors(redis_server.url)
    push_plan(real_redis, "sig-1")
    assert permit(real_redis, "sig-1")["decision"] == "ALLOW"
    started = time.monotonic()
    assert governor.stop(sig) == 0
    assert time.monotonic() - started < 5
    output = governor.output()
    assert "governor stopped" in output
    assert "Traceback" not in output


def test_metrics_endpoint(real_redis, redis_server, governors) -> None:
    now = time.time()
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.2", "confidence": "0.9", "ts": str(now)})
    governor = governors(redis_server.url)
    push_plan(real_redis, "met-1")
    push_plan(real_redis, "met-2", symbol="ETHUSDT")
    permit(real_redis, "met-1")
    permit(real_redis, "met-2")
    body = governor.metrics()
    assert 'governor_permits_issued_total{decision="ALLOW"} 2.0' in body
    assert 'p32_eff_apply_total{action="DOWNSIZE",reason="ok"} 1.0' in body
    assert 'p32_eff_apply_total{action="NONE",reason="missing_eff"} 1.0' in body
    assert 'p32_eff_factor{symbol="BTCUSDT"} 0.444' in body
    assert 'p32_eff_factor{symbol="ETHUSDT"} 1.0' in body
    assert "governor_plugin_errors_total" in body
    assert governor.stop() == 0


def test_metrics_without_p31_have_no_p32_series(real_redis, redis_server, governors) -> None:
    governor = governors(redis_server.url, QUANTUM_DISABLE_PLUGINS="p31_efficiency")
    push_plan(real_redis, "nop31-1")
    fields = permit(real_redis, "nop31-1")
    assert not any(name.startswith("eff_") for name in fields)
    assert "p32_eff" not in governor.metrics()
    assert governor.stop() == 0


def test_rides_out_a_redis_outage(tmp_path: Path, governors) -> None:
    server = start_redis()
    try:
        governor = governors(server.url)
        client = server.client()
        push_plan(client, "out-1")
        assert permit(client, "out-1")
        port = server.port
        server.stop()
        wait_for(lambda: "redis unavailable" in governor.output(), 10, "a retry log line")
        time.sleep(0.3)
        assert governor.process.poll() is None
        server = start_redis(port)
        client = server.client()  # a new, empty server: the group must be recreated
        push_plan(client, "out-2")
        assert permit(client, "out-2", timeout=15)["decision"] == "ALLOW"
        assert governor.stop() == 0
        output = governor.output()
        assert output.count("redis unavailable") >= 2  # retried, with backoff
        assert "Traceback" not in output
    finally:
        server.stop()


@pytest.fixture
def password_redis() -> Iterator[tuple[RedisServer, str]]:
    server = start_redis()
    password = "pw-Sekr1t-9f3"
    server.client().config_set("requirepass", password)
    yield server, password
    server.stop()


def test_password_url_works_and_is_never_logged(password_redis, governors) -> None:
    server, password = password_redis
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    governor = governors(url, LOG_LEVEL="debug")
    push_plan(client, "pw-1")
    assert permit(client, "pw-1")["decision"] == "ALLOW"
    assert governor.stop() == 0
    output = governor.output()
    assert "governor started" in output
    assert password not in output
    assert "***" in output  # the redacted URL is logged instead


def test_wrong_password_stops_the_governor_at_start_and_is_never_logged(
        password_redis) -> None:
    """A refused password is a configuration error (exit 2, one line), not an outage that
    systemd would show as a healthy unit retrying forever."""
    server, _ = password_redis
    wrong = "not-the-Pa55word"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_", "LOG_"))}
    env.update({"REDIS_URL": f"redis://:{wrong}@127.0.0.1:{server.port}/0",
                "GOVERNOR_METRICS_PORT": "0"})
    done = subprocess.run([str(BIN / "quantum-governor"), "run"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert wrong not in done.stdout + done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr
