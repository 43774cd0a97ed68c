"""CommandStream: replies in order, a refused command's error in its place, and replies
taken in parts (``take``) exactly as one ``replies`` would give them."""

from __future__ import annotations

import time

import fakeredis
import pytest
import redis

from governor_core.redis_io import (
    HEALTH_CHECK_INTERVAL_SEC,
    PROTOCOL,
    CommandStream,
    connect,
    execute_commands,
)
from governor_core.redis_settings import RedisSettings
from governor_core.wire import Packed, bulk

COMMANDS = [("HSET", "h", "f", "v"), ("HGET", "h", "f"), ("GET", "h"),
            Packed.of(*map(bulk, ("GET", "missing"))), ("INCR", "n"), ("INCR", "n")]


def clients(real_redis: redis.Redis) -> list[redis.Redis]:
    return [real_redis, fakeredis.FakeRedis(decode_responses=True)]


def shapes(replies: list[object]) -> list[object]:
    return [type(r).__name__ if isinstance(r, Exception) else r for r in replies]


@pytest.mark.redis
@pytest.mark.parametrize("split", [0, 1, 3, 6])
def test_take_then_replies_is_one_replies(real_redis: redis.Redis, split: int) -> None:
    for client in clients(real_redis):
        client.flushall()
        stream = CommandStream(client)
        stream.send(COMMANDS)
        first = stream.take(split)
        rest = stream.replies()
        assert shapes(first + rest) == [1, "v", "ResponseError", None, 1, 2]
        assert len(first) == split
        # The connection went back to the pool in a usable state.
        assert execute_commands(client, [("HGET", "h", "f")]) == ["v"]


@pytest.mark.redis
def test_take_more_than_was_sent_is_refused(real_redis: redis.Redis) -> None:
    stream = CommandStream(real_redis)
    stream.send([("INCR", "x")])
    with pytest.raises(ValueError):
        stream.take(2)
    stream.abandon()
    assert execute_commands(real_redis, [("INCR", "x")]) == [2]


def production_client(url: str, health_check_interval: float) -> redis.Redis:
    return connect(RedisSettings(url), health_check_interval=health_check_interval)


@pytest.mark.redis
def test_production_client_speaks_resp2(redis_server) -> None:
    client = production_client(redis_server.url, HEALTH_CHECK_INTERVAL_SEC)
    assert client.connection_pool.connection_kwargs["protocol"] == PROTOCOL == 2
    client.hset("h", mapping={"a": "1"})
    # RESP2: HGETALL is a flat list on the wire (RESP3 would send a map).
    assert execute_commands(client, [("HGETALL", "h")]) == [["a", "1"]]


@pytest.mark.redis
def test_health_check_falling_due_mid_stream_reads_no_reply_of_ours(redis_server) -> None:
    """Regression: the health check's PING, sent between two chunks of one stream, used to
    read one of the stream's pending replies as its PONG ("Bad response from PING health
    check", or a timeout with the commands run on the server)."""
    client = production_client(redis_server.url, 0.05)
    client.flushall()
    stream = CommandStream(client)
    stream.send([("INCR", "n")] * 10)
    time.sleep(0.15)  # the interval falls due before the next send
    stream.send([Packed.of(*map(bulk, ("INCR", "n")))] * 10)
    time.sleep(0.15)
    stream.send([("GET", "n")])
    assert stream.replies() == [*range(1, 21), "20"]
    # The connection went back to the pool clean: the next command reads its own reply.
    time.sleep(0.1)
    assert client.get("n") == "20"


@pytest.mark.redis
def test_health_check_between_take_and_replies(redis_server) -> None:
    client = production_client(redis_server.url, 0.05)
    client.flushall()
    stream = CommandStream(client)
    stream.send([("INCR", "m")] * 5)
    assert stream.take(2) == [1, 2]
    time.sleep(0.15)
    assert stream.replies() == [3, 4, 5]


@pytest.mark.redis
def test_a_stream_runs_scripts_redis_lost_once_more(real_redis: redis.Redis) -> None:
    """EVALSHA of a flushed script: loaded and run again, its reply in its place."""
    from governor_core.scripts import SCRIPTS

    list_keys = SCRIPTS["list_keys"]
    for client in clients(real_redis):  # the fakeredis path runs a pipeline instead
        client.flushall()
        client.set("budget:AAA", "1")
        client.script_flush()
        stream = CommandStream(client)
        stream.send([("INCR", "n"), list_keys.command((), ("budget:*", 100)), ("INCR", "n")])
        assert stream.take(1) == [1]
        assert stream.replies() == [["budget:AAA"], 2]
        assert client.script_exists(list_keys.sha) == [True]


@pytest.mark.redis
def test_refusals_are_the_refused_commands_of_replies(real_redis: redis.Redis) -> None:
    from governor_core.scripts import SCRIPTS

    for client in clients(real_redis):
        client.flushall()
        client.set("text", "x")
        client.script_flush()
        stream = CommandStream(client)
        stream.send([("INCR", "n"), ("HSET", "text", "f", "v"),
                     SCRIPTS["list_keys"].command((), ("text", 10)), ("LPUSH", "text", "v")])
        refused = stream.refusals()
        assert [str(error).split()[0] for error in refused] == ["WRONGTYPE", "WRONGTYPE"]
        assert client.get("n") == "1"  # the others ran; the lost script ran again
        assert execute_commands(client, [("GET", "n")]) == ["1"]
