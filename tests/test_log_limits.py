"""``RepeatLimiter``: a repeated message is logged once per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from governor_core.logs import RepeatLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger="quantum.test_limits")
    return logging.getLogger("quantum.test_limits")


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int | None]]:
    return [(r.getMessage(), getattr(r, "count", None)) for r in caplog.records]


# (seconds since the start, message) → what is written
TIMELINE = [
    (0.0, "OOM command not allowed", [("OOM command not allowed", None)]),
    (0.1, "OOM command not allowed", []),
    (5.0, "OOM command not allowed", []),
    (9.9, "OOM command not allowed", []),
    (9.95, "WRONGTYPE other", [("WRONGTYPE other", None)]),  # another message: its own line
    (10.0, "OOM command not allowed",
     [("OOM command not allowed (repeated 3 times in the last 10 s)", 3)]),
    (10.5, "OOM command not allowed", []),
    (31.0, "OOM command not allowed",
     [("OOM command not allowed (repeated 1 times in the last 21 s)", 1)]),
    (100.0, "OOM command not allowed", [("OOM command not allowed", None)]),  # no repeats
]


def test_timeline(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = RepeatLimiter(logger, 10.0, clock=clock)
    start = clock.now
    for offset, message, written in TIMELINE:
        caplog.clear()
        clock.now = start + offset
        assert limiter.log(logging.ERROR, "%s", message) is bool(written)
        assert lines(caplog) == written, offset


def test_a_storm_is_a_few_lines(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    """The fault run's 3,300 identical lines a second, for a minute: 6 lines at 10 s, and
    one for the count left at the end (a stop flushes it)."""
    clock = Clock()
    limiter = RepeatLimiter(logger, 10.0, clock=clock)
    for tick in range(60 * 3300):
        clock.now = 1000.0 + tick / 3300
        limiter.log(logging.ERROR, "dead letter write refused (other): %s", "WRONGTYPE …")
    assert len(caplog.records) == 6
    limiter.flush()
    assert len(caplog.records) == 7
    # six events written, every other one counted once
    assert 6 + sum(getattr(r, "count", None) or 0 for r in caplog.records) == 60 * 3300


def test_context_fields_do_not_split_a_message(logger: logging.Logger,
                                               caplog: pytest.LogCaptureFixture) -> None:
    limiter = RepeatLimiter(logger, 10.0, clock=Clock())
    assert limiter.log(logging.ERROR, "refused: %s", "OOM", plan_id="p-1")
    assert not limiter.log(logging.ERROR, "refused: %s", "OOM", plan_id="p-2")
    assert caplog.records[0].plan_id == "p-1"


def test_an_explicit_key_groups_messages(logger: logging.Logger,
                                         caplog: pytest.LogCaptureFixture) -> None:
    limiter = RepeatLimiter(logger, 10.0, clock=Clock())
    assert limiter.log(logging.ERROR, "quantum:permit:a refused", key="same")
    assert not limiter.log(logging.ERROR, "quantum:permit:b refused", key="same")
    assert limiter.log(logging.ERROR, "quantum:permit:b refused", key="other")


def test_levels_are_separate_and_disabled_levels_cost_nothing(
        logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    limiter = RepeatLimiter(logger, 10.0, clock=Clock())
    assert limiter.log(logging.ERROR, "x")
    assert limiter.log(logging.WARNING, "x")
    logger.setLevel(logging.ERROR)
    assert not limiter.log(logging.INFO, "y")
    assert limiter._seen.keys() == {(logging.ERROR, "x"), (logging.WARNING, "x")}


def test_flush_writes_the_counts_left(logger: logging.Logger,
                                      caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = RepeatLimiter(logger, 10.0, clock=clock)
    for _ in range(4):
        limiter.log(logging.ERROR, "a")
    limiter.log(logging.ERROR, "b")
    clock.now += 2
    caplog.clear()
    limiter.flush()
    assert lines(caplog) == [("a (repeated 3 times in the last 2 s)", 3)]
    caplog.clear()
    limiter.flush()
    assert lines(caplog) == []


def test_memory_is_bounded(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    limiter = RepeatLimiter(logger, 10.0, max_keys=8, clock=Clock())
    for i in range(1000):
        limiter.log(logging.ERROR, "distinct %d", i)
    assert len(limiter._seen) == 8
    assert len(caplog.records) == 1000  # distinct messages are all written
