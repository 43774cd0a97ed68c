"""``quantum-allocation clear-targets``: delete the live allocation targets at once.

Live targets (``quantum:allocation:target:{symbol}``) left by an enforce run keep capping
the governor's plans until their TTL (``TARGET_TTL_SEC``, 300 s) runs out. This command
deletes them now, through the project's own client and so with ``REDIS_URL``'s credentials
and TLS (a ``redis-cli --scan | xargs redis-cli DEL`` pipe ignores both). It changes no mode
and writes no ops-ledger entry; ``quantum-allocation rollback``
(:mod:`governor_core.allocation.promotion`) switches the mode to shadow, calls
:func:`clear_live_targets` and records both.

What a caller may rely on: only keys under ``quantum:allocation:target:`` are deleted, never
the shadow proposals under ``quantum:allocation:target:proposed:``; keys are found with
``SCAN`` (never ``KEYS``, which would block Redis) and deleted with ``UNLINK`` (memory freed
off Redis's main thread) in batches; the count returned is what Redis reports deleted. An
allocation service still in ``enforce`` mode writes its targets again at its next cycle:
switch it to shadow first.
"""

from __future__ import annotations

import argparse
from typing import Any

import redis

from governor_core.config import ConfigError, EnvReader
from governor_core.keys import PROPOSAL_PREFIX, TARGET_PREFIX
from governor_core.redis_io import connect
from governor_core.redis_settings import RedisSettings
from governor_core.runtime import StartupError

PROG = "quantum-allocation clear-targets"
#: Keys per ``UNLINK`` (and the ``COUNT`` hint of each ``SCAN`` step).
BATCH = 500


def live_target_keys(client: redis.Redis) -> list[str]:
    """Every live target key now in Redis (proposals left out), sorted, each once."""
    keys = client.scan_iter(match=TARGET_PREFIX + "*", count=BATCH)
    return sorted({key for key in keys if not key.startswith(PROPOSAL_PREFIX)})


def clear_live_targets(client: redis.Redis, *, batch: int = BATCH) -> int:
    """Delete every ``quantum:allocation:target:{symbol}`` key, never a
    ``quantum:allocation:target:proposed:*`` one; the number Redis deleted.

    ``client`` must decode responses (the production client does). Keys are unlinked
    ``batch`` at a time as the scan finds them; a key that expires meanwhile is not counted.
    """
    deleted = 0
    pending: list[bytes] = []
    for key in client.scan_iter(match=TARGET_PREFIX + "*", count=batch):
        if key.startswith(PROPOSAL_PREFIX):
            continue
        # A name with undecodable bytes came in as surrogates: UNLINK gets its bytes back.
        pending.append(key.encode("utf-8", "surrogateescape"))
        if len(pending) >= batch:
            deleted += client.unlink(*pending)
            pending = []
    if pending:
        deleted += client.unlink(*pending)
    return deleted


def add_parser(commands: Any) -> None:
    """Add the ``clear-targets`` subcommand to ``commands`` (an ``add_subparsers()``
    result)."""
    clear = commands.add_parser(
        "clear-targets", help="delete the live allocation targets now (after a rollback)",
        description="Delete every quantum:allocation:target:{symbol} key (never the "
                    "shadow proposals under quantum:allocation:target:proposed:), with "
                    "REDIS_URL's credentials. No mode change, no ledger entry: "
                    "`quantum-allocation rollback` switches to shadow, deletes them and "
                    "records it. In enforce mode the service writes them again at its next "
                    "cycle.")
    clear.add_argument("--dry-run", action="store_true",
                       help="only count and list the keys that would be deleted")
    clear.add_argument("--redis-url", default=None,
                       help="the Redis to clear (default: REDIS_URL, else REDIS_HOST/PORT/DB)")


def run(args: argparse.Namespace) -> int:
    """The ``clear-targets`` command: one line saying what was (or would be) deleted."""
    try:
        settings = (RedisSettings.from_url(args.redis_url, name="--redis-url")
                    if args.redis_url is not None else RedisSettings.from_env(EnvReader()))
    except ConfigError as exc:
        raise StartupError(f"{PROG}: configuration error: {exc}") from None
    client = connect(settings)
    if args.dry_run:
        keys = live_target_keys(client)
        print(f"would delete {len(keys)} live target(s) at {settings.safe_url}"
              + (": " + " ".join(keys) if keys else ""))
        return 0
    deleted = clear_live_targets(client)
    print(f"deleted {deleted} live target(s) (quantum:allocation:target:*, proposals kept) "
          f"at {settings.safe_url}; the governor caps from budgets from its next batch")
    return 0
