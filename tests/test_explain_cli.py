"""``quantum-governor plugins`` and ``quantum-governor explain PLAN_ID``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader, GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.plugins import build_plugin_host

BIN = Path(sys.executable).parent
NOW = 1_700_000_000.0


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_"))}
    full_env.update(env)
    return subprocess.run([str(BIN / "quantum-governor"), *args], env=full_env,
                          capture_output=True, text=True, timeout=30)


def block(output: str, name: str) -> str:
    """The lines of ``quantum-governor plugins`` about one plugin."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(name))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")),
               len(lines))
    return "\n".join(lines[start:end])


def test_plugins_lists_p31() -> None:
    result = cli("plugins")
    assert result.returncode == 0
    text = block(result.stdout, "p31_efficiency")
    assert "quantum-governor-p31-efficiency 0.1.0" in text
    for hook in ("on_configure", "permit_fields", "on_permit_batch", "on_issue_permit"):
        assert hook in text
    assert "governor: active" in text


def test_plugins_shows_blocked_and_why() -> None:
    result = cli("plugins", QUANTUM_DISABLE_PLUGINS="p31_efficiency")
    assert result.returncode == 0
    text = block(result.stdout, "p31_efficiency")
    assert "quantum-governor-p31-efficiency 0.1.0" in text
    assert "governor: blocked: named in QUANTUM_DISABLE_PLUGINS" in text


def test_plugins_shows_disabled_and_why() -> None:
    result = cli("plugins", P31_MIN_CONF="abc")
    text = block(result.stdout, "p31_efficiency")
    assert "governor: disabled" in text
    assert "P31_MIN_CONF" in text


@pytest.fixture
def issued(real_redis, redis_server) -> str:
    """A DOWNSIZE-hinted clamped permit, a no-cap permit and a dead letter, written by the
    real loop; returns the Redis URL."""
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW)})
    real_redis.hset("quantum:allocation:target:BTCUSDT", "target_usd", "500")
    for fields in ({"plan_id": "ex-1", "symbol": "BTCUSDT", "side": "BUY",
                    "notional_usd": "750"},
                   {"plan_id": "ex-2", "symbol": "ETHUSDT", "side": "SELL",
                    "notional_usd": "10"},
                   {"plan_id": "ex-bad", "symbol": "ETHUSDT", "side": "SELL",
                    "notional_usd": "nan"}):
        real_redis.xadd("quantum:stream:apply.plan", fields)
    env = {"GOVERNOR_CONSUMER": "ex", "GOVERNOR_BLOCK_MS": "1"}
    registry = CollectorRegistry()
    service = GovernorService(GovernorConfig.from_env(EnvReader(env)), real_redis,
                              build_plugin_host("governor", env, registry), registry,
                              clock=lambda: NOW)
    service.ensure_group()
    while service.step() or service.step():
        pass
    # the permits were issued at NOW (the past): give them a live TTL for the test
    for plan_id in ("ex-1", "ex-2"):
        real_redis.expire(f"quantum:permit:{plan_id}", 60)
    return redis_server.url


@pytest.mark.redis
def test_explain_shows_decision_cap_and_plugin_fields(issued: str) -> None:
    result = cli("explain", "ex-1", REDIS_URL=issued)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "decision:  CLAMP  reason=above_cap" in out
    assert "cap: 500 USD from allocation (quantum:allocation:target:BTCUSDT)" in out
    assert "allowed_notional_usd=500" in out
    assert "plugin p31_efficiency:" in out
    assert "eff_reason = ok" in out
    assert "eff_action = DOWNSIZE" in out
    assert "eff_factor = 0.4444" in out
    assert "extra_cooldown_sec = 96" in out


@pytest.mark.redis
def test_explain_no_cap_and_missing_eff(issued: str) -> None:
    result = cli("explain", "ex-2", REDIS_URL=issued)
    assert result.returncode == 0
    assert "decision:  ALLOW  reason=no_cap" in result.stdout
    assert "cap: none found" in result.stdout
    assert "eff_reason = missing_eff" in result.stdout


@pytest.mark.redis
def test_explain_after_the_permit_key_expired(issued: str, real_redis) -> None:
    real_redis.delete("quantum:permit:ex-1")
    result = cli("explain", "ex-1", REDIS_URL=issued)
    assert result.returncode == 0
    assert "the permit key has expired" in result.stdout
    assert "decision:  CLAMP" in result.stdout


@pytest.mark.redis
def test_explain_dead_letter_as_rejected(issued: str) -> None:
    result = cli("explain", "ex-bad", REDIS_URL=issued)
    assert result.returncode == 0
    assert "Plan ex-bad was rejected: no permit was issued." in result.stdout
    assert "code bad_notional" in result.stdout
    assert "notional_usd = nan" in result.stdout


@pytest.mark.redis
def test_explain_unknown_plan(issued: str) -> None:
    result = cli("explain", "no-such-plan", REDIS_URL=issued)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no permit or dead letter found for plan 'no-such-plan'" in lines[0]
    assert "Traceback" not in result.stderr
