"""CommandStream: replies in order, a refused command's error in its place, and replies
taken in parts (``take``) exactly as one ``replies`` would give them."""

from __future__ import annotations

import fakeredis
import pytest
import redis

from governor_core.redis_io import CommandStream, execute_commands
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
