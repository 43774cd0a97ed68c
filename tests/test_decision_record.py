"""The durable decision record (SPEC 8): config_id, the configuration snapshot, and
config_id with every plugin field on the permit stream, decision and proposal entries.

The services run for real against a real redis-server (``real_redis``); the snapshot's
pure parts are tables."""

from __future__ import annotations

import hashlib

import pytest
from prometheus_client import CollectorRegistry

from governor_core import __version__
from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.service import AllocationService
from governor_core.config import EnvReader
from governor_core.governor.config import GovernorConfig
from governor_core.governor.gates import CORE_FIELDS
from governor_core.governor.service import GovernorService
from governor_core.plugins import build_plugin_host
from governor_core.snapshot import (
    ConfigSnapshot,
    cluster_map_value,
    config_id_of,
    host_snapshot,
    read_snapshot,
    setting_values,
    write_snapshot,
)

NOW = 1_800_000_000.0
PERMIT_STREAM = "quantum:stream:permit.issued"
DECISIONS = "quantum:stream:allocation.decision"
PROPOSED = "quantum:stream:allocation.target.proposed"
EFF_FIELDS = ("eff_score", "eff_confidence", "eff_stale", "eff_factor", "eff_action",
              "eff_reason", "downsize_factor", "extra_cooldown_sec")
SECRET = "hunter2-s3cr3t"


def governor_snapshot(env: dict[str, str]) -> ConfigSnapshot:
    config = GovernorConfig.from_env(EnvReader(env))
    plugins = build_plugin_host("governor", env, CollectorRegistry(),
                                disabled=config.common.disabled_plugins)
    return host_snapshot("governor", config, plugins)


# -- config_id: pure -----------------------------------------------------------------------

@pytest.mark.parametrize(("fields", "text"), [
    ({}, ""),
    ({"A": "1"}, "A=1\n"),
    ({"B": "2", "A": "1"}, "A=1\nB=2\n"),  # sorted: insertion order does not matter
    ({"P31_MIN_CONF": "0.65", "service": "governor"}, "P31_MIN_CONF=0.65\nservice=governor\n"),
    ({"X": "mäjörs-€"}, "X=mäjörs-€\n"),
])
def test_config_id_is_12_hex_of_the_sha256_of_sorted_lines(fields, text):
    assert config_id_of(fields) == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert len(config_id_of(fields)) == 12


def test_the_snapshot_holds_every_effective_setting_defaults_included():
    snapshot = governor_snapshot({"GOVERNOR_PERMIT_TTL_SEC": "90"})
    fields = snapshot.fields
    assert fields["GOVERNOR_PERMIT_TTL_SEC"] == "90"
    assert fields["GOVERNOR_BATCH_SIZE"] == "500"            # a core default
    assert fields["P31_DOWNSIZE_THRESHOLD"] == "0.45"       # the active plugin's default
    assert fields["P31_MAX_EXTRA_COOLDOWN_SEC"] == "120"
    assert fields["service"] == "governor" and fields["version"] == __version__
    assert fields["plugins"].startswith("p31_efficiency ")
    assert snapshot.key == f"quantum:config:snapshot:{snapshot.config_id}"


def test_secrets_and_the_process_name_are_not_part_of_the_snapshot():
    env = {"REDIS_URL": f"redis://admin:{SECRET}@10.0.0.1:6380/2", "GOVERNOR_CONSUMER": "g-1"}
    snapshot = governor_snapshot(env)
    text = repr(snapshot.fields)
    assert SECRET not in text and "10.0.0.1" not in text and "g-1" not in text
    assert not {"REDIS_URL", "GOVERNOR_CONSUMER"} & snapshot.fields.keys()
    # Another Redis, another consumer name: the same configuration.
    assert snapshot.config_id == governor_snapshot({"GOVERNOR_CONSUMER": "g-2"}).config_id


