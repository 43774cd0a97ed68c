"""``quantum-governor proof``: each proof passes on its own redis-server; on a given database
it refuses one holding keys, and with ``--force`` it leaves every key it did not write as it
was (the real ``governor`` group included) and no key of its own behind."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from governor_core import proofs
from governor_core.keys import (
    KILL_KEY,
    LEDGER_STREAM,
    MODE_KEY,
    PLAN_STREAM,
    PORTFOLIO_KEY,
    SNAPSHOT_PREFIX,
)
from governor_core.proofs import trust
from governor_core.proofs.footprint import Footprint
from governor_core.proofs.support import ProofRun
from governor_core.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WRAPPERS = {"step1": "proof_p31_step1_allocation_shadow.sh",
            "step2": "proof_p31_step2_governor_downsize.sh",
            "p29": "proof_p29_allocation.sh",
            "trust": "proof_trust.sh"}
CASES = {"step1": 7, "step2": 9, "p29": 9, "trust": 8}
#: The proofs that run beside foreign keys with --force (trust never does).
SHAREABLE = ("step1", "step2", "p29")
FOREIGN_TARGET = "quantum:allocation:target:BTCUSDT"


def proof(*argv: str) -> tuple[int, str]:
    """Run ``quantum-governor proof ARGV`` in this process: (exit status, stdout)."""
    parser = argparse.ArgumentParser(prog="quantum-governor")
    proofs.add_parser(parser.add_subparsers(dest="command", required=True))
    out = io.StringIO()
    code = proofs.run(parser.parse_args(["proof", *argv]), out=out)
    return code, out.getvalue()


def assert_passed(code: int, output: str, cases: int) -> None:
    lines = output.strip().splitlines()
    assert code == 0, output
    assert lines[-1] == "SUMMARY: PASS"
    assert sum(line.startswith("✅") for line in lines) == cases, output
    assert not any(line.startswith("❌") for line in lines)


def dump(server: RedisServer) -> dict[bytes, tuple[bytes, bytes | None, int]]:
    """Every key: its type, its serialized value and its absolute expiry (ms; -1: none)."""
    client = redis.Redis(port=server.port)
    try:
        return {key: (client.type(key), client.dump(key), client.execute_command(
            "PEXPIRETIME", key)) for key in client.scan_iter(count=1000)}
    finally:
        client.close()


def governor_group(client: redis.Redis) -> tuple[dict[str, object], list[tuple[object, ...]]]:
    """The real ``governor`` group's state and its pending entries (what time changes aside:
    the lag, the time since delivery)."""
    group = next(g for g in client.xinfo_groups(PLAN_STREAM) if g["name"] == "governor")
    group.pop("lag", None)
    pending = client.xpending_range(PLAN_STREAM, "governor", "-", "+", 100)
    return group, [(p["message_id"], p["consumer"], p["times_delivered"]) for p in pending]


@pytest.fixture
def foreign(real_redis: redis.Redis) -> redis.Redis:
    """A database in use: another application's key, a live BTCUSDT target with a TTL, and a
    plan stream whose real ``governor`` group has a consumer with one plan pending."""
    real_redis.set("prod:orders:important", "order-42", ex=86_400)
    real_redis.hset(FOREIGN_TARGET, mapping={"target_usd": "1234.5", "mode": "enforce"})
    real_redis.expire(FOREIGN_TARGET, 289)
    real_redis.xadd(PLAN_STREAM, {"plan_id": "real-1", "symbol": "BTCUSDT", "side": "BUY",
                                  "notional_usd": "500", "ts": "1700000000"})
    real_redis.xgroup_create(PLAN_STREAM, "governor", id="0")
    real_redis.xreadgroup("governor", "governor-host-1", {PLAN_STREAM: ">"})
    real_redis.xadd(PLAN_STREAM, {"plan_id": "real-2", "symbol": "ETHUSDT", "side": "SELL",
                                  "notional_usd": "700", "ts": "1700000001"})
    return real_redis


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("name", ["step1", "p29", "trust"])
def test_proof_passes_on_its_own_server(name: str) -> None:
    assert_passed(*proof(name), CASES[name])


@pytest.mark.redis
@pytest.mark.slow
def test_wrapper_script_runs_the_step2_proof_on_its_own_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(VIRTUAL_ENV=str(BIN.parent), PATH="/usr/local/bin:/usr/bin:/bin",
               TMPDIR=str(tmp_path))
    result = subprocess.run(["bash", str(ROOT / "scripts" / WRAPPERS["step2"])], env=env,
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert_passed(result.returncode, result.stdout + result.stderr, CASES["step2"])
    assert list(tmp_path.iterdir()) == []  # its work directory and redis-server's are gone


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_wrapper_without_the_command_says_so(tmp_path: Path, name: str) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / WRAPPERS[name], tmp_path / "scripts")
    env = {"PATH": "/usr/bin:/bin", "VIRTUAL_ENV": str(tmp_path / "no-venv")}
    result = subprocess.run(["bash", str(tmp_path / "scripts" / WRAPPERS[name])], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert "quantum-governor not found" in result.stderr


def test_without_redis_server_it_refuses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    code, output = proof("step2")
    assert code == 2
    assert output == ""
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1
    assert "no redis-server" in stderr and "--redis-url" in stderr


@pytest.mark.redis
@pytest.mark.parametrize("name", [*proofs.PROOFS, "all"])
def test_a_database_holding_keys_is_refused_untouched(
        redis_server: RedisServer, foreign: redis.Redis, name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    before = dump(redis_server)
    code, output = proof(name, "--redis-url", redis_server.url)
    assert code == 2
    assert output == ""
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1
    assert redis_server.url in stderr and "--force" in stderr
    assert dump(redis_server) == before


@pytest.mark.redis
def test_force_still_refuses_inputs_it_cannot_share(
        redis_server: RedisServer, real_redis: redis.Redis,
        capsys: pytest.CaptureFixture[str]) -> None:
    real_redis.hset(PORTFOLIO_KEY, mapping={"equity_usd": "5000000", "drawdown": "0.01"})
    before = dump(redis_server)
    code, output = proof("all", "--redis-url", redis_server.url, "--force")
    assert (code, output) == (2, "")
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1 and PORTFOLIO_KEY in stderr
    assert dump(redis_server) == before


@pytest.mark.redis
@pytest.mark.slow
def test_force_runs_beside_foreign_keys_and_deletes_only_its_own(
        redis_server: RedisServer, foreign: redis.Redis) -> None:
    before = dump(redis_server)
    group_before = governor_group(foreign)
    plans_before = foreign.xrange(PLAN_STREAM)

    for name in SHAREABLE:  # `all` would be refused: the trust proof needs an empty database
        assert_passed(*proof(name, "--redis-url", redis_server.url, "--force"), CASES[name])

    after = dump(redis_server)
    assert after.keys() == before.keys()  # no key of its own left, none of theirs deleted
    plan_stream = PLAN_STREAM.encode()
    assert {k: v for k, v in after.items() if k != plan_stream} == \
        {k: v for k, v in before.items() if k != plan_stream}
    # its plans deleted, theirs kept; its services' config snapshots deleted too
    assert foreign.xrange(PLAN_STREAM) == plans_before
    assert governor_group(foreign) == group_before
    assert [g["name"] for g in foreign.xinfo_groups(PLAN_STREAM)] == ["governor"]


@pytest.mark.redis
def test_footprint_deletes_its_keys_and_its_symbols_entries_only(
        real_redis: redis.Redis) -> None:
    real_redis.xadd("shared", {"symbol": "BTCUSDT"})
    footprint = Footprint({"PROOFX"})
    footprint.own("proof:key")
    footprint.share_stream(real_redis, "shared", "fresh")
    footprint.create_group(real_redis, "shared", "proof-group")
    real_redis.set("proof:key", "1")
    mine = real_redis.xadd("shared", {"symbol": "PROOFX"})
    theirs = real_redis.xadd("shared", {"symbol": "ETHUSDT"})
    real_redis.xadd("fresh", {"symbol": "PROOFX"})

    assert footprint.clean(real_redis) == 3
    assert sorted(real_redis.keys()) == ["shared"]
    ids = [entry_id for entry_id, _ in real_redis.xrange("shared")]
    assert mine not in ids and theirs in ids and len(ids) == 2
    assert real_redis.xinfo_groups("shared") == []


@pytest.mark.redis
@pytest.mark.slow
def test_trust_proof_on_an_empty_given_database_leaves_it_empty(
        redis_server: RedisServer, real_redis: redis.Redis) -> None:
    assert_passed(*proof("trust", "--redis-url", redis_server.url), CASES["trust"])
    assert dump(redis_server) == {}  # switches, ledger, snapshots, streams: all its own, gone


@pytest.mark.redis
@pytest.mark.parametrize("name", ["trust", "all"])
def test_trust_never_runs_beside_foreign_keys_even_forced(
        redis_server: RedisServer, foreign: redis.Redis, name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The kill switch, the mode key and the ledger are every service's: a proof that turns
    the switch on must not run on a database in use, --force or not."""
    before = dump(redis_server)
    code, output = proof(name, "--redis-url", redis_server.url, "--force")
    assert (code, output) == (2, "")
    stderr = capsys.readouterr().err
    assert len(stderr.splitlines()) == 1
    assert "trust proof turns the kill switch on" in stderr and "empty database" in stderr
    assert dump(redis_server) == before
    assert not foreign.exists(KILL_KEY, MODE_KEY, LEDGER_STREAM)


