"""pytest fixtures for the host's and the plugins' tests: a real ``redis-server`` for the
session, a flushed client on it per test, and fakeredis for fast unit tests.

Load it from a conftest with ``pytest_plugins = ["governor_core.testing.fixtures"]``, or
import the fixtures into one. fakeredis is a test dependency, not the host's: it is imported
by the fixture that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from governor_core.testing import RedisServer, start_redis


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "redis: needs a real redis-server binary (started by the test on a free port)")
    config.addinivalue_line(
        "markers", "slow: builds virtualenvs or runs services for several seconds")


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
    """A decoded fakeredis client on a server of its own."""
    import fakeredis

    return fakeredis.FakeRedis(decode_responses=True)