@pytest.mark.parametrize(("env", "same"), [
    ({}, True),
    ({"LOG_FORMAT": "json"}, True),                       # the default, spelled out
    ({"P31_DOWNSIZE_THRESHOLD": "0.45"}, True),
    ({"P31_DOWNSIZE_THRESHOLD": "0.5"}, False),           # a plugin setting
    ({"GOVERNOR_PERMIT_TTL_SEC": "61"}, False),            # a core setting
    ({"QUANTUM_DISABLE_PLUGINS": "p31_efficiency"}, False),  # another set of plugins
])
def test_config_id_changes_exactly_when_the_effective_configuration_does(env, same):
    assert (governor_snapshot(env).config_id == governor_snapshot({}).config_id) is same


def test_a_blocked_plugin_contributes_nothing():
    fields = governor_snapshot({"QUANTUM_DISABLE_PLUGINS": "p31_efficiency"}).fields
    assert not any(name.startswith("P31_") for name in fields)
    assert fields["plugins"] == ""


def test_setting_values_walk_nested_configs_and_format_exactly():
    config = AllocationConfig.from_env(EnvReader({"P29_MODE": "enforce"}))
    values = setting_values(config)
    assert values["P29_MODE"] == "enforce"
    assert values["P29_INTERVAL_SEC"] == "5.0"
    assert values["QUANTUM_DISABLE_PLUGINS"] == ""
    assert "MAX_SYMBOL_PCT" in values  # from the nested FormulaConfig
    assert "REDIS_URL" not in values


def test_a_cluster_map_file_is_recorded_by_content():
    assert cluster_map_value(None) == {"P29_CLUSTER_MAP_FILE": ""}
    one = cluster_map_value({"BTCUSDT": "majors", "ETHUSDT": "majors"})
    other = cluster_map_value({"BTCUSDT": "majors", "ETHUSDT": "alts"})
    assert one["P29_CLUSTER_MAP_FILE"].startswith("2 symbols, sha256 ")
    assert one != other


# -- the snapshot key -----------------------------------------------------------------------

@pytest.mark.redis
def test_a_snapshot_is_written_once_and_never_overwritten(real_redis):
    snapshot = ConfigSnapshot("0123456789ab", {"A": "1", "service": "governor"})
    assert write_snapshot(real_redis, snapshot, NOW) is True
    assert write_snapshot(real_redis, snapshot, NOW + 60) is False
    stored = read_snapshot(real_redis, "0123456789ab")
    assert stored == {"A": "1", "service": "governor", "config_id": "0123456789ab",
                      "created_ts": f"{NOW:.3f}"}
    assert real_redis.ttl(snapshot.key) == -1  # no TTL
    # A field deleted by hand is completed; the others keep their first values.
    real_redis.hdel(snapshot.key, "A")
    assert write_snapshot(real_redis, snapshot, NOW + 120) is True
    assert read_snapshot(real_redis, "0123456789ab")["created_ts"] == f"{NOW:.3f}"
    assert read_snapshot(real_redis, "0123456789ab")["A"] == "1"
    assert read_snapshot(real_redis, "") == {}


# -- the governor: every permit stream entry is the whole record ----------------------------

def run_governor(client, env: dict[str, str]) -> GovernorService:
    env = {"GOVERNOR_CONSUMER": "rec", "GOVERNOR_BLOCK_MS": "1", **env}
    config = GovernorConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry,
                                disabled=config.common.disabled_plugins)
    service = GovernorService(config, client, plugins, registry, clock=lambda: NOW)
    service.prepare()
    while service.step() or service.step():
        pass
    return service


