"""Entry-point loading for real: install the host and p31_efficiency into a fresh virtualenv,
see the permits change, uninstall the plugin, see them change back."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from venv_helper import clean_env, run, venv_with_plugin

pytestmark = [pytest.mark.slow, pytest.mark.redis]

EFF_FIELDS = {"eff_score", "eff_confidence", "eff_stale", "eff_factor", "eff_action",
              "eff_reason", "downsize_factor", "extra_cooldown_sec"}
VARYING = {"plan_id", "issued_ts", "expires_ts", "config_id"}


def permit_from_a_run(venv: Path, url: str, client: redis.Redis, plan_id: str,
                      log: Path) -> dict[str, str]:
    """Start the venv's governor, push one plan, wait for its permit, stop it (exit 0)."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(venv / "bin/quantum-governor"), "run"],
            env=clean_env(REDIS_URL=url, GOVERNOR_METRICS_PORT="0", GOVERNOR_BLOCK_MS="50",
                          GOVERNOR_CONSUMER=plan_id),
            stdout=out, stderr=subprocess.STDOUT)
        try:
            client.xadd("quantum:stream:apply.plan",
                        {"plan_id": plan_id, "symbol": "BTCUSDT", "side": "BUY",
                         "notional_usd": "2500"})
            deadline = time.monotonic() + 20
            permit: dict[str, str] = {}
            while time.monotonic() < deadline and not permit:
                assert process.poll() is None, log.read_text()
                permit = client.hgetall(f"quantum:permit:{plan_id}")
                time.sleep(0.05)
            assert permit, log.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return permit


def test_install_and_uninstall_p31(tmp_path: Path, real_redis: redis.Redis,
                                   redis_server) -> None:
    venv = venv_with_plugin(tmp_path, "p31_efficiency")

    listed = run(venv / "bin/quantum-governor", "plugins").stdout
    assert "p31_efficiency  (quantum-governor-p31-efficiency 0.1.0)" in listed

    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.2", "confidence": "0.9",
                             "ts": str(time.time())})
    real_redis.hset("quantum:portfolio:budget:BTCUSDT", "budget_usd", "1000")
    with_plugin = permit_from_a_run(venv, redis_server.url, real_redis, "inst-1",
                                    tmp_path / "run1.log")
    assert set(with_plugin) >= EFF_FIELDS
    assert (with_plugin["eff_action"], with_plugin["eff_factor"]) == ("DOWNSIZE", "0.4444")

    run(venv / "bin/python", "-m", "pip", "uninstall", "-y", "-q",
        "quantum-governor-p31-efficiency")
    assert "p31_efficiency" not in run(venv / "bin/quantum-governor", "plugins").stdout

    without = permit_from_a_run(venv, redis_server.url, real_redis, "inst-2",
                                tmp_path / "run2.log")
    assert not EFF_FIELDS & set(without)
    # config_id fingerprints the active plugins too: it must change with the uninstall
    assert with_plugin["config_id"] != without["config_id"]
    core = {k: v for k, v in with_plugin.items() if k not in EFF_FIELDS | VARYING}
    assert core == {k: v for k, v in without.items() if k not in VARYING}
    assert core["decision"] == "CLAMP" and core["allowed_notional_usd"] == "1000"
