"""``quantum-governor feed``: a sample producer, so a newcomer can drive a real installation.

It writes what the other services of the platform would, by the schema of ``docs/schema.md``:
trade plans on ``quantum:stream:apply.plan`` at ``--rate`` plans a second, round-robin over
``--symbols``; and, once a second, each symbol's efficiency hash
(``quantum:capital:efficiency:{symbol}``) and budget hash
(``quantum:portfolio:budget:{symbol}``), with fresh timestamps. It never deletes, trims or
overwrites anything else: the plan stream is not capped by the feeder (a ``MAXLEN`` there
could trim plans a governor has not read yet), and it writes no portfolio state, regime,
cluster stress or kill switch (an allocation service run beside it logs which input it
lacks, e.g. ``portfolio state missing: quantum:state:portfolio``).

What a caller may rely on: the values are a pure function of the plan number, the symbol's
position and the second (:func:`sample_plan`, :func:`efficiency_fields`,
:func:`budget_fields`); plan ids are ``feed-{start second}-{n}``, unique across runs; every
number is a plain decimal; ``run`` returns 0 after ``--duration`` seconds (0: until SIGINT
or SIGTERM) and prints one line at the start and one at the end. Redis errors are left to
the caller's guard (``main_guard``: one line, exit 1 or 2).
"""

from __future__ import annotations

import argparse
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from governor_core.config import ConfigError, EnvReader
from governor_core.formats import fmt_ts
from governor_core.keys import BUDGET_PREFIX, EFFICIENCY_PREFIX, PLAN_STREAM
from governor_core.parsing import SYMBOL_RE
from governor_core.redis_io import connect
from governor_core.redis_settings import RedisSettings
from governor_core.runtime import StartupError, install_stop_signals

PROG = "quantum-governor feed"
#: Plan sizes, in turn: small ones pass, large ones are clamped by a 20,000 USD budget.
NOTIONALS = ("500", "2500", "10000", "30000")
#: Each symbol's budget.
BUDGET_USD = "20000"
#: Efficiency scores, by the symbol's position: some below the 0.45 downsize threshold.
SCORES = ("0.8000", "0.3000", "0.6000", "0.2000", "0.5000")
CONFIDENCE = "0.9000"
MAX_RATE = 10_000.0


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """What to feed: symbols, plans per second, seconds (0: until stopped)."""

    symbols: tuple[str, ...]
    rate: float
    duration: float


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What was written: plans, hash refreshes (one per second, all symbols), seconds."""

    plans: int
    refreshes: int
    seconds: float


def add_parser(commands: Any) -> None:
    """Add the ``feed`` subcommand to ``commands`` (an ``add_subparsers()`` result)."""
    feed = commands.add_parser(
        "feed", help="write sample plans, efficiency and budget hashes to a Redis",
        description="Write sample trade plans (at --rate a second) and, every second, "
                    "each symbol's efficiency and budget hash, by the schema of "
                    "docs/schema.md. Deletes nothing.")
    feed.add_argument("--symbols", default="BTCUSDT,ETHUSDT",
                      help="comma-separated symbols (default BTCUSDT,ETHUSDT)")
    feed.add_argument("--rate", type=float, default=5.0,
                      help="plans per second (default 5)")
    feed.add_argument("--duration", type=float, default=60.0,
                      help="seconds to run (default 60; 0: until Ctrl-C)")
    feed.add_argument("--redis-url", default=None,
                      help="the Redis to feed (default: REDIS_URL, else REDIS_HOST/PORT/DB)")


def settings_from(args: argparse.Namespace) -> FeedSettings:
    """The checked settings of ``args``; a :class:`StartupError` naming the bad option."""
    symbols = tuple(part.strip() for part in args.symbols.split(",") if part.strip())
    if not symbols:
        raise StartupError(f"{PROG}: --symbols is empty: expected e.g. BTCUSDT,ETHUSDT")
    for symbol in symbols:
        if not SYMBOL_RE.fullmatch(symbol):
            raise StartupError(f"{PROG}: --symbols: {symbol!r} is invalid: expected 2-32 "
                               "of A-Z0-9 (e.g. BTCUSDT)")
    if not 0 < args.rate <= MAX_RATE:
        raise StartupError(f"{PROG}: --rate {args.rate!r} is invalid: expected plans per "
                           f"second, more than 0 and at most {MAX_RATE:g}")
    if not 0 <= args.duration < float("inf"):
        raise StartupError(f"{PROG}: --duration {args.duration!r} is invalid: expected "
                           "seconds >= 0")
    return FeedSettings(symbols, args.rate, args.duration)


def redis_settings(url: str | None) -> RedisSettings:
    """``--redis-url`` if given, else the environment's; a :class:`StartupError` if unusable."""
    try:
        if url is not None:
            return RedisSettings.from_url(url, name="--redis-url")
        return RedisSettings.from_env(EnvReader())
    except ConfigError as exc:
        raise StartupError(f"{PROG}: configuration error: {exc}") from None


