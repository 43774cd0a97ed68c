"""The governor host's configuration (SPEC 3 and 6), read once from the environment.

The settings both hosts share are :class:`~governor_core.config.CommonConfig`; the
allocation host's counterpart of this module is :mod:`governor_core.allocation.config`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass

from governor_core.config import CommonConfig, EnvReader, read_settings, setting


def default_consumer() -> str:
    """A consumer name unique to this process: host name and process id."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class GovernorConfig:
    """The governor host's configuration (SPEC 3 and 6)."""

    common: CommonConfig
    metrics_port: int = setting("GOVERNOR_METRICS_PORT", 8044, min=0, max=65535)
    group: str = setting("GOVERNOR_GROUP", "governor")
    #: Unset: :func:`default_consumer`.
    consumer: str = setting("GOVERNOR_CONSUMER", "")
    permit_ttl_sec: int = setting("GOVERNOR_PERMIT_TTL_SEC", 60, min=1)
    cooldown_sec: int = setting("GOVERNOR_COOLDOWN_SEC", 0, min=0)
    batch_size: int = setting("GOVERNOR_BATCH_SIZE", 500, min=1, max=10_000)
    block_ms: int = setting("GOVERNOR_BLOCK_MS", 500, min=1, max=60_000)
    stream_maxlen: int = setting("GOVERNOR_STREAM_MAXLEN", 100_000, min=100)
    #: README, "Stale plans and claiming": a 500-plan batch measured 11 ms (median), 33 ms
    #: at worst, so 10 s is ~300× the slowest batch plus the 500 ms read wait; was 60 s,
    #: which left a crashed governor's plans waiting 60-90 s.
    claim_idle_ms: int = setting("GOVERNOR_CLAIM_IDLE_MS", 10_000, min=1_000)
    #: Gate 1a (SPEC 3.2): a plan older than this (from its ``ts``, else its stream entry
    #: id) is denied as ``stale_plan``; 0 turns the gate off. 30 s covers a crashed
    #: governor's plans claimed after ``GOVERNOR_CLAIM_IDLE_MS`` (10 s, checked every 5 s)
    #: and drained (5,100 in ~1 s, measured) twice over; README, "Stale plans and claiming".
    max_plan_age_sec: int = setting("GOVERNOR_MAX_PLAN_AGE_SEC", 30, min=0)
    #: Another consumer of the group idle this long with nothing pending is deleted (0: never).
    consumer_idle_delete_sec: int = setting("GOVERNOR_CONSUMER_IDLE_DELETE_SEC", 3600, min=0)
    #: ``WAIT`` for this many replicas after each batch's writes (0: off); the next batch's
    #: writes go out only once it returns (deploy/README.md, "High availability").
    wait_replicas: int = setting("GOVERNOR_WAIT_REPLICAS", 0, min=0, max=100)
    #: ``WAIT``'s timeout: never 0 (that would block the governor while no replica is up),
    #: at most 5 s (under the client's 10 s socket timeout, which would call it an outage).
    wait_timeout_ms: int = setting("GOVERNOR_WAIT_TIMEOUT_MS", 1000, min=1, max=5_000)

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> GovernorConfig:
        env = env or EnvReader()
        config = read_settings(cls, env, common=CommonConfig.from_env(env))
        if not config.consumer:
            config = dataclasses.replace(config, consumer=default_consumer())
        return config
