"""Each efficiency hash is read at most once per ``P31_REREAD_SEC`` (plugin docstring):
a batch reads the due hashes, judges the others from the texts read last time at its own
clock (so staleness is on time), and a rewritten hash is seen once it is due."""

from __future__ import annotations

import fakeredis
import pytest
import redis
from p31_efficiency.plugin import EfficiencyPlugin
from prometheus_client import CollectorRegistry

from governor_core.hookspecs import Reads
from governor_core.plans import Plan
from governor_core.redis_io import execute_commands

T0 = 1_700_000_000.0


def plugin_with(env: dict[str, str]) -> EfficiencyPlugin:
    plugin = EfficiencyPlugin()
    plugin.on_configure(host="governor", env=env, registry=CollectorRegistry())
    return plugin


def score(client: fakeredis.FakeRedis, symbol: str, value: str, ts: float) -> None:
    client.hset(f"quantum:capital:efficiency:{symbol}",
                mapping={"efficiency_score": value, "confidence": "0.9", "ts": str(ts)})


def batch(plugin: EfficiencyPlugin, client: fakeredis.FakeRedis, symbols: list[str],
          now: float) -> tuple[list[str], dict[str, dict[str, str]]]:
    """One governor batch as the host runs it: read_commands, the reads in the host's
    round trip, on_permit_batch. Returns the symbols read and the fields per symbol."""
    asked = plugin.read_commands(host="governor", symbols=symbols, now=now) or []
    read = [command[1].rsplit(":", 1)[1] for command in asked]
    reads = Reads(tuple(symbols), execute_commands(client, asked)) if asked else None
    plans = [Plan(f"{i}-0", f"p{i}", s, "BUY", 10.0, None) for i, s in enumerate(symbols)]
    return read, plugin.on_permit_batch(plans=plans, redis=None, now=now, reads=reads)


@pytest.mark.parametrize(("reread", "later", "read_again", "seen"), [
    # (P31_REREAD_SEC, seconds after the first batch, hashes read, BTC's eff_score)
    ("1", 0.5, [], "0.2000"),                       # not due: last texts, no read
    ("1", 1.0, ["BTCUSDT", "ETHUSDT"], "0.9000"),   # due: read, the rewrite is seen
    ("0", 0.0, ["BTCUSDT", "ETHUSDT"], "0.9000"),   # 0: every batch reads
    ("5", 4.9, [], "0.2000"),
    ("1", -3.0, ["BTCUSDT", "ETHUSDT"], "0.9000"),  # the clock went back: read again
])
def test_hashes_are_read_again_once_due(reread: str, later: float, read_again: list[str],
                                        seen: str) -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    score(client, "BTCUSDT", "0.2", T0)
    score(client, "ETHUSDT", "0.5", T0)
    plugin = plugin_with({"P31_REREAD_SEC": reread})
    read, fields = batch(plugin, client, ["BTCUSDT", "ETHUSDT"], T0)
    assert read == ["BTCUSDT", "ETHUSDT"]
    assert (fields["BTCUSDT"]["eff_score"], fields["BTCUSDT"]["eff_action"]) == (
        "0.2000", "DOWNSIZE")
    score(client, "BTCUSDT", "0.9", T0)
    read, fields = batch(plugin, client, ["BTCUSDT", "ETHUSDT"], T0 + later)
    assert read == read_again
    assert fields["BTCUSDT"]["eff_score"] == seen


def test_only_the_due_symbols_are_read_and_staleness_is_judged_on_time() -> None:
    client = fakeredis.FakeRedis(decode_responses=True)
    score(client, "BTCUSDT", "0.2", T0 - 9.5)  # stale at T0 + 0.5 with a 10 s TTL
    plugin = plugin_with({"P31_REREAD_SEC": "1", "P31_EFF_TTL_SEC": "10"})
    read, fields = batch(plugin, client, ["BTCUSDT"], T0)
    assert (read, fields["BTCUSDT"]["eff_reason"]) == (["BTCUSDT"], "ok")
    score(client, "SOLUSDT", "0.3", T0)
    read, fields = batch(plugin, client, ["BTCUSDT", "SOLUSDT"], T0 + 0.6)
    assert read == ["SOLUSDT"]  # BTC was read 0.6 s ago
    assert fields["BTCUSDT"]["eff_reason"] == "stale_eff"  # its remembered ts, judged now
    assert fields["SOLUSDT"]["eff_reason"] == "ok"


def test_without_the_host_reads_the_plugin_reads_for_itself() -> None:
    """Reads the host dropped (reads=None although some were asked) are read by the plugin
    in its own round trip, and those symbols are due again at the next batch."""
    client = fakeredis.FakeRedis(decode_responses=True)
    score(client, "BTCUSDT", "0.2", T0)
    plugin = plugin_with({})
    assert plugin.read_commands(host="governor", symbols=["BTCUSDT"], now=T0)
    plans = [Plan("1-0", "p1", "BTCUSDT", "BUY", 10.0, None)]
    fields = plugin.on_permit_batch(plans=plans, redis=client, now=T0, reads=None)
    assert fields["BTCUSDT"]["eff_score"] == "0.2000"
    read, _ = batch(plugin, client, ["BTCUSDT"], T0 + 0.1)
    assert read == ["BTCUSDT"]


@pytest.mark.parametrize(("reply", "reason"), [
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong "
                                       "kind of value"), "invalid_eff"),
    (redis.exceptions.NoPermissionError(
        "this user has no permissions to access one of the keys"), "redis_error"),
    (redis.exceptions.OutOfMemoryError("command not allowed"), "redis_error"),
])
def test_a_refused_read_is_the_data_s_fault_only_for_wrongtype(reply: Exception,
                                                               reason: str) -> None:
    plugin = plugin_with({})
    plugin.read_commands(host="governor", symbols=["BTCUSDT"], now=T0)
    plans = [Plan("1-0", "p1", "BTCUSDT", "BUY", 10.0, None)]
    fields = plugin.on_permit_batch(plans=plans, redis=None, now=T0,
                                    reads=Reads(("BTCUSDT",), [reply]))
    assert fields["BTCUSDT"]["eff_reason"] == reason


def test_a_kept_verdict_turns_stale_on_time_and_a_future_ts_turns_fresh() -> None:
    """Verdicts of texts not read again are kept only while they hold
    (``steady_until``): with a 60 s re-read window, a reading turns stale the batch after
    its ``ts + P31_EFF_TTL_SEC``, and one 40 s ahead becomes fresh once it is 30 s ahead."""
    client = fakeredis.FakeRedis(decode_responses=True)
    score(client, "BTCUSDT", "0.2", T0 - 5.0)
    score(client, "ETHUSDT", "0.2", T0 + 40.0)
    plugin = plugin_with({"P31_REREAD_SEC": "60", "P31_EFF_TTL_SEC": "10"})
    reasons = []
    for later in (0.0, 4.9, 5.1, 9.9, 10.1):
        read, fields = batch(plugin, client, ["BTCUSDT", "ETHUSDT"], T0 + later)
        reasons.append((fields["BTCUSDT"]["eff_reason"], fields["ETHUSDT"]["eff_reason"]))
        assert read == ([] if later else ["BTCUSDT", "ETHUSDT"])
    assert reasons == [("ok", "invalid_eff"), ("ok", "invalid_eff"), ("stale_eff", "invalid_eff"),
                       ("stale_eff", "invalid_eff"), ("stale_eff", "ok")]
