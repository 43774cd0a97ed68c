"""One bad byte never stops trading (issue 14, item 1): bytes that are not UTF-8 in any key
the services read are an input error with its reason, never an exception.

The services' client is :func:`governor_core.redis_io.connect` (``surrogateescape``); the
bytes are written by a raw (undecoded) client. Real-redis tests drive the real services;
the hypothesis tests over ``bytes`` run every input key through the same read path on a
real server (one flush per example), with an oracle written from the documented rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.ops import clear_live_targets
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.efficiency import EfficiencyReader
from governor_core.governor.config import GovernorConfig
from governor_core.governor.inputs import gate_commands, judge_gates
from governor_core.governor.service import GovernorService
from governor_core.ledger import format_entries
from governor_core.plans import Plan, parse_plan
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect, execute_commands
from governor_core.redis_settings import RedisSettings
from governor_core.testing import RedisServer

pytestmark = pytest.mark.redis

NOW = 1_700_000_000.0
PLANS = "quantum:stream:apply.plan"
DEAD = "quantum:stream:apply.plan.dead"
DECISIONS = "quantum:stream:allocation.decision"
PROPOSED = "quantum:stream:allocation.target.proposed"
BAD = b"\xff"  # never valid in UTF-8


@pytest.fixture
def clients(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, redis.Redis]]:
    """The production client and a raw one that writes bytes, on a flushed server."""
    raw = redis.Redis(port=redis_server.port)
    raw.flushall()
    prod = connect(RedisSettings.from_url(redis_server.url))
    yield prod, raw
    prod.close()
    raw.close()


def governor(client: redis.Redis, env: dict[str, str] | None = None) -> GovernorService:
    env = {"GOVERNOR_CONSUMER": "bytes-1", "GOVERNOR_BLOCK_MS": "1", **(env or {})}
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry,
                                disabled=EnvReader(env).names("QUANTUM_DISABLE_PLUGINS"))
    service = GovernorService(GovernorConfig.from_env(EnvReader(env)), client, plugins,
                              registry, clock=lambda: NOW)
    service.ensure_group()
    service.registry_for_test = registry  # type: ignore[attr-defined]
    return service


def drain(service: GovernorService) -> int:
    seen = empty = 0
    for _ in range(100):
        count = service.step()
        seen += count
        empty = 0 if count else empty + 1
        if empty == 2:
            return seen
    raise AssertionError("the governor did not go idle")


def good_plan(raw: redis.Redis, number: int) -> None:
    raw.xadd(PLANS, {b"plan_id": f"good-{number}".encode(), b"symbol": b"BTCUSDT",
                     b"side": b"BUY", b"notional_usd": b"100", b"ts": str(NOW).encode()})


GOOD_FIELDS = {b"plan_id": b"p-1", b"symbol": b"BTCUSDT", b"side": b"BUY",
               b"notional_usd": b"100"}


@pytest.mark.parametrize(("poison", "named"), [
    ({**GOOD_FIELDS, b"plan_id": b"p" + BAD + b"1"}, "plan_id b'p\\xff1'"),
    ({**GOOD_FIELDS, b"sym" + BAD + b"bol": b"x"}, "field name b'sym\\xffbol'"),
    ({**GOOD_FIELDS, b"notional_usd": b"1" + BAD}, "notional_usd b'1\\xff'"),
    ({**GOOD_FIELDS, b"symbol": b"BTC\xc3\x28"}, "symbol b'BTC\\xc3('"),  # cut sequence
    ({**GOOD_FIELDS, b"note": b"\xed\xa0\x80"}, "note b'\\xed\\xa0\\x80'"),  # a surrogate
], ids=["plan_id", "field-name", "value", "truncated-sequence", "encoded-surrogate"])
def test_a_poison_plan_is_dead_lettered_and_the_plans_behind_it_get_permits(
        clients, poison: dict[bytes, bytes], named: str) -> None:
    prod, raw = clients
    poison_id = raw.xadd(PLANS, poison).decode()
    for number in range(20):
        good_plan(raw, number)
    service = governor(prod)
    assert drain(service) == 21

    assert len(prod.keys("quantum:permit:good-*")) == 20
    assert prod.xlen("quantum:stream:permit.issued") == 20
    assert prod.xpending(PLANS, "governor")["pending"] == 0
    ((_, dead),) = raw.xrange(DEAD)
    fields = {name.decode(): value.decode() for name, value in dead.items()}  # all UTF-8
    assert fields["error_code"] == "bad_encoding" and fields["source_id"] == poison_id
    assert named in fields["error"] and "not valid UTF-8" in fields["error"]
    # the original fields, each bad byte written as \xNN: readable, and the bytes recoverable
    for name, value in poison.items():
        shown_name = name.decode("utf-8", "backslashreplace")
        assert fields[shown_name] == value.decode("utf-8", "backslashreplace")
    registry = service.registry_for_test  # type: ignore[attr-defined]
    assert registry.get_sample_value("governor_dead_letters_total",
                                     {"reason": "bad_encoding"}) == 1


def test_a_1mb_field_is_kept_whole_but_echoed_bounded(clients, caplog) -> None:
    prod, raw = clients
    huge = b"9" * 1_000_000
    raw.xadd(PLANS, {**GOOD_FIELDS, b"notional_usd": huge})
    raw.xadd(PLANS, {**GOOD_FIELDS, b"plan_id": b"p-2", b"note": BAD * 1_000_000})
    with caplog.at_level(logging.INFO, logger="quantum"):
        assert drain(governor(prod)) == 2
    (_, first), (_, second) = prod.xrange(DEAD)
    assert first["error_code"] == "bad_notional" and first["notional_usd"] == huge.decode()
    assert len(first["error"]) < 300 and "(1000000 bytes)" in first["error"]
    assert second["error_code"] == "bad_encoding" and len(second["error"]) < 400
    assert second["note"] == "\\xff" * 1_000_000  # kept whole, escaped
    assert caplog.records and max(len(record.getMessage()) for record in caplog.records) < 500


def test_bad_bytes_in_the_governors_other_inputs(clients, caplog) -> None:
    """Caps fall back to the next source, efficiency is invalid_eff, a kill key is ON."""
    prod, raw = clients
    stamp = str(NOW).encode()
    raw.hset(b"quantum:allocation:target:AAAUSDT", b"target_usd", b"5" + BAD)
    raw.hset(b"quantum:portfolio:budget:AAAUSDT", mapping={b"budget_usd": b"70",
                                                           b"timestamp": stamp})
    raw.hset(b"quantum:portfolio:budget:BBBUSDT", mapping={b"budget_usd": BAD,
                                                           b"timestamp": stamp})
    raw.hset(b"quantum:capital:efficiency:AAAUSDT",
             mapping={b"efficiency_score": b"0.2" + BAD, b"confidence": b"0.9", b"ts": stamp})
    raw.hset(b"quantum:capital:efficiency:BBBUSDT",
             mapping={b"efficiency_sc" + BAD: b"0.2", b"confidence": b"0.9", b"ts": stamp})
    for symbol in (b"AAAUSDT", b"BBBUSDT"):
        raw.xadd(PLANS, {**GOOD_FIELDS, b"plan_id": b"cap-" + symbol, b"symbol": symbol})
    service = governor(prod)
    assert drain(service) == 2
    first = prod.hgetall("quantum:permit:cap-AAAUSDT")
    assert (first["cap_source"], first["cap_usd"], first["decision"]) == ("budget", "70",
                                                                           "CLAMP")
    second = prod.hgetall("quantum:permit:cap-BBBUSDT")
    assert (second["cap_source"], second["decision"]) == ("none", "ALLOW")
    assert first["eff_reason"] == second["eff_reason"] == "invalid_eff"

    raw.set(b"quantum:governor:kill", b"1" + BAD)
    raw.xadd(PLANS, {**GOOD_FIELDS, b"plan_id": b"killed"})
    with caplog.at_level(logging.ERROR, logger="quantum.governor"):
        assert drain(service) == 1
    killed = prod.hgetall("quantum:permit:killed")
    assert (killed["decision"], killed["reason"]) == ("DENY", "kill_switch")
    assert "b'1\\xff'" in caplog.text and "treating it as ON" in caplog.text


def seed_allocation(raw: redis.Redis) -> None:
    stamp = str(NOW).encode()
    raw.hset(b"quantum:state:portfolio", mapping={b"equity_usd": b"100000",
                                                  b"drawdown": b"0.02", b"timestamp": stamp})
    raw.xadd(b"quantum:stream:regime.state", {b"regime": b"TREND", b"ts": stamp})
    raw.hset(b"quantum:cluster:stress:majors", mapping={b"stress": b"0.2", b"alpha": b"0.5",
                                                        b"timestamp": stamp})
    for symbol in (b"BTCUSDT", b"ETHUSDT", b"SOLUSDT"):
        raw.hset(b"quantum:portfolio:budget:" + symbol,
                 mapping={b"budget_usd": b"10000", b"timestamp": stamp})
        raw.hset(b"quantum:config:symbol.cluster", symbol, b"majors")
        raw.hset(b"quantum:capital:efficiency:" + symbol,
                 mapping={b"efficiency_score": b"0.8", b"confidence": b"0.9", b"ts": stamp})


def allocation(client: redis.Redis) -> tuple[AllocationService, CollectorRegistry]:
    env = {"P29_STREAM_MAXLEN": "100", "P29_MODE": "enforce"}
    registry = CollectorRegistry()
    config = AllocationConfig.from_env(EnvReader(env))
    host = build_plugin_host("allocation", env, registry,
                             disabled=config.common.disabled_plugins, load_entrypoints=True)
    return AllocationService(config, client, host, registry, clock=lambda: NOW), registry


def test_an_allocation_tick_with_bad_bytes_in_every_input_falls_back(clients) -> None:
    prod, raw = clients
    seed_allocation(raw)
    raw.hset(b"quantum:portfolio:budget:ETHUSDT", b"budget_usd", b"10" + BAD)  # skipped
    raw.hset(b"quantum:portfolio:budget:B" + BAD + b"USDT",
             mapping={b"budget_usd": b"1", b"timestamp": str(NOW).encode()})  # not a symbol
    raw.hset(b"quantum:config:symbol.cluster", b"SOLUSDT", b"maj" + BAD)  # unmapped
    raw.hset(b"quantum:cluster:stress:majors", b"stress", b"0." + BAD)  # falls back
    raw.xadd(b"quantum:stream:regime.state", {b"regime": b"TR" + BAD,
                                              b"ts": str(NOW).encode()})
    raw.hset(b"quantum:capital:efficiency:BTCUSDT", b"ts", b"\xd9\xa1" + BAD)  # ١ + bad
    service, registry = allocation(prod)
    tick = service.step()
    assert tick is not None
    targets = {target.symbol: target for target in tick.targets}
    assert sorted(targets) == ["BTCUSDT", "SOLUSDT"]
    assert targets["SOLUSDT"].cluster_id == "SOLUSDT"
    assert targets["BTCUSDT"].regime_factor == 1.0 and targets["BTCUSDT"].cluster_factor == 1.0
    for source in ("budget", "regime", "cluster_stress"):
        assert registry.get_sample_value("p29_stale_fallback_total",
                                         {"data_source": source}) >= 1, source
    reasons = {fields["symbol"]: fields["reason"] for _, fields in prod.xrange(PROPOSED)}
    assert reasons == {"BTCUSDT": "invalid_eff", "SOLUSDT": "ok"}
    assert {fields["symbol"] for _, fields in prod.xrange(DECISIONS)} == set(targets)

    raw.hset(b"quantum:state:portfolio", b"equity_usd", b"1" + BAD)
    assert service.step() is None  # a malformed portfolio skips the cycle
    assert registry.get_sample_value("p29_stale_fallback_total",
                                     {"data_source": "portfolio"}) == 1


# -- hypothesis over bytes, every input key, through the production read path -----------

_BYTES = st.one_of(st.binary(max_size=12),
                   st.sampled_from([b"1", b" 0.5 ", b"\xff", b"0.5\xff", b"\xd9\xa1",
                                    b"\xef\xbc\x91", b"on", b"TRUE", b"1e3", b"\xc2\xa01"]))
_FUZZ = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


def _text(value: bytes) -> str | None:
    """The documented reading of a stored value: UTF-8 text, or None (a bad byte)."""
    try:
        return value.decode()
    except UnicodeDecodeError:
        return None


def _number(value: bytes | None) -> float | None:
    """The number rule, from the spec's words: ASCII digits, one dot at most, a leading +,
    surrounding ASCII whitespace ignored in a hash, finite."""
    text = None if value is None else _text(value)
    if text is None:
        return None
    text = text.strip(" \t\n\r\x0b\x0c").removeprefix("+")
    digits = text.replace(".", "", 1)
    if not digits or not all("0" <= char <= "9" for char in digits) or text.count(".") > 1:
        return None
    number = float(text)
    return number if number != float("inf") else None


@_FUZZ
@given(kill=st.one_of(st.none(), _BYTES), target=st.one_of(st.none(), _BYTES),
       budget=st.one_of(st.none(), _BYTES))
def test_governor_gate_inputs_from_any_bytes(clients, kill, target, budget) -> None:
    prod, raw = clients
    raw.flushall()
    if kill is not None:
        raw.set(b"quantum:governor:kill", kill)
    if target is not None:
        raw.hset(b"quantum:allocation:target:BTCUSDT", b"target_usd", target)
    if budget is not None:
        raw.hset(b"quantum:portfolio:budget:BTCUSDT", b"budget_usd", budget)
    gates = judge_gates(["BTCUSDT"], execute_commands(prod, gate_commands(["BTCUSDT"])))
    text = None if kill is None else _text(kill)
    trimmed = None if text is None else text.strip(" \t\n\r\x0b\x0c").lower()
    expected_kill = kill is not None and trimmed not in ("", "0", "false", "off", "no")
    assert gates.kill_switch is expected_kill
    cap = gates.caps["BTCUSDT"]
    if (value := _number(target)) is not None:
        assert (cap.source, cap.usd) == ("allocation", value)
    elif (value := _number(budget)) is not None:
        assert (cap.source, cap.usd) == ("budget", value)
    else:
        assert cap.source == "none"


@_FUZZ
@given(names=st.lists(st.one_of(st.sampled_from([b"plan_id", b"symbol", b"side",
                                                 b"notional_usd", b"ts"]), _BYTES),
                      min_size=1, max_size=6, unique=True),
       values=st.lists(_BYTES, min_size=6, max_size=6))
def test_plans_from_any_bytes(clients, names, values) -> None:
    prod, raw = clients
    raw.delete(PLANS)
    fields = dict(zip(names, values, strict=False))
    raw.xadd(PLANS, fields)
    ((entry_id, read),) = prod.xrange(PLANS)
    parsed = parse_plan(entry_id, read)
    undecodable = any(_text(part) is None for pair in fields.items() for part in pair)
    if undecodable:
        assert parsed.code == "bad_encoding"
    if not isinstance(parsed, Plan):
        # the dead letter's fields are always writable text (encode() raises otherwise),
        # one per original field, and the message is bounded
        assert [part.encode() for pair in parsed.fields.items() for part in pair]
        assert len(parsed.fields) == len(fields) and len(parsed.message) < 1000
    else:
        assert not undecodable


@_FUZZ
@given(score=st.one_of(st.none(), _BYTES), confidence=st.one_of(st.none(), _BYTES),
       ts=st.one_of(st.none(), _BYTES), name=st.one_of(st.none(), _BYTES))
def test_efficiency_from_any_bytes(clients, score, confidence, ts, name) -> None:
    prod, raw = clients
    raw.flushall()
    mapping = {key: value for key, value in ((b"efficiency_score", score),
                                             (b"confidence", confidence), (b"ts", ts),
                                             (name, b"0.5")) if key and value is not None}
    if mapping:
        raw.hset(b"quantum:capital:efficiency:BTCUSDT", mapping=mapping)
    (reading,) = EfficiencyReader(min_conf=0.65, stale_sec=600).read(prod, ["BTCUSDT"], NOW)
    texts = [mapping.get(key) for key in (b"efficiency_score", b"confidence", b"ts")]
    if all(text is None for text in texts):
        assert reading.reason == "missing_eff"
        return
    if any(text is not None and _text(text) is None for text in texts):
        assert reading.reason == "invalid_eff"
    score_value, conf_value, ts_value = map(_number, texts)
    usable = (score_value is not None and score_value <= 1 and ts_value is not None
              and (texts[1] is None or (conf_value is not None and conf_value <= 1))
              and ts_value <= NOW + 30)
    assert (reading.reason != "invalid_eff") is usable


@_FUZZ
@given(portfolio=st.one_of(st.none(), _BYTES), budget=_BYTES, budget_name=_BYTES,
       regime=_BYTES, cluster=_BYTES, stress=_BYTES, efficiency=_BYTES)
def test_allocation_tick_from_any_bytes(clients, portfolio, budget, budget_name, regime,
                                        cluster, stress, efficiency) -> None:
    """A tick with arbitrary bytes in every input key, on top of good data: it runs
    (p29_shadow included), and what it writes is the documented fallback of each."""
    prod, raw = clients
    raw.flushall()
    seed_allocation(raw)
    if portfolio is not None:
        raw.hset(b"quantum:state:portfolio", b"drawdown", portfolio)
    raw.hset(b"quantum:portfolio:budget:" + budget_name, b"budget_usd", b"5")
    raw.hset(b"quantum:portfolio:budget:ETHUSDT", b"budget_usd", budget)
    raw.xadd(b"quantum:stream:regime.state", {b"regime": regime, b"ts": str(NOW).encode()})
    raw.hset(b"quantum:config:symbol.cluster", b"SOLUSDT", cluster)
    raw.hset(b"quantum:cluster:stress:majors", b"stress", stress)
    raw.hset(b"quantum:capital:efficiency:BTCUSDT", b"efficiency_score", efficiency)
    service, _ = allocation(prod)
    tick = service.step()
    drawdown = _number(portfolio) if portfolio is not None else 0.02
    if drawdown is None or drawdown > 1:
        assert tick is None
        return
    assert tick is not None
    symbols = {target.symbol for target in tick.targets}
    assert "BTCUSDT" in symbols
    assert ("ETHUSDT" in symbols) is (_number(budget) is not None)
    for target in tick.targets:
        assert target.symbol.isascii() and target.cluster_id.encode()
    reasons = {fields["symbol"]: fields["reason"] for _, fields in prod.xrange(PROPOSED)}
    score = _number(efficiency)
    assert (reasons["BTCUSDT"] == "invalid_eff") is (score is None or score > 1)


def test_the_production_client_decodes_bad_bytes_under_hiredis(clients) -> None:
    """The decision is the Redis layer's: hiredis's parser honours ``surrogateescape`` in
    redis-py's own commands and in CommandStream's reads alike; the bytes come back."""
    prod, raw = clients
    assert redis.utils.HIREDIS_AVAILABLE
    raw.hset(b"h", b"f" + BAD, b"v" + BAD)
    raw.set(b"k" + BAD, b"1")
    assert prod.hgetall("h") == {"f\udcff": "v\udcff"}
    assert execute_commands(prod, [("HGETALL", "h"), ("KEYS", "k*")]) == [
        ["f\udcff", "v\udcff"], ["k\udcff"]]
    with pytest.raises(UnicodeEncodeError):
        prod.set("k", "\udcff")  # so whatever is written back is escaped where it is read
    assert "v\udcff".encode("utf-8", "surrogateescape") == b"v" + BAD


@pytest.mark.parametrize(("text", "escaped_text", "shown_text"), [
    ("p\udcff1", "p\\xff1", "b'p\\xff1'"),
    ("ok", "ok", "'ok'"),
    ("a\nb", "a\nb", "'a\\nb'"),
    ("9" * 100, "9" * 100, repr("9" * 64) + "…(100 bytes)"),
    ("\udcff" * 100, "\\xff" * 100, repr(b"\xff" * 64) + "…(100 bytes)"),
    ("é" * 65, "é" * 65, repr("é" * 64) + "…(130 bytes)"),
])
def test_escaped_and_shown(text, escaped_text, shown_text) -> None:
    from governor_core.parsing import escaped, shown

    assert escaped(text) == escaped_text and shown(text) == shown_text
    escaped_text.encode()


# -- names housekeeping and the operator commands handle ------------------------------


def test_an_idle_consumer_with_a_bad_byte_in_its_name_is_deleted(
        clients: tuple[redis.Redis, redis.Redis]) -> None:
    prod, raw = clients
    service = governor(prod, {"GOVERNOR_CONSUMER_IDLE_DELETE_SEC": "1"})
    raw.xreadgroup("governor", b"dead-" + BAD, {PLANS: ">"}, count=1)
    time.sleep(1.1)
    service.step()  # the first step runs the claim round and its housekeeping
    names = [c["name"] for c in raw.xinfo_consumers(PLANS, "governor")]
    assert b"dead-" + BAD not in names


def test_clear_targets_deletes_a_target_whose_name_has_a_bad_byte(
        clients: tuple[redis.Redis, redis.Redis]) -> None:
    prod, raw = clients
    raw.hset(b"quantum:allocation:target:BTC" + BAD, b"target_usd", b"1")
    raw.hset(b"quantum:allocation:target:ETHUSDT", b"target_usd", b"1")
    raw.hset(b"quantum:allocation:target:proposed:ETHUSDT", b"target_usd", b"1")
    assert clear_live_targets(prod) == 2
    assert raw.keys(b"quantum:allocation:target:*") == [
        b"quantum:allocation:target:proposed:ETHUSDT"]


@pytest.mark.parametrize("ts", ["1e400", "9" * 400, "x\udcff", "", "-5"])
def test_a_ledger_line_with_an_impossible_time_is_shown_as_written(ts: str) -> None:
    (line,) = format_entries([("1-0", {"ts": ts, "action": "kill", "who": "ops"})])
    assert "kill" in line and "ops" in line


def test_an_unreadable_cap_key_is_logged_once_a_minute(
        clients: tuple[redis.Redis, redis.Redis], caplog: pytest.LogCaptureFixture,
        redis_server: RedisServer) -> None:
    prod, raw = clients
    raw.set("quantum:portfolio:budget:ADAUSDT", "a string, not a hash")
    caplog.set_level(logging.WARNING, "quantum.governor")
    for _ in range(50):
        commands = gate_commands(["ADAUSDT"])
        judge_gates(["ADAUSDT"], execute_commands(prod, commands))
    lines = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
