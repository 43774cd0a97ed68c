"""``check-config`` of both programs: it connects (reachability, authentication, the
server, the ACL for every command the services send), warns about settings that would be
ignored, and reads ``--env-file`` as systemd does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from governor_core.testing import RedisServer, start_redis

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "pa$$w0rd;x"  # what a shell's `set -a; . file` would mangle


def cli(program: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_"))}
    full_env.update(env)
    return subprocess.run([str(BIN / program), *args], env=full_env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[RedisServer]:
    """A server with a password for the default user and two restricted users: ``noclaim``
    (no XAUTOCLAIM, may use ACL DRYRUN) and ``noacl`` (no XAUTOCLAIM, no ACL commands)."""
    server = start_redis()
    client = server.client()
    for user, extra in (("noclaim", []), ("noacl", ["-acl"])):
        client.acl_setuser(user, enabled=True, passwords=[f"+{PASSWORD}"], keys=["quantum:*"],
                           commands=["+@all", "-xautoclaim", *extra])
    client.config_set("requirepass", PASSWORD)
    yield server
    server.stop()


def url(server: RedisServer, user: str = "", password: str = PASSWORD) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.mark.redis
def test_a_dead_port_is_an_error() -> None:
    result = cli("quantum-governor", "check-config", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 1, result.stdout
    assert "ERROR  redis at redis://127.0.0.1:1/0: unreachable" in result.stdout
    assert "configuration is valid" not in result.stdout


def test_offline_does_not_connect() -> None:
    result = cli("quantum-governor", "check-config", "--offline",
                 REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 0, result.stdout
    assert "redis not contacted (--offline)" in result.stdout
    assert "configuration is valid" in result.stdout


@pytest.mark.redis
def test_a_wrong_password_is_an_error_and_never_printed(acl_redis: RedisServer) -> None:
    result = cli("quantum-governor", "check-config", REDIS_URL=url(acl_redis, "", "wr0ng-pw"))
    assert result.returncode == 1
    assert "authentication or ACL refused" in result.stdout
    assert "wr0ng-pw" not in result.stdout + result.stderr


@pytest.mark.redis
def test_reports_reachability_server_and_the_acl(acl_redis: RedisServer) -> None:
    result = cli("quantum-governor", "check-config", REDIS_URL=url(acl_redis))
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert "reachable, authenticated as user 'default'" in out
    client = redis.Redis.from_url(url(acl_redis), decode_responses=True)
    version = client.info("server")["redis_version"]
    assert f"ok     redis server: redis {version}" in out
    assert "redis ACL (ACL DRYRUN as default): governor may run all" in out
    for name in ("XREADGROUP", "XAUTOCLAIM", "XACK", "XADD", "XINFO GROUPS", "XGROUP CREATE",
                 "EVALSHA", "SCRIPT LOAD", "HGET", "HMGET", "HSET", "EXPIRE", "TYPE", "GET"):
        assert name in out.split("governor may run all")[1].splitlines()[0], name
    assert "allocation may run all" in out
    for name in ("HGETALL", "XREVRANGE", "KEYS", "SCAN"):
        assert name in out.split("allocation may run all")[1].splitlines()[0], name
    assert PASSWORD not in out + result.stderr


@pytest.mark.redis
@pytest.mark.parametrize(("user", "method"), [("noclaim", "ACL DRYRUN as noclaim"),
                                              ("noacl", "queued in MULTI, discarded")])
def test_a_command_the_acl_refuses_is_an_error(acl_redis: RedisServer, user: str,
                                               method: str) -> None:
    client = redis.Redis.from_url(url(acl_redis), decode_responses=True)
    keys_before = client.dbsize()
    result = cli("quantum-governor", "check-config", REDIS_URL=url(acl_redis, user))
    assert result.returncode == 1, result.stdout
    refused = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    assert len(refused) == 1, result.stdout
    assert f"redis ACL ({method}): governor may not run XAUTOCLAIM" in refused[0]
    assert "no permissions" in refused[0]
    assert f"redis ACL ({method}): allocation may run all" in result.stdout
    assert client.dbsize() == keys_before  # nothing was run, nothing written


def test_unknown_variables_are_warned_with_the_nearest_known_name() -> None:
    result = cli("quantum-governor", "check-config", "--offline", P29_INTERVAL="1",
                 GOVERNOR_PERMIT_TTL="5", UNRELATED_THING="x")
    assert result.returncode == 0
    out = result.stdout
    assert "WARN   P29_INTERVAL is not a setting" in out
    assert "did you mean P29_INTERVAL_SEC?" in out
    assert "did you mean GOVERNOR_PERMIT_TTL_SEC?" in out
    assert "UNRELATED_THING" not in out  # not one of the project's prefixes
    assert "configuration is valid, 2 warning(s)" in out


def test_says_which_redis_setting_wins() -> None:
    both = cli("quantum-governor", "check-config", "--offline",
               REDIS_URL="redis://h:6379/0", REDIS_HOST="other", REDIS_PORT="7000")
    assert ("WARN   REDIS_URL is set, so REDIS_HOST, REDIS_PORT are ignored (REDIS_URL wins "
            "over REDIS_HOST/REDIS_PORT/REDIS_DB)") in both.stdout
    parts = cli("quantum-governor", "check-config", "--offline", REDIS_HOST="other")
    assert "ok     redis from REDIS_HOST (REDIS_URL is unset)" in parts.stdout


def test_unknown_disabled_plugin_names_are_warned() -> None:
    result = cli("quantum-governor", "check-config", "--offline",
                 QUANTUM_DISABLE_PLUGINS="quantum-governor-p31-efficiency,p31_effciency")
    out = result.stdout
    assert "plugin p31_efficiency on governor: blocked: named in QUANTUM_DISABLE_PLUGINS" in out
    assert "WARN   QUANTUM_DISABLE_PLUGINS names 'p31_effciency', which is no installed" in out
    assert "quantum-governor-p31-efficiency" not in out.split("'p31_effciency'")[0]


def test_every_variable_the_code_reads_is_known() -> None:
    from test_deploy_files import code_reads

    from governor_core.check_config import RecordingEnv, core_settings, plugin_hosts

    recording = RecordingEnv({})
    plugin_hosts(recording, ("governor", "allocation"))
    known = core_settings() | recording.read
    read = {r.name for reads in code_reads().values() for r in reads}
    assert read - known == set()


@pytest.mark.parametrize(("program", "env_file"), [
    ("quantum-governor", "governor.env"), ("quantum-allocation", "capital-allocation.env")])
def test_the_shipped_env_files_check_clean(program: str, env_file: str) -> None:
    result = cli(program, "check-config", "--offline", "--env-file",
                 str(ROOT / "deploy" / "env" / env_file))
    assert result.returncode == 0, result.stdout
    assert "WARN" not in result.stdout and "ERROR" not in result.stdout


@pytest.mark.redis
def test_env_file_is_read_as_systemd_reads_it(acl_redis: RedisServer, tmp_path: Path) -> None:
    """``pa$$w0rd;x`` reaches Redis literally (a shell would have made it ``pa<pid>w0rd``
    and stopped at the ``;``), and the file alone is the environment (not the shell's)."""
    path = tmp_path / "governor.env"
    path.write_text(f"# where Redis is\nREDIS_URL={url(acl_redis)}\n"
                    "# a typo\nP29_INTERVAL=1\n", encoding="utf-8")
    result = cli("quantum-governor", "check-config", "--env-file", str(path),
                 GOVERNOR_PERMIT_TTL_SEC="soon")  # ignored: not in the file
    assert result.returncode == 0, result.stdout
    assert "reachable, authenticated" in result.stdout
    assert "did you mean P29_INTERVAL_SEC?" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr


def test_an_unreadable_env_file_is_one_line(tmp_path: Path) -> None:
    result = cli("quantum-governor", "check-config", "--env-file", str(tmp_path / "none.env"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot read the env file" in result.stderr
    assert "Traceback" not in result.stderr


def test_allocation_check_config_agrees_with_plugins_on_idle_and_active() -> None:
    plugins = cli("quantum-governor", "plugins").stdout
    result = cli("quantum-allocation", "check-config", "--offline")
    assert result.returncode == 0, result.stdout
    checked = [line for line in result.stdout.splitlines() if " on allocation: " in line]
    assert checked and "governor core configuration" not in result.stdout
    for line in checked:
        name, state = line.removeprefix("ok     plugin ").split(" on allocation: ")
        block = plugins.split(name + "  (")[1].split("\n\n")[0]
        assert f"  allocation: {state}" in block, (line, block)
    assert any("idle" in line for line in checked) and any(
        line.endswith(": active") for line in checked)