@pytest.mark.redis
def test_every_permit_stream_entry_carries_the_permit_and_config_id(real_redis):
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW)})
    real_redis.hset("quantum:capital:efficiency:ETHUSDT",
                    mapping={"efficiency_score": "0.3", "confidence": "0.9", "ts": str(NOW)})
    real_redis.hset("quantum:portfolio:budget:BTCUSDT", "budget_usd", "500")
    for n in range(120):  # over two write chunks, three symbols (one without efficiency)
        real_redis.xadd("quantum:stream:apply.plan", {
            "plan_id": f"rec-{n}", "symbol": ("BTCUSDT", "ETHUSDT", "SOLUSDT")[n % 3],
            "side": "BUY", "notional_usd": "750"})

    service = run_governor(real_redis, {"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"})

    config_id = service.config_snapshot.config_id
    entries = real_redis.xrange(PERMIT_STREAM)
    assert len(entries) == 120
    for _, fields in entries:
        permit = real_redis.hgetall(f"quantum:permit:{fields['plan_id']}")
        assert fields == permit  # the same fields, the same values
        assert list(fields) == [*CORE_FIELDS, *EFF_FIELDS, "config_id"]
        assert fields["config_id"] == config_id
    by_symbol = {fields["symbol"]: fields for _, fields in entries}
    assert by_symbol["BTCUSDT"]["eff_action"] == "DOWNSIZE"
    assert by_symbol["BTCUSDT"]["eff_factor"] == "0.4444"
    assert by_symbol["ETHUSDT"]["eff_factor"] == "0.6667"
    assert by_symbol["SOLUSDT"]["eff_reason"] == "missing_eff"
    snapshot = read_snapshot(real_redis, config_id)
    assert snapshot["P31_DOWNSIZE_THRESHOLD"] == "0.45"
    assert snapshot["service"] == "governor" and snapshot["config_id"] == config_id
    assert SECRET not in repr(snapshot)
    assert real_redis.ttl(f"quantum:config:snapshot:{config_id}") == -1


@pytest.mark.redis
def test_without_plugins_the_entry_is_the_core_fields_and_config_id(real_redis):
    real_redis.xadd("quantum:stream:apply.plan", {"plan_id": "bare", "symbol": "BTCUSDT",
                                                  "side": "SELL", "notional_usd": "10"})
    service = run_governor(real_redis, {"QUANTUM_DISABLE_PLUGINS": "p31_efficiency"})
    [(_, fields)] = real_redis.xrange(PERMIT_STREAM)
    assert list(fields) == [*CORE_FIELDS, "config_id"]
    assert fields["config_id"] == service.config_snapshot.config_id
    assert read_snapshot(real_redis, fields["config_id"])["plugins"] == ""


@pytest.mark.redis
def test_two_governors_with_one_configuration_write_one_snapshot(real_redis):
    first = run_governor(real_redis, {"GOVERNOR_CONSUMER": "a"})
    second = run_governor(real_redis, {"GOVERNOR_CONSUMER": "b"})
    assert first.config_snapshot.config_id == second.config_snapshot.config_id
    assert real_redis.keys("quantum:config:snapshot:*") == [first.config_snapshot.key]


# -- the allocation host: decision and proposal entries -------------------------------------

@pytest.mark.redis
def test_decision_and_proposal_entries_carry_the_allocation_config_id(real_redis):
    real_redis.hset("quantum:state:portfolio",
                    mapping={"equity_usd": 100_000, "drawdown": 0.07, "timestamp": NOW})
    real_redis.xadd("quantum:stream:regime.state", {"regime": "TREND", "ts": NOW})
    for symbol in ("BTCUSDT", "ETHUSDT"):
        real_redis.hset(f"quantum:portfolio:budget:{symbol}",
                        mapping={"budget_usd": 50_000, "timestamp": NOW})
        real_redis.hset("quantum:config:symbol.cluster", symbol, "majors")
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.9", "confidence": "0.9", "ts": str(NOW)})
    env = {"P31_MAX_MULT": "1.4"}
    config = AllocationConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("allocation", env, registry)
    service = AllocationService(config, real_redis, plugins, registry, clock=lambda: NOW)
    service.prepare()
    assert service.step() is not None

    config_id = service.config_snapshot.config_id
    decisions = [fields for _, fields in real_redis.xrange(DECISIONS)]
    proposals = [fields for _, fields in real_redis.xrange(PROPOSED)]
    assert len(decisions) == 2 and len(proposals) == 2
    assert {fields["config_id"] for fields in decisions + proposals} == {config_id}
    assert real_redis.hget("quantum:allocation:target:proposed:BTCUSDT",
                           "config_id") == config_id
    snapshot = read_snapshot(real_redis, config_id)
    assert snapshot["service"] == "allocation"
    assert snapshot["P29_MODE"] == "shadow"
    assert snapshot["P31_MAX_MULT"] == "1.4"  # p29_shadow's settings are the host's record
    assert snapshot["P29_CLUSTER_MAP_FILE"] == ""
    assert "p29_shadow" in snapshot["plugins"]
    # One id per host: the governor's configuration is another snapshot.
    assert config_id != governor_snapshot({}).config_id


