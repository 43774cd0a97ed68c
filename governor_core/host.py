"""What both services share: their parts, and a run loop that waits out Redis outages.

A service is built from its frozen config, a Redis client, its plugins and a Prometheus
registry, with an injected clock and a stop event. :meth:`HostService.run` calls
:meth:`~HostService.prepare` (once, and again after an outage) and then
:meth:`~HostService.loop_step` until the stop event is set, at most once per
:attr:`~HostService.interval_sec`. A Redis outage or error is logged, counted by the
service (:meth:`~HostService.failed`) and retried with :class:`Backoff`; a service never
dies because Redis went away. Redis refusing the credentials or a command (authentication,
ACL) is not an outage: :meth:`~HostService.run` finishes the work in hand and raises it,
and the ``run`` command exits with status 2. On stop, :meth:`~HostService.close` finishes
the work in hand.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from governor_core.plugins import PluginHost
from governor_core.redis_io import REDIS_OUTAGE_ERRORS, Backoff
from governor_core.runtime import is_access_error
from governor_core.scripts import SCRIPTS


class HostService:
    #: What the loop is doing, for the outage log line.
    activity = "service loop"
    #: Seconds from the start of one step to the start of the next (0: back to back).
    interval_sec = 0.0

    def __init__(self, config: Any, client: redis.Redis, plugins: PluginHost,
                 registry: CollectorRegistry, *, clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.redis = client
        self.plugins = plugins
        self.registry = registry
        self.clock = clock
        self.stop = stop or threading.Event()
        self.setup()

    def setup(self) -> None:
        """Build the service's own parts (metrics, plugin adapters); called by
        ``__init__`` once the shared ones are set."""

    def prepare(self) -> None:
        """Make Redis ready for :meth:`step`; by default, load the Lua scripts (so the
        first batch or cycle does not find them missing)."""
        SCRIPTS.load(self.redis)

    def step(self) -> object:  # pragma: no cover - every service defines it
        raise NotImplementedError

    def loop_step(self) -> object:
        """What :meth:`run` calls each time round: :meth:`step`, unless a service runs its
        loop differently."""
        return self.step()

    def failed(self, error: Exception) -> None:
        """Called after a step or preparation raised a Redis error, before the backoff."""

    def close(self) -> None:
        """Called once the stop event is set, to finish the work in hand."""

    def run(self) -> None:
        """Prepare and step until the stop event is set, then :meth:`close`. Raises only
        an authentication or ACL refusal (see
        :func:`~governor_core.runtime.is_access_error`), after :meth:`close`."""
        backoff = Backoff(self.stop)
        ready = False
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                if not ready:
                    self.prepare()
                    ready = True
                self.loop_step()
                backoff.succeeded()
            except (*REDIS_OUTAGE_ERRORS, redis.ResponseError) as exc:
                if is_access_error(exc):  # waiting cannot fix credentials or an ACL
                    self.close()
                    raise
                ready = False
                self.failed(exc)
                backoff.failed(self.activity, exc)
                continue
            if self.interval_sec:
                self.stop.wait(max(0.0, self.interval_sec - (time.monotonic() - started)))
        self.close()