def run(args: argparse.Namespace) -> int:
    """The ``feed`` command: check the options, connect, feed until done or stopped."""
    settings = settings_from(args)
    where = redis_settings(args.redis_url)
    client = connect(where)
    client.ping()  # an unreachable or refusing Redis: one line from the caller's guard
    stop = threading.Event()
    install_stop_signals(stop)
    how_long = f"for {settings.duration:g} s" if settings.duration else "until Ctrl-C"
    print(f"feeding {where.safe_url}: {settings.rate:g} plans/s over "
          f"{', '.join(settings.symbols)}, {how_long}", flush=True)
    result = feed(client, settings, stop=stop)
    print(f"fed {result.plans} plans and {result.refreshes} efficiency/budget refreshes "
          f"in {result.seconds:.1f} s", flush=True)
    return 0


def feed(client: redis.Redis, settings: FeedSettings, *, stop: threading.Event,
         clock: Callable[[], float] = time.time,
         monotonic: Callable[[], float] = time.monotonic) -> FeedResult:
    """Write plans at ``settings.rate`` and refresh the hashes every second, each step in
    one pipeline, until ``settings.duration`` has passed or ``stop`` is set."""
    started = monotonic()
    run_id = int(clock())
    rate, duration = settings.rate, settings.duration
    total = math.ceil(duration * rate) if duration else None  # plans due in [0, duration)
    plans = refreshes = 0
    next_refresh = 0.0
    while not stop.is_set():
        elapsed = monotonic() - started
        if duration and elapsed >= duration:
            break
        now = clock()
        due = int(elapsed * rate) + 1
        due = (due if total is None else min(due, total)) - plans
        pipe = client.pipeline(transaction=False)
        refresh = elapsed >= next_refresh
        if refresh:
            for index, symbol in enumerate(settings.symbols):
                pipe.hset(EFFICIENCY_PREFIX + symbol, mapping=efficiency_fields(index, now))
                pipe.hset(BUDGET_PREFIX + symbol, mapping=budget_fields(now))
            refreshes += 1
            next_refresh = math.floor(elapsed) + 1.0
        for number in range(plans, plans + max(0, due)):
            pipe.xadd(PLAN_STREAM, sample_plan(number, settings.symbols, run_id, now))
        pipe.execute()
        plans += max(0, due)
        wake = min(plans / rate, next_refresh, duration or float("inf"))
        stop.wait(max(0.0, wake - (monotonic() - started)))
    return FeedResult(plans, refreshes, monotonic() - started)


def sample_plan(number: int, symbols: Sequence[str], run_id: int, now: float
                ) -> dict[str, str]:
    """Plan ``number`` of a run: symbols in turn, BUY and SELL in turn, the sizes of
    :data:`NOTIONALS` in turn (by round of the symbols), ``ts`` = ``now``."""
    return {"plan_id": f"feed-{run_id}-{number:06d}", "symbol": symbols[number % len(symbols)],
            "side": "BUY" if number % 2 == 0 else "SELL",
            "notional_usd": NOTIONALS[(number // len(symbols)) % len(NOTIONALS)],
            "ts": fmt_ts(now)}


def efficiency_fields(index: int, now: float) -> dict[str, str]:
    """The efficiency hash of the symbol at ``index``: a score of :data:`SCORES`, usable
    confidence, ``ts`` = ``now``."""
    return {"efficiency_score": SCORES[index % len(SCORES)], "confidence": CONFIDENCE,
            "ts": fmt_ts(now), "mode": "sample"}


def budget_fields(now: float) -> dict[str, str]:
    """Every symbol's budget hash: :data:`BUDGET_USD`, ``timestamp`` = ``now``."""
    return {"budget_usd": BUDGET_USD, "timestamp": fmt_ts(now)}