# -- the encoding: layouts once, value sets once, kept between batches ----------------------

def test_the_issue_call_sends_names_once_per_layout_and_values_once_per_set():
    """The writer's spliced call is what hiredis packs from the script header's ARGV
    layout: one layout for two value sets of the same names, one for another plugin's."""
    import hiredis

    from governor_core.governor.drafting import PermitDraft
    from governor_core.governor.extensions import NO_FIELDS, PluginFields
    from governor_core.governor.writer import PermitWriter
    from governor_core.plans import Plan
    from governor_core.scripts import SCRIPTS
    from governor_core.wire import bulk

    config = GovernorConfig.from_env(EnvReader({"GOVERNOR_CONSUMER": "c"}))
    low = PluginFields(("eff_factor", "eff_reason"), bulk("0.4444") + bulk("ok"), ())
    high = PluginFields(("eff_factor", "eff_reason"), bulk("1.0000") + bulk("é ok"), ())
    other = PluginFields(("x",), bulk("1"), ())
    drafts = []
    for number, extra in enumerate((low, NO_FIELDS, high, low, other)):
        plan = Plan(f"{number}-0", f"plan-{number}", "BTCUSDT", "BUY", 10.0, None)
        permit = {name: f"{name[:3]}-{number}" for name in CORE_FIELDS}
        drafts.append(PermitDraft(plan, permit, extra))
    expected = ("EVALSHA", SCRIPTS["issue_permits"].sha, "7",
                PERMIT_STREAM, "quantum:stream:apply.plan",
                *(f"quantum:permit:plan-{number}" for number in range(5)),
                config.group, str(config.permit_ttl_sec), str(config.stream_maxlen),
                "0123456789ab", str(len(CORE_FIELDS)), *CORE_FIELDS,
                "2", "2", "eff_factor", "eff_reason", "1", "x",  # layouts
                "3", "1", "0.4444", "ok", "1", "1.0000", "é ok", "2", "1",  # value sets
                *[arg for draft, index in zip(drafts, "10213", strict=True)
                  for arg in (draft.plan.entry_id, index, *draft.permit.values())])
    packed = PermitWriter(config, "0123456789ab").issue(drafts)
    assert packed.wire == hiredis.pack_command(expected)
    assert packed.commands() == [expected]


def test_a_returned_mapping_is_checked_and_encoded_once_across_batches(monkeypatch):
    """At 1,000 symbols a batch names ~400 of them: checking each batch's mappings anew was
    a quarter of the governor's Python time. The same mapping object gives the same
    encoded fields in the next batch, without a second check."""
    from prometheus_client import Counter

    from governor_core import hookimpl
    from governor_core.governor import extensions
    from governor_core.governor.extensions import PermitExtensions
    from governor_core.hookspecs import SymbolFields
    from governor_core.plans import Plan

    fields = {symbol: {"eff_factor": f"0.{n}"} for n, symbol in enumerate(("AAUSDT", "BBUSDT"))}

    class Hinter:
        @hookimpl
        def permit_fields(self):
            return ("eff_factor",)

        @hookimpl
        def on_permit_batch(self, plans):
            return SymbolFields({plan.symbol: fields[plan.symbol] for plan in plans})

    registry = CollectorRegistry()
    host = build_plugin_host("governor", {}, registry, load_entrypoints=False,
                             extra_plugins=[("hinter", Hinter())])
    owner = PermitExtensions(host, Counter("refused", "r", ["plugin"], registry=registry))
    checks = []
    real_check = extensions.refused_fields
    monkeypatch.setattr(extensions, "refused_fields",
                        lambda *args: checks.append(args) or real_check(*args))
    plans = [Plan(f"{n}-0", f"p{n}", symbol, "BUY", 1.0, None)
             for n, symbol in enumerate(("AAUSDT", "BBUSDT", "AAUSDT"))]
    first = [owner.begin(plans, None, NOW).extend(plan, {}) for plan in plans]
    second = [owner.begin(plans, None, NOW).extend(plan, {}) for plan in plans]
    assert len(checks) == 2  # one per distinct mapping, not per batch
    assert [a is b for a, b in zip(first, second, strict=True)] == [True] * 3
    assert first[0] is first[2] and first[0].names == ("eff_factor",)
    assert first[0].values == "$3\r\n0.0\r\n"


