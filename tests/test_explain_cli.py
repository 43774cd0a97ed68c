"""``quantum-governor plugins`` and ``quantum-governor explain PLAN_ID``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader
from governor_core.explain import format_permit
from governor_core.governor.config import GovernorConfig
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
    service.prepare()  # the group, the scripts and the configuration snapshot
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
    real_redis.pexpire("quantum:permit:ex-1", 1)
    while real_redis.exists("quantum:permit:ex-1"):
        time.sleep(0.01)
    result = cli("explain", "ex-1", REDIS_URL=issued)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "the permit key has expired; this is the durable record" in out
    assert "decision:  CLAMP  reason=above_cap" in out
    assert ("binding constraint: the allocation cap of 500 USD "
            "(quantum:allocation:target:BTCUSDT): notional 750 clamped to 500") in out
    # The plugin's fields and their reason, from the stream entry.
    assert "plugin p31_efficiency:" in out
    assert "reason: eff_reason=ok: a usable efficiency score was read" in out
    for line in ("eff_action = DOWNSIZE", "eff_factor = 0.4444", "extra_cooldown_sec = 96",
                 "eff_score = 0.2000"):
        assert f"    {line}" in out
    # The configuration in force, from the snapshot its config_id names.
    config_id = real_redis.xrange("quantum:stream:permit.issued")[0][1]["config_id"]
    assert (f"configuration in force: config_id {config_id} "
            f"(quantum:config:snapshot:{config_id}; service governor") in out
    assert "    P31_DOWNSIZE_THRESHOLD = 0.45" in out
    assert "    GOVERNOR_PERMIT_TTL_SEC = 60" in out
    assert "REDIS_URL" not in out


@pytest.mark.redis
def test_explain_says_when_the_snapshot_is_missing(issued: str, real_redis) -> None:
    real_redis.delete("quantum:permit:ex-1")
    config_id = real_redis.xrange("quantum:stream:permit.issued")[0][1]["config_id"]
    real_redis.delete(f"quantum:config:snapshot:{config_id}")
    result = cli("explain", "ex-1", REDIS_URL=issued)
    assert result.returncode == 0, result.stderr
    assert (f"configuration: config_id {config_id}, but its snapshot "
            f"quantum:config:snapshot:{config_id} is MISSING") in result.stdout
    assert "eff_action = DOWNSIZE" in result.stdout


def permit(reason: str, decision: str, **fields: str) -> dict[str, str]:
    return {"plan_id": "p", "symbol": "BTCUSDT", "side": "BUY", "notional_usd": "750",
            "decision": decision, "reason": reason, "allowed_notional_usd": "0",
            "cap_usd": "500", "cap_source": "budget", "cooldown_sec": "0",
            "issued_ts": "1", "expires_ts": "61", **fields}


def test_a_plan_age_gate_turned_off_says_so() -> None:
    record = permit("within_cap", "ALLOW", notional_usd="10", allowed_notional_usd="10")
    text = format_permit(record, "test", {}, {"GOVERNOR_MAX_PLAN_AGE_SEC": "0"})
    assert "    2. plan age: off (GOVERNOR_MAX_PLAN_AGE_SEC=0): not checked" in text


@pytest.mark.parametrize(("record", "gates", "binding"), [
    (permit("kill_switch", "DENY"),
     ["1. kill switch (quantum:governor:kill): ON: plan denied",
      "2. plan age: not checked (the kill switch decided)",
      "3. cap: 500 USD from budget (quantum:portfolio:budget:BTCUSDT): not applied"],
     "the kill switch (quantum:governor:kill): nothing allowed"),
    (permit("stale_plan", "DENY"),
     ["1. kill switch (quantum:governor:kill): off: passed",
      "2. plan age: too old (GOVERNOR_MAX_PLAN_AGE_SEC=30): plan denied (stale_plan)",
      "3. cap: 500 USD from budget (quantum:portfolio:budget:BTCUSDT): not applied"],
     "the plan's age (stale_plan): nothing allowed"),
    (permit("above_cap", "CLAMP", allowed_notional_usd="500"),
     ["2. plan age: passed (GOVERNOR_MAX_PLAN_AGE_SEC=30)",
      "3. cap: 500 USD from budget (quantum:portfolio:budget:BTCUSDT): notional above the "
      "cap: clamped"],
     "the budget cap of 500 USD (quantum:portfolio:budget:BTCUSDT): notional 750 clamped "
     "to 500"),
    (permit("within_cap", "ALLOW", notional_usd="10", allowed_notional_usd="10"),
     ["3. cap: 500 USD from budget (quantum:portfolio:budget:BTCUSDT): notional within the "
      "cap: passed"],
     "none (notional 10 is within the budget cap of 500 USD)"),
    (permit("no_cap", "ALLOW", cap_usd="", cap_source="none"),
     ["3. cap: none found (no allocation target, no budget): fail-open, no clamp"],
     "none (no cap known: fail-open)"),
])
def test_every_gate_verdict_and_the_binding_constraint(record, gates, binding) -> None:
    text = format_permit(record, "test", {}, {"GOVERNOR_MAX_PLAN_AGE_SEC": "30"})
    for line in gates:
        assert f"    {line}" in text
    assert f"  binding constraint: {binding}\n" in text
    assert "configuration: not recorded (no config_id" in text


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
