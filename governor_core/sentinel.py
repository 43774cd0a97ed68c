"""Redis Sentinel: the production client of a primary that the sentinels name
(``REDIS_SENTINELS``, ``REDIS_SENTINEL_MASTER``;
:class:`~governor_core.redis_settings.RedisSettings`),
on redis-py's public :mod:`redis.sentinel` API. :func:`governor_core.redis_io.connect` calls
:func:`sentinel_client` when sentinels are configured.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import redis
from redis.connection import parse_url
from redis.sentinel import Sentinel, SentinelConnectionPool

if TYPE_CHECKING:
    from governor_core.redis_settings import RedisSettings

log = logging.getLogger("quantum.redis")


def sentinel_client(settings: RedisSettings, common: dict[str, Any],
                     health_check_interval: float, options: dict[str, Any]) -> redis.Redis:
    """The primary of ``settings.sentinel_master``, through redis-py's public
    :class:`redis.sentinel.Sentinel`: its pool (:class:`FollowingPool`, a
    ``SentinelConnectionPool``) asks the sentinels for the primary's address whenever a
    connection (re)connects and every :data:`PRIMARY_CHECK_SEC`, and a connection that gets
    ``READONLY`` from a demoted primary is closed and raises ``ConnectionError`` (an outage:
    the caller's retry reconnects to the new primary). So ``CommandStream``, which takes its
    connection from this pool, follows a failover on its next round trip.

    The data nodes get ``settings.url``'s options (credentials, database, TLS, query) as
    redis-py reads them (``redis.connection.parse_url``; its host and port are dropped); the
    sentinels get the same timeouts and TLS, and ``REDIS_SENTINEL_PASSWORD``. A
    ``connection_class`` must then be a ``SentinelManagedConnection`` subclass.
    """
    parsed = parse_url(settings.url)
    ssl = issubclass(parsed.pop("connection_class", redis.Connection), redis.SSLConnection)
    nodes = {key: value for key, value in parsed.items() if key not in ("host", "port")}
    tls = {key: value for key, value in nodes.items() if ssl and key.startswith("ssl")}
    sentinel = Sentinel(
        settings.sentinels,
        sentinel_kwargs={**common, **tls, "ssl": ssl, "password": settings.sentinel_password},
    )
    return sentinel.master_for(settings.sentinel_master, connection_pool_class=FollowingPool,
                               **{**nodes, **common}, ssl=ssl,
                               health_check_interval=health_check_interval,
                               retry_on_timeout=False, **options)


#: Seconds between two questions to the sentinels about the primary (:class:`FollowingPool`).
PRIMARY_CHECK_SEC = 0.1


class FollowingPool(SentinelConnectionPool):
    """redis-py's ``SentinelConnectionPool`` that also asks the sentinels which node is the
    primary when a connection is taken, at most every :data:`PRIMARY_CHECK_SEC` (one
    ``SENTINEL MASTERS``, ~40 µs here): every command and every ``CommandStream`` take one.

    redis-py's pool asks only when a connection (re)connects. After a switchover
    (``SENTINEL FAILOVER``, or a failover after a partition) the old primary keeps taking
    writes on the connections it has until Sentinel reconfigures it, its 10 s ``INFO``
    period later (measured: 10.9 s), and drops them when it resynchronises from the new
    primary; and nothing fails, so a governor would not re-read the plans still pending on
    the new primary. So a change of primary seen here is an outage: the pool's idle
    connections are closed (by ``get_master_address``) and :class:`redis.ConnectionError`
    is raised, once; the caller's outage path (the governor: abandon the batch in flight,
    re-read its own pending plans, reload the scripts) then runs on the new primary. The
    window shrinks to the time the asked sentinel takes to learn of the promotion (its hello
    period, 2 s, at worst). If no sentinel answers, the connections in hand are kept: a
    healthy primary stays usable while the sentinels are away.
    """

    _checked = -PRIMARY_CHECK_SEC

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = super().get_connection(*args, **kwargs)
        now = time.monotonic()
        if not self.is_master or now - self._checked < PRIMARY_CHECK_SEC:
            return connection
        self._checked = now
        try:
            address = self.get_master_address()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.debug("sentinels not asked about the primary: %s", exc)
            return connection
        # A connection made just now went where the sentinels said (after a crash, the
        # new primary): nothing to report. One kept from before reaches the old primary.
        if (connection.host, connection.port) != tuple(address):
            connection.disconnect()
            self.release(connection)
            raise redis.ConnectionError(
                f"the sentinels name a new primary of {self.service_name!r}: "
                f"{address[0]}:{address[1]} (was {connection.host}:{connection.port})")
        return connection