@pytest.mark.redis
def test_an_unwritable_snapshot_is_logged_and_the_governor_runs_on(real_redis, caplog):
    snapshot = governor_snapshot({"GOVERNOR_BLOCK_MS": "1"})  # as run_governor configures
    real_redis.set(snapshot.key, "not a hash")
    real_redis.xadd("quantum:stream:apply.plan", {"plan_id": "on", "symbol": "BTCUSDT",
                                                  "side": "BUY", "notional_usd": "10"})
    with caplog.at_level("ERROR", logger="quantum.snapshot"):
        service = run_governor(real_redis, {})
    assert service.config_snapshot.config_id == snapshot.config_id
    assert f"configuration snapshot {snapshot.key} not written" in caplog.text
    [(_, fields)] = real_redis.xrange(PERMIT_STREAM)
    assert fields["config_id"] == snapshot.config_id
    assert read_snapshot(real_redis, snapshot.config_id) == {}  # explain: "missing"


def test_a_plugin_idle_on_this_host_is_not_in_its_snapshot():
    """One process configuring both hosts (the demo) leaves p31_efficiency configured
    while the allocation host is built: it implements no allocation hook, so the
    allocation snapshot leaves it out (and the governor's leaves p29_shadow out)."""
    env: dict[str, str] = {}
    governor_plugins = build_plugin_host("governor", env, CollectorRegistry())
    allocation_plugins = build_plugin_host("allocation", env, CollectorRegistry())
    allocation = host_snapshot("allocation", AllocationConfig.from_env(EnvReader(env)),
                               allocation_plugins)
    governor = host_snapshot("governor", GovernorConfig.from_env(EnvReader(env)),
                             governor_plugins)
    assert "P31_DOWNSIZE_THRESHOLD" not in allocation.fields
    assert allocation.fields["plugins"].startswith("p29_shadow ")
    assert "P31_MIN_MULT" not in governor.fields
    assert governor.fields["plugins"].startswith("p31_efficiency ")


@pytest.mark.redis
def test_a_plugin_cannot_write_config_id(real_redis):
    from governor_core import hookimpl

    class Impostor:
        @hookimpl
        def permit_fields(self):
            return ("config_id", "note")

        @hookimpl
        def on_issue_permit(self):
            return {"config_id": "forged", "note": "kept"}

    env = {"GOVERNOR_CONSUMER": "rec", "GOVERNOR_BLOCK_MS": "1"}
    config = GovernorConfig.from_env(EnvReader(env))
    registry = CollectorRegistry()
    plugins = build_plugin_host("governor", env, registry, load_entrypoints=False,
                                extra_plugins=[("impostor", Impostor())])
    service = GovernorService(config, real_redis, plugins, registry, clock=lambda: NOW)
    service.prepare()
    real_redis.xadd("quantum:stream:apply.plan", {"plan_id": "imp", "symbol": "BTCUSDT",
                                                  "side": "BUY", "notional_usd": "10"})
    while service.step() or service.step():
        pass
    [(_, fields)] = real_redis.xrange(PERMIT_STREAM)
    assert list(fields)[-2:] == ["note", "config_id"]
    assert fields["config_id"] == service.config_snapshot.config_id
    assert registry.get_sample_value("governor_plugin_fields_refused_total",
                                     {"plugin": "impostor"}) == 1
