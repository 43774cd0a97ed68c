"""The demo's stack: a Redis, the real governor and allocation services, both plugin hosts.

Everything is built from :data:`DEMO_ENV` (the caller's environment is not read, so every run
behaves the same), with a simulated clock (:class:`SimClock`) injected into both services.
The Redis is either embedded (``fakeredis``, one server shared by every client the stack
makes) or a real one given by URL, which must hold no ``quantum:*`` keys unless ``force``,
in which case those keys, and only those, are deleted first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import redis
from prometheus_client import CollectorRegistry

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.demo.market import EFF_STALE_SEC, SIM_START
from governor_core.governor.config import GovernorConfig
from governor_core.governor.service import GovernorService
from governor_core.logs import redact
from governor_core.plugins import PluginHost, build_plugin_host
from governor_core.redis_io import connect
from governor_core.redis_settings import RedisSettings, redact_url
from governor_core.runtime import StartupError

PROG = "quantum-governor demo"
EMBEDDED_URL = "redis://embedded/0"  # never connected to: the embedded Redis is fakeredis

#: The demo's settings. Defaults of SPEC 3-4 except: enforce mode (so P2.9 targets are the
#: governor's caps), efficiency stale after 60 s instead of 600 (the script lasts four
#: minutes), permits kept an hour (to inspect them after a run), no metrics servers, a
#: 1 ms read block, and a fixed consumer name.
DEMO_ENV: Mapping[str, str] = MappingProxyType({
    "LOG_FORMAT": "text",
    "LOG_LEVEL": "warning",
    "QUANTUM_DISABLE_PLUGINS": "",
    "GOVERNOR_METRICS_PORT": "0",
    "GOVERNOR_CONSUMER": "demo",
    "GOVERNOR_BLOCK_MS": "1",
    "GOVERNOR_PERMIT_TTL_SEC": "3600",
    "P29_METRICS_PORT": "0",
    "P29_MODE": "enforce",
    "P29_INTERVAL_SEC": "5",
    "LOOP_INTERVAL_SEC": "10",
    "P31_EFF_TTL_SEC": str(EFF_STALE_SEC),
    "P31_STALE_SEC": str(EFF_STALE_SEC),
})


class SimClock:
    """The services' clock: simulated Unix seconds, moved only by :meth:`set`."""

    def __init__(self, start: float = SIM_START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def set(self, now: float) -> None:
        self.now = now


@dataclass
class DemoStack:
    """The running pieces. ``client`` is the market's and the display's own connection."""

    url: str | None
    clock: SimClock
    client: redis.Redis
    governor: GovernorService
    allocation: AllocationService
    governor_plugins: PluginHost
    allocation_plugins: PluginHost
    governor_registry: CollectorRegistry
    allocation_registry: CollectorRegistry
    deleted_keys: int

    @property
    def embedded(self) -> bool:
        return self.url is None


def client_factory(redis_url: str | None) -> Callable[[], redis.Redis]:
    if redis_url is None:
        try:
            import fakeredis  # the demo extra: the host itself does not depend on it
        except ModuleNotFoundError:
            raise StartupError(
                f"{PROG}: the embedded Redis needs fakeredis, which is not installed: "
                "pip install 'quantum-governor[demo]', or pass --redis-url redis://HOST:PORT/DB"
            ) from None

        server = fakeredis.FakeServer()
        return lambda: fakeredis.FakeRedis(server=server, decode_responses=True)
    settings = RedisSettings(redis_url)
    return lambda: connect(settings)


def claim_database(client: redis.Redis, redis_url: str, force: bool) -> int:
    """Refuse a database holding ``quantum:*`` keys, or with ``force`` delete exactly those.

    Returns the number of keys deleted. Raises :class:`StartupError` (one line, password
    redacted) when the database is in use or unreachable.
    """
    safe = redact_url(redis_url)
    try:
        found = next(client.scan_iter(match="quantum:*", count=1000), None)
        if found is None:
            return 0
        if not force:
            raise StartupError(
                f"{PROG}: {safe} already holds quantum:* keys (e.g. {found}); the demo "
                "writes its own there: use an empty database, or pass --force to delete "
                "every quantum:* key first")
        deleted = 0
        batch: list[str] = []
        for key in client.scan_iter(match="quantum:*", count=1000):
            batch.append(key)
            if len(batch) == 500:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
        return deleted
    except redis.RedisError as exc:
        raise StartupError(f"{PROG}: cannot use Redis at {safe}: "
                           f"{redact(str(exc)) or type(exc).__name__}") from None


def build_stack(redis_url: str | None, *, force: bool = False,
                clock: SimClock | None = None) -> DemoStack:
    """Connect (or embed) Redis, load both plugin hosts from the installed entry points, and
    build the two services around one simulated clock."""
    make_client = client_factory(redis_url)
    client = make_client()
    deleted = 0 if redis_url is None else claim_database(client, redis_url, force)
    env = dict(DEMO_ENV, REDIS_URL=redis_url or EMBEDDED_URL)
    reader = EnvReader(env)
    governor_config = GovernorConfig.from_env(reader)
    allocation_config = AllocationConfig.from_env(reader)
    clock = clock or SimClock()
    governor_registry, allocation_registry = CollectorRegistry(), CollectorRegistry()
    # The governor host first: a plugin object is shared by both hosts, and p29_shadow
    # switches itself off when configured for the governor, on again for the allocation.
    governor_plugins = build_plugin_host("governor", env, governor_registry)
    allocation_plugins = build_plugin_host("allocation", env, allocation_registry)
    governor = GovernorService(governor_config, make_client(), governor_plugins,
                               governor_registry, clock=clock)
    allocation = AllocationService(allocation_config, make_client(), allocation_plugins,
                                   allocation_registry, clock=clock)
    return DemoStack(redis_url, clock, client, governor, allocation, governor_plugins,
                     allocation_plugins, governor_registry, allocation_registry, deleted)
