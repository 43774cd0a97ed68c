"""The allocation benchmark's floor (``governor_core.testing.replay``) replays exactly one
tick: the same writes land again, in the same connections' order, and a refused command is
not mistaken for a fast one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.plugins import build_plugin_host
from governor_core.testing.replay import TickRecorder, replay, server_cpu_ms

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load_bench(name: str):
    """``bench/<name>.py`` as a module (a script, not on any import path)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_allocation = _load_bench("bench_allocation")
bench_governor = _load_bench("bench_governor")
START, populate = bench_allocation.START, bench_allocation.populate

pytestmark = pytest.mark.redis

DECISIONS = "quantum:stream:allocation.decision"
PROPOSALS = "quantum:stream:allocation.target.proposed"


def _state(client: redis.Redis) -> dict[str, object]:
    """Every key's content, stream entries without their ids (Redis assigns those)."""
    state: dict[str, object] = {}
    for key in sorted(client.keys("*")):
        kind = client.type(key)
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "stream":
            state[key] = [fields for _, fields in client.xrange(key)]
    return state


def test_replay_writes_what_the_tick_wrote(redis_server, real_redis) -> None:
    env = {"REDIS_URL": redis_server.url, "P29_MODE": "enforce", "STALE_DATA_SEC": "86400",
           "P31_STALE_SEC": "86400"}
    registry = CollectorRegistry()
    recorder = TickRecorder()
    service = AllocationService(AllocationConfig.from_env(EnvReader(env)),
                                recorder.client(redis_server.url),
                                build_plugin_host("allocation", env, registry), registry,
                                clock=lambda: START)
    populate(real_redis, 30, START)
    service.prepare()  # as the run loop does: the Lua scripts are loaded before a tick
    with recorder:
        tick = service.step()
    assert tick is not None and len(tick.targets) == 30
    after_tick = _state(real_redis)
    assert len(after_tick[DECISIONS]) == 30 and len(after_tick[PROPOSALS]) == 30

    # Undo the tick's writes; the replay must bring back exactly the same state.
    outputs = [key for key in after_tick if key.startswith("quantum:allocation:")]
    assert len(outputs) == 60  # 30 live targets (enforce) and 30 proposals
    real_redis.delete(DECISIONS, PROPOSALS, *outputs)
    sent = real_redis.info("stats")["total_commands_processed"]
    replay(recorder.events, "127.0.0.1", redis_server.port)
    replayed = real_redis.info("stats")["total_commands_processed"] - sent - 1  # - INFO
    # Every command of the tick and nothing else: the listing (EVALSHA and the KEYS inside
    # it, HGETALL portfolio, XREVRANGE regime, HGETALL cluster map, GET mode), the value
    # reads (budgets, stresses, efficiencies), decision + HSET + EXPIRE per target and
    # XADD + HSET + EXPIRE per proposal.
    assert replayed == 6 + (30 + 3 + 30) + 3 * 30 + 3 * 30
    assert _state(real_redis) == after_tick
    for key in outputs:
        assert real_redis.ttl(key) > 0


def test_governor_floor_replays_the_drain_it_recorded(redis_server, real_redis) -> None:
    """The governor's floor: a recorded drain's bytes, replayed on the same starting state,
    write exactly the permits the drain wrote (same fields, same stream entries)."""
    bench_governor.use_symbols(7)
    try:
        bench_governor.fresh_plans(redis_server, 230)
        recorder = TickRecorder()
        bench_governor.drain(redis_server, 230, frozenset(), recorder)
        after_drain = _state(real_redis)
        permits = [key for key in after_drain if key.startswith("quantum:permit:")]
        assert len(permits) == 230
        assert any("eff_action" in after_drain[key] for key in permits)  # p31 is active
        assert any(kind == "read" for kind, _, _ in recorder.events)
        bench_governor.fresh_plans(redis_server, 230)
        assert not real_redis.keys("quantum:permit:*")
        replay(recorder.events, "127.0.0.1", redis_server.port)
        written = ("quantum:permit:", "quantum:stream:permit.issued")
        after_replay = _state(real_redis)
        assert ({key: value for key, value in after_replay.items() if key.startswith(written)}
                == {key: value for key, value in after_drain.items()
                    if key.startswith(written)})
        pending = real_redis.xpending("quantum:stream:apply.plan", "governor")
        assert pending["pending"] == 0
    finally:
        bench_governor.use_symbols(50)


def test_replay_raises_on_a_refused_command(redis_server, real_redis) -> None:
    real_redis.set("plain", "x")
    events = [("send", 1, b"*2\r\n$7\r\nHGETALL\r\n$5\r\nplain\r\n"), ("read", 1, 1)]
    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        replay(events, "127.0.0.1", redis_server.port)


def test_server_cpu_ms_grows_with_work(redis_server, real_redis) -> None:
    pid = redis_server.process.pid
    before = server_cpu_ms(pid)
    pipe = real_redis.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"k{i}", i)
    pipe.execute()
    assert server_cpu_ms(pid) > before
