"""The demo loop: one simulated second at a time, market → allocation → plans → governor.

Each script second, in this order: the market's inputs are written; the allocation service
steps if ``P29_INTERVAL_SEC`` of simulated time has passed since its last cycle (p29_shadow
then throttles itself on the tick's ``now``, ``LOOP_INTERVAL_SEC``); the second's plans are
appended to the plan stream; the governor steps until it has read every plan sent so far.
The simulated clock moves only between seconds, so the services see exactly the script.

Real time only paces the loop: the script is spread evenly over ``duration`` seconds (0 = as
fast as possible), so the whole script always runs, whatever the duration.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from governor_core.demo.display import Header, LiveTable, SymbolState, render_table
from governor_core.demo.market import (
    PHASE_SEC,
    PHASES,
    PLAN_STREAM_MAXLEN,
    SCRIPT_SEC,
    SIM_START,
    SYMBOLS,
    MarketSecond,
    market_second,
)
from governor_core.demo.stack import DemoStack
from governor_core.keys import (
    EFFICIENCY_PREFIX,
    PERMIT_PREFIX,
    PLAN_STREAM,
    PROPOSAL_PREFIX,
    TARGET_PREFIX,
)
from governor_core.plans import Plan, parse_plan
from governor_core.redis_io import Command, execute_commands

#: On a terminal the table is redrawn at most this often (about three times a second).
REFRESH_SEC = 0.3
#: A guard only: the governor reads a second's plans in one or two steps.
EXTRA_GOVERNOR_STEPS = 3


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT (Ctrl-C) or SIGTERM while inside; the old handlers return
    after. Outside the main thread (no signals there) it is a plain event."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class DemoLoop:
    """Drives the stack through the script; remembers each symbol's newest plan."""

    def __init__(self, stack: DemoStack, table: LiveTable, stop: threading.Event) -> None:
        self.stack = stack
        self.table = table
        self.stop = stop
        self.plan_ids: list[str] = []
        self.newest_plan: dict[str, str] = {}
        self.allocation_cycles = 0
        self.seconds_run = 0
        self._last_allocation: float | None = None
        self._sent = 0
        self._read = 0

    def run(self, duration: float) -> bool:
        """Run the script; False when stopped early (the table then shows where)."""
        self.stack.governor.prepare()  # the consumer group and the Lua scripts
        self.stack.allocation.prepare()
        started = time.monotonic()
        drawn_at = -math.inf
        shown = -1
        for second in range(SCRIPT_SEC):
            if self.stop.is_set():
                break
            market = self.play(second)
            self.seconds_run = second + 1
            due = (time.monotonic() - drawn_at >= REFRESH_SEC if self.table.tty
                   else (second + 1) % PHASE_SEC == 0)
            if due:
                self.draw(market)
                drawn_at, shown = time.monotonic(), second
            if duration > 0:
                self.stop.wait(max(0.0, started + duration * (second + 1) / SCRIPT_SEC
                                   - time.monotonic()))
        if shown != self.seconds_run - 1 and self.seconds_run:
            self.draw(market_second(self.seconds_run - 1))
        return self.seconds_run == SCRIPT_SEC

    def play(self, second: int) -> MarketSecond:
        stack = self.stack
        market = market_second(second)
        stack.clock.set(SIM_START + second)
        if market.writes:
            execute_commands(stack.client, list(market.writes))
        now = stack.clock()
        interval = stack.allocation.config.interval_sec
        if self._last_allocation is None or now - self._last_allocation >= interval:
            self._last_allocation = now
            if stack.allocation.step() is not None:
                self.allocation_cycles += 1
        self.send_plans(market)
        for _ in range(len(market.plans) + EXTRA_GOVERNOR_STEPS):
            if self._read >= self._sent:
                break
            self._read += stack.governor.step()
        return market

    def send_plans(self, market: MarketSecond) -> None:
        commands: list[Command] = []
        for plan in market.plans:
            flat = [part for item in plan.items() for part in item]
            commands.append(("XADD", PLAN_STREAM, "MAXLEN", "~", str(PLAN_STREAM_MAXLEN), "*",
                             *flat))
            self.plan_ids.append(plan["plan_id"])
            if isinstance(parse_plan("-", plan), Plan):  # a rejected plan has no permit
                self.newest_plan[plan["symbol"]] = plan["plan_id"]
        execute_commands(self.stack.client, commands)
        self._sent += len(commands)

    def draw(self, market: MarketSecond) -> None:
        self.table.show(render_table(self.header(market), self.read_rows(),
                                     self.stack.clock()))

    def header(self, market: MarketSecond) -> Header:
        zone = self.stack.client.hget(TARGET_PREFIX + SYMBOLS[0],
                                      "drawdown_zone") or ""
        phase_no = min(market.second // PHASE_SEC, len(PHASES) - 1) + 1
        return Header(market.second + 1, SCRIPT_SEC, market.phase, phase_no, len(PHASES),
                      market.regime, market.drawdown, market.equity_usd, zone)

    def read_rows(self) -> list[SymbolState]:
        """Every row's four hashes, read back from Redis in one round trip."""
        commands: list[Command] = []
        for symbol in SYMBOLS:
            commands += [("HGETALL", EFFICIENCY_PREFIX + symbol),
                         ("HGETALL", TARGET_PREFIX + symbol),
                         ("HGETALL", PROPOSAL_PREFIX + symbol),
                         ("HGETALL", PERMIT_PREFIX + self.newest_plan.get(symbol, "-"))]
        replies = [_as_hash(reply) for reply in execute_commands(self.stack.client, commands)]
        return [SymbolState(symbol, *replies[4 * i:4 * i + 4])
                for i, symbol in enumerate(SYMBOLS)]


def _as_hash(reply: object) -> dict[str, str]:
    if isinstance(reply, dict):
        return reply
    if isinstance(reply, list):  # a raw HGETALL reply: field, value, field, value…
        return dict(zip(reply[::2], reply[1::2], strict=False))
    return {}


def make_table(out: TextIO) -> LiveTable:
    isatty = getattr(out, "isatty", None)
    return LiveTable(out, bool(isatty and isatty()))
