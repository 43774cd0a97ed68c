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


# -- QUANTUM_DISABLE_PLUGINS: entry point or distribution name, in pip's spellings --------

@pytest.mark.parametrize("spelling", ["p31_efficiency", "p31-efficiency", "P31.Efficiency",
                                      "quantum-governor-p31-efficiency",
                                      "quantum_governor_p31_efficiency"])
def test_a_plugin_is_blocked_by_any_spelling_of_its_names(spelling: str) -> None:
    result = cli("plugins", QUANTUM_DISABLE_PLUGINS=f" {spelling} ")
    assert "governor: blocked: named in QUANTUM_DISABLE_PLUGINS" in block(result.stdout,
                                                                          "p31_efficiency")


def test_a_plugin_blocked_by_its_distribution_name_is_never_imported() -> None:
    code = ("import sys\n"
            "from prometheus_client import CollectorRegistry\n"
            "from governor_core.plugins import build_plugin_host\n"
            "host = build_plugin_host('governor', {}, CollectorRegistry(),\n"
            "                         disabled={'quantum-governor-p31-efficiency'})\n"
            "print(host.active, any(m.startswith('p31_efficiency') for m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=30)
    assert result.stdout.strip() == "['p29_shadow'] False", result.stdout + result.stderr


def test_an_unknown_disabled_name_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="quantum.plugins"):
        host = build_plugin_host("governor", {}, CollectorRegistry(),
                                 disabled={"p31_effciency"})
    assert "p31_efficiency" in host.active
    assert "QUANTUM_DISABLE_PLUGINS names no installed plugin: p31_effciency" in caplog.text


# -- one line, not a traceback: Redis errors and a closed pipe ----------------------------

def test_explain_against_a_dead_port_is_one_line() -> None:
    result = cli("explain", "x", REDIS_URL="redis://:s3cr3t-pw@127.0.0.1:1/0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("quantum-governor: Redis error at redis://:***@127.0.0.1:1/0: ")
    assert "s3cr3t-pw" not in result.stderr


def closed_pipe_run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The command with its stdout a pipe nobody reads any more (``… | head`` once head
    has exited)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_"))}
    try:
        return subprocess.run([str(BIN / "quantum-governor"), *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=30,
                              env={**full_env, **env})
    finally:
        os.close(write_end)


def test_plugins_into_a_closed_pipe_exits_quietly() -> None:
    result = closed_pipe_run("plugins")
    assert result.returncode in (0, 141)
    assert result.stderr == ""


@pytest.mark.redis
def test_explain_into_a_closed_pipe_exits_quietly(issued: str) -> None:
    result = closed_pipe_run("explain", "ex-1", REDIS_URL=issued)
    assert result.returncode in (0, 141)
    assert result.stderr == ""