@pytest.mark.redis
def test_trust_proof_checks_the_switches_again_before_writing(
        real_redis: redis.Redis, tmp_path: Path) -> None:
    """A switch that appeared after the database was claimed: the proof stops, untouched."""
    real_redis.set(KILL_KEY, "0")
    before = {key: real_redis.dump(key) for key in real_redis.scan_iter()}
    run = ProofRun(client=real_redis, redis_url="redis://unused", work=tmp_path, run_id="1",
                   out=io.StringIO(), footprint=Footprint())
    trust.prove(run)
    run.footprint.clean(real_redis)
    assert run.failed == 1 and run.services == []
    assert f"❌ setup: {KILL_KEY} exists" in run.out.getvalue()
    assert {key: real_redis.dump(key) for key in real_redis.scan_iter()} == before


@pytest.mark.redis
def test_footprint_deletes_only_the_new_snapshots_its_entries_name(
        real_redis: redis.Redis) -> None:
    real_redis.hset(SNAPSHOT_PREFIX + "shared000000", "service", "governor")
    real_redis.xadd("shared", {"symbol": "BTCUSDT", "config_id": "theirs000000"})
    footprint = Footprint({"PROOFX"})
    footprint.share_stream(real_redis, "shared")
    footprint.own("proof:permit", "proof:stream")
    footprint.watch_snapshots(real_redis)
    for config_id in ("mine00000001", "mine00000002", "mine00000003", "theirs000000"):
        real_redis.hset(SNAPSHOT_PREFIX + config_id, "service", "x")  # written at start
    real_redis.xadd("shared", {"symbol": "PROOFX", "config_id": "mine00000001"})
    real_redis.xadd("shared", {"symbol": "PROOFX", "config_id": "shared000000"})
    real_redis.hset("proof:permit", mapping={"config_id": "mine00000002"})
    real_redis.xadd("proof:stream", {"config_id": "mine00000003"})
    real_redis.xadd("shared", {"symbol": "ETHUSDT", "config_id": "theirs000000"})

    footprint.clean(real_redis)
    assert sorted(real_redis.scan_iter(match=SNAPSHOT_PREFIX + "*")) == [
        SNAPSHOT_PREFIX + "shared000000", SNAPSHOT_PREFIX + "theirs000000"]
