"""The real ``quantum-allocation run`` process: clean stop on SIGTERM, bad env → exit 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
NOW = time.time()


def service_env(url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": url, "P29_INTERVAL_SEC": "0.2",
            "P29_METRICS_PORT": "0", "LOOP_INTERVAL_SEC": "0", **extra}


@pytest.mark.redis
def test_runs_and_stops_cleanly_on_sigterm(real_redis, redis_server):
    real_redis.hset("quantum:state:portfolio",
                    mapping={"equity_usd": 100_000, "drawdown": 0.0, "timestamp": time.time()})
    real_redis.hset("quantum:portfolio:budget:BTCUSDT",
                    mapping={"budget_usd": 1000, "timestamp": time.time()})
    process = subprocess.Popen([str(BIN / "quantum-allocation"), "run"],
                               env=service_env(redis_server.url), stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.monotonic() + 10
        while real_redis.xlen("quantum:stream:allocation.decision") < 2:
            assert time.monotonic() < deadline, "no decisions written"
            time.sleep(0.05)
        assert real_redis.xlen("quantum:stream:allocation.target.proposed") >= 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "allocation stopped" in process.stderr.read()


@pytest.mark.parametrize(("variable", "value"), [
    ("P29_MODE", "yolo"), ("P29_INTERVAL_SEC", "soon"), ("MAX_SYMBOL_PCT", "2"),
    ("P29_CLUSTER_MAP_FILE", "/nonexistent/map.json")])
def test_bad_env_exits_2_with_one_line_naming_the_variable(variable, value):
    result = subprocess.run([str(BIN / "quantum-allocation"), "run"],
                            env=service_env("redis://127.0.0.1:1/0", **{variable: value}),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in result.stderr


def test_check_config_names_a_bad_value_and_fails():
    result = subprocess.run([str(BIN / "quantum-allocation"), "check-config", "--offline"],
                            env=service_env("redis://127.0.0.1:1/0", P29_MODE="yolo"),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "ERROR  allocation core configuration: P29_MODE='yolo' is invalid" in result.stdout
    assert "Traceback" not in result.stderr
