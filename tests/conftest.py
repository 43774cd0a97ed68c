from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import RedisServer, start_redis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session, on a free port."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def real_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A decoded client on the real server, flushed before each test."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)
