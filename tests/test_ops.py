"""``quantum-allocation clear-targets`` (governor_core.allocation.ops): deletes the live
targets at once, with REDIS_URL's credentials, and nothing else."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import redis

from governor_core.allocation import ops
from governor_core.testing import start_redis

pytestmark = pytest.mark.redis

TARGET = "quantum:allocation:target:"
PROPOSED = "quantum:allocation:target:proposed:"


def seed(client: redis.Redis, symbols: int) -> None:
    pipe = client.pipeline(transaction=False)
    for index in range(symbols):
        pipe.hset(f"{TARGET}S{index:04d}USDT", mapping={"target_usd": "1000", "mode": "enforce"})
        pipe.expire(f"{TARGET}S{index:04d}USDT", 300)
        pipe.hset(f"{PROPOSED}S{index:04d}USDT", "proposed_target", "900")
    pipe.execute()


def test_deletes_live_targets_and_keeps_everything_else(real_redis: redis.Redis) -> None:
    seed(real_redis, 3)
    others = {"quantum:portfolio:budget:S0000USDT": "hash", "quantum:allocation:targets": "str",
              "quantum:stream:allocation.target.proposed": "stream", "prod:orders": "str"}
    real_redis.hset("quantum:portfolio:budget:S0000USDT", "budget_usd", "5")
    real_redis.set("quantum:allocation:targets", "not a target (no colon)")
    real_redis.xadd("quantum:stream:allocation.target.proposed", {"symbol": "S0000USDT"})
    real_redis.set("prod:orders", "keep")
    assert ops.live_target_keys(real_redis) == [f"{TARGET}S{i:04d}USDT" for i in range(3)]
    assert ops.clear_live_targets(real_redis) == 3
    assert sorted(real_redis.keys(TARGET + "*")) == [f"{PROPOSED}S{i:04d}USDT" for i in range(3)]
    assert all(real_redis.exists(key) for key in others)
    assert ops.clear_live_targets(real_redis) == 0  # nothing left: nothing to do


def test_many_targets_go_in_batches_of_unlink(real_redis: redis.Redis) -> None:
    seed(real_redis, 1234)
    sent: list[int] = []

    class Counting(redis.Redis):
        def unlink(self, *names):  # type: ignore[override]
            sent.append(len(names))
            return super().unlink(*names)

    client = Counting(port=real_redis.connection_pool.connection_kwargs["port"],
                      decode_responses=True)
    assert ops.clear_live_targets(client, batch=100) == 1234
    assert max(sent) <= 100 and sum(sent) == 1234
    assert len(real_redis.keys(PROPOSED + "*")) == 1234
    assert real_redis.dbsize() == 1234


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="quantum-allocation")
    ops.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["clear-targets", *argv])


def test_options() -> None:
    assert (parse().dry_run, parse().redis_url) == (False, None)
    args = parse("--dry-run", "--redis-url", "redis://h:1/0")
    assert (args.dry_run, args.redis_url) == (True, "redis://h:1/0")


#: The command as governor_core/allocation/cli.py wires it: under ``main_guard``.
CODE = ("import argparse, sys\nfrom governor_core.allocation import ops\n"
        "from governor_core.runtime import main_guard\n"
        "parser = argparse.ArgumentParser(prog='quantum-allocation')\n"
        "ops.add_parser(parser.add_subparsers(dest='command'))\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "sys.exit(main_guard(lambda: ops.run(args), 'quantum-allocation'))\n")


def command(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CODE, "clear-targets", *argv],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, **env})


def test_the_command_uses_redis_url_with_its_password() -> None:
    """The design's ``xargs redis-cli DEL`` ignored authentication; this works with it."""
    server = start_redis()
    server.client().config_set("requirepass", "s3cret")
    try:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
        client = redis.Redis.from_url(url, decode_responses=True)
        seed(client, 2)
        dry = command("--dry-run", env={"REDIS_URL": url})
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout.startswith("would delete 2 live target(s)")
        assert client.exists(f"{TARGET}S0000USDT")
        done = command(env={"REDIS_URL": url})
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("deleted 2 live target(s)")
        assert "s3cret" not in done.stdout + done.stderr + dry.stdout + dry.stderr
        assert all(key.startswith(PROPOSED) for key in client.keys(TARGET + "*"))
        assert len(client.keys(PROPOSED + "*")) == 2
    finally:
        server.stop()


def test_a_wrong_password_is_one_line() -> None:
    server = start_redis()
    server.client().config_set("requirepass", "s3cret")
    try:
        result = command(env={"REDIS_URL": f"redis://:wrong@127.0.0.1:{server.port}/0"})
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and "wrong" not in result.stderr
    finally:
        server.stop()
