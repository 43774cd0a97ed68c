"""Entry-point loading for real: install the host and p29_shadow into a fresh virtualenv, see
shadow proposals, uninstall the plugin, see none while the allocation decisions stay the same."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from venv_helper import clean_env, run, venv_with_plugin

pytestmark = [pytest.mark.slow, pytest.mark.redis]

DECISIONS = "quantum:stream:allocation.decision"
PROPOSED = "quantum:stream:allocation.target.proposed"
#: The cycle's time, and the configuration it ran under (SPEC 8: it lists the plugins).
VARYING = {"timestamp", "config_id"}


def seed(client: redis.Redis) -> None:
    client.flushall()
    now = time.time()
    client.hset("quantum:state:portfolio",
                mapping={"equity_usd": 100_000, "drawdown": 0.07, "timestamp": now})
    client.hset("quantum:portfolio:budget:BTCUSDT",
                mapping={"budget_usd": 50_000, "timestamp": now})
    client.hset("quantum:capital:efficiency:BTCUSDT",
                mapping={"efficiency_score": 0.9, "confidence": 0.9, "ts": now})


def one_cycle(venv: Path, url: str, client: redis.Redis, log: Path) -> dict[str, str]:
    """Run the venv's allocation service until its first decision, stop it (exit 0)."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(venv / "bin/quantum-allocation"), "run"],
            env=clean_env(REDIS_URL=url, P29_METRICS_PORT="0", P29_INTERVAL_SEC="0.2"),
            stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not client.xlen(DECISIONS):
                assert process.poll() is None, log.read_text()
                time.sleep(0.05)
            assert client.xlen(DECISIONS), log.read_text()
            time.sleep(0.1)  # the plugin runs right after the host's write
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return client.xrange(DECISIONS, count=1)[0][1]


def test_install_and_uninstall_p29_shadow(tmp_path: Path, real_redis: redis.Redis,
                                          redis_server) -> None:
    venv = venv_with_plugin(tmp_path, "p29_shadow")
    assert "p29_shadow" in run(venv / "bin/quantum-governor", "plugins").stdout

    seed(real_redis)
    with_plugin = one_cycle(venv, redis_server.url, real_redis, tmp_path / "run1.log")
    proposal = real_redis.hgetall("quantum:allocation:target:proposed:BTCUSDT")
    assert real_redis.xlen(PROPOSED) >= 1
    assert (proposal["reason"], proposal["multiplier"]) == ("ok", "1.4000")

    run(venv / "bin/python", "-m", "pip", "uninstall", "-y", "-q", "quantum-governor-p29-shadow")
    assert "p29_shadow" not in run(venv / "bin/quantum-governor", "plugins").stdout

    seed(real_redis)
    without = one_cycle(venv, redis_server.url, real_redis, tmp_path / "run2.log")
    assert real_redis.xlen(PROPOSED) == 0
    assert real_redis.keys("quantum:allocation:target:proposed:*") == []
    assert ({k: v for k, v in with_plugin.items() if k not in VARYING}
            == {k: v for k, v in without.items() if k not in VARYING})
