"""The plugin factory and isolation: a fresh PluginManager per test, inline plugins."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from prometheus_client import CollectorRegistry

from governor_core import hookimpl
from governor_core.config import ConfigError
from governor_core.hookspecs import SymbolFields
from governor_core.plans import Plan
from governor_core.plugins import HOOK_NAMES, build_plugin_host

NOW = 1_700_000_000.0
PLAN = Plan("1-0", "p-1", "BTCUSDT", "BUY", 100.0, None)


class Tagger:
    """A well-behaved plugin: one declared field, one batch read."""

    def __init__(self, field: str = "tag", value: str = "x") -> None:
        self.field, self.value = field, value
        self.configured_for: list[str] = []

    @hookimpl
    def on_configure(self, host: str) -> None:  # takes only the argument it needs
        self.configured_for.append(host)

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return (self.field,)

    @hookimpl
    def on_permit_batch(self, plans: Sequence[Plan]) -> int:
        return len(plans)

    @hookimpl
    def on_issue_permit(self, plan: Plan, batch: int) -> Mapping[str, str]:
        return {self.field: f"{self.value}:{plan.plan_id}:{batch}"}


class Raising:
    """Raises in exactly one hook; behaves otherwise."""

    def __init__(self, hook: str) -> None:
        self.hook = hook

    def _maybe(self, hook: str) -> None:
        if hook == self.hook:
            raise RuntimeError(f"boom in {hook}")

    @hookimpl
    def on_configure(self) -> None:
        self._maybe("on_configure")

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        self._maybe("permit_fields")
        return ("raising_field",)

    @hookimpl
    def read_commands(self) -> None:
        self._maybe("read_commands")

    @hookimpl
    def on_permit_batch(self) -> str:
        self._maybe("on_permit_batch")
        return "ctx"

    @hookimpl
    def on_issue_permit(self) -> Mapping[str, str]:
        self._maybe("on_issue_permit")
        return {"raising_field": "ok"}


def host(*plugins: tuple[str, object], disabled: Sequence[str] = (),
         env: Mapping[str, str] | None = None):
    registry = CollectorRegistry()
    return build_plugin_host("governor", env or {}, registry, disabled=disabled,
                             load_entrypoints=False, extra_plugins=list(plugins)), registry


def errors(registry: CollectorRegistry, plugin: str, hook: str) -> float:
    return registry.get_sample_value("governor_plugin_errors_total",
                                     {"plugin": plugin, "hook": hook}) or 0.0


def status(plugin_host: Any, name: str):
    return next(s for s in plugin_host.statuses if s.name == name)


class Wrapping:
    """A hook wrapper: the host calls each implementation on its own, so it refuses one."""

    def __init__(self, option: str) -> None:
        self.option = option

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return ("wrapped",)


def wrapper_plugin(option: str) -> object:
    class Plugin(Wrapping):
        @hookimpl(**{option: True})
        def on_issue_permit(self, plan: Plan) -> Any:
            return (yield)

    return Plugin(option)


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_hook_wrappers_are_refused_at_registration(option: str) -> None:
    plugin_host, registry = host(("wrapping", wrapper_plugin(option)), ("kept", Tagger()))
    record = status(plugin_host, "wrapping")
    assert record.state == "disabled"
    assert "on_issue_permit" in record.why and "hook wrappers are not supported" in record.why
    assert errors(registry, "wrapping", "load") == 1
    assert plugin_host.implementers("on_issue_permit") == ["kept"]
    assert "wrapping" not in plugin_host.declared_fields


def test_fresh_host_configures_and_declares() -> None:
    tagger = Tagger()
    plugin_host, _ = host(("tagger", tagger))
    assert tagger.configured_for == ["governor"]
    assert plugin_host.active == ["tagger"]
    assert plugin_host.declared_fields == {"tagger": ("tag",)}
    assert status(plugin_host, "tagger").hooks == ("on_configure", "on_issue_permit",
                                                    "on_permit_batch", "permit_fields")


def test_disabled_plugin_is_blocked_and_never_configured() -> None:
    blocked, kept = Tagger(), Tagger("other")
    plugin_host, _ = host(("blocked", blocked), ("kept", kept), disabled=["blocked"])
    assert blocked.configured_for == []
    assert kept.configured_for == ["governor"]
    assert plugin_host.active == ["kept"]
    record = status(plugin_host, "blocked")
    assert (record.state, record.why) == ("blocked", "named in QUANTUM_DISABLE_PLUGINS")
    assert plugin_host.implementers("on_issue_permit") == ["kept"]


@pytest.fixture
def recorder_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed-looking distribution whose entry point records its own import."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "qg_recorder_plugin.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("imported")
        from governor_core import hookimpl

        class Recorder:
            @hookimpl
            def permit_fields(self):
                return ("recorded",)

        plugin = Recorder()
    """))
    dist = tmp_path / "qg_recorder-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qg-recorder\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[quantum_governor]\nqg_recorder = qg_recorder_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "qg_recorder_plugin", raising=False)
    return marker


def test_blocked_entry_point_is_never_imported(recorder_dist: Path) -> None:
    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", {}, registry, disabled=["qg_recorder"])
    record = status(plugin_host, "qg_recorder")
    assert (record.state, record.distribution, record.version) == ("blocked", "qg-recorder",
                                                                    "0.1")
    assert not recorder_dist.exists()
    assert "qg_recorder_plugin" not in sys.modules


def test_unblocked_entry_point_is_imported(recorder_dist: Path) -> None:
    plugin_host = build_plugin_host("governor", {}, CollectorRegistry())
    assert recorder_dist.read_text() == "imported"
    assert status(plugin_host, "qg_recorder").state == "active"
    assert plugin_host.declared_fields["qg_recorder"] == ("recorded",)


def test_entry_point_that_fails_to_import_is_disabled(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "qg_broken_plugin.py").write_text("raise ImportError('missing dependency')\n")
    dist = tmp_path / "qg_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qg-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[quantum_governor]\nqg_broken = qg_broken_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", {}, registry)
    record = status(plugin_host, "qg_broken")
    assert record.state == "disabled"
    assert "missing dependency" in record.why
    assert errors(registry, "qg_broken", "load") == 1
    assert "p31_efficiency" in plugin_host.active  # the others load on


class ConfigCheck:
    @hookimpl
    def on_configure(self, env: Mapping[str, str]) -> None:
        if env.get("MY_LIMIT") == "bad":
            raise ConfigError("MY_LIMIT", "bad", "a number")

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return ("limit",)

    @hookimpl
    def on_issue_permit(self) -> Mapping[str, str]:
        return {"limit": "1"}


def test_invalid_plugin_configuration_disables_it(caplog: pytest.LogCaptureFixture) -> None:
    tagger = Tagger()
    with caplog.at_level(logging.ERROR, logger="quantum.plugins"):
        plugin_host, registry = host(("limits", ConfigCheck()), ("tagger", tagger),
                                     env={"MY_LIMIT": "bad"})
    record = status(plugin_host, "limits")
    assert record.state == "disabled"
    assert "MY_LIMIT='bad' is invalid" in record.why
    assert errors(registry, "limits", "on_configure") == 1
    assert plugin_host.active == ["tagger"]
    assert "limits" not in plugin_host.declared_fields
    assert "limits" not in plugin_host.implementers("on_issue_permit")
    assert any("limits" in r.getMessage() and "MY_LIMIT" in r.getMessage()
               for r in caplog.records)


class UnknownHook:
    @hookimpl
    def on_permit(self) -> None:  # a typo of on_issue_permit
        pass


def test_unknown_hook_name_disables_the_plugin() -> None:
    plugin_host, registry = host(("typo", UnknownHook()), ("tagger", Tagger()))
    record = status(plugin_host, "typo")
    assert record.state == "disabled"
    assert "on_permit" in record.why and "on_issue_permit" in record.why
    assert errors(registry, "typo", "load") == 1
    assert plugin_host.active == ["tagger"]


class BadArgument:
    @hookimpl
    def on_issue_permit(self, plan: Plan, no_such_argument: str) -> None:
        pass


def test_hookimpl_with_unknown_argument_is_disabled() -> None:
    plugin_host, _ = host(("badarg", BadArgument()))
    record = status(plugin_host, "badarg")
    assert record.state == "disabled"
    assert "no_such_argument" in record.why


def test_known_hook_names_match_the_specs() -> None:
    from governor_core import hookspecs

    assert set(HOOK_NAMES) == {name for name in dir(hookspecs) if name.startswith("on_")
                               or name in ("permit_fields", "read_commands")}


# -- isolation inside the governor loop (real redis-server) ------------------------------

def run_governor(real_redis, *plugins: tuple[str, object], n_plans: int = 3,
                 symbols: Sequence[str] = ("BTCUSDT",)):
    from governor_core.config import EnvReader
    from governor_core.governor.config import GovernorConfig
    from governor_core.governor.service import GovernorService

    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", {}, registry, load_entrypoints=False,
                                    extra_plugins=list(plugins))
    config = GovernorConfig.from_env(EnvReader({"GOVERNOR_CONSUMER": "t",
                                                "GOVERNOR_BLOCK_MS": "1"}))
    service = GovernorService(config, real_redis, plugin_host, registry, clock=lambda: NOW)
    service.ensure_group()
    for i in range(n_plans):
        real_redis.xadd("quantum:stream:apply.plan",
                        {"plan_id": f"p{i}", "symbol": symbols[i % len(symbols)],
                         "side": "BUY",
                         "notional_usd": "100"})
    while service.step() or service.step():
        pass
    permits = [real_redis.hgetall(f"quantum:permit:p{i}") for i in range(n_plans)]
    return permits, registry


@pytest.mark.redis
@pytest.mark.parametrize("hook", ["on_configure", "permit_fields", "read_commands",
                                  "on_permit_batch", "on_issue_permit"])
def test_raising_plugin_is_isolated(real_redis, hook: str,
                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="quantum"):
        permits, registry = run_governor(real_redis, ("raising", Raising(hook)),
                                         ("tagger", Tagger()))
    for i, permit in enumerate(permits):
        assert permit["decision"] == "ALLOW"
        assert permit["tag"] == f"x:p{i}:3"
        if hook == "read_commands":  # only its reads are lost: it is called with reads=None
            assert permit["raising_field"] == "ok"
        else:
            assert "raising_field" not in permit
    expected = 3 if hook == "on_issue_permit" else 1
    assert errors(registry, "raising", hook) == expected
    assert registry.get_sample_value("governor_permits_issued_total",
                                     {"decision": "ALLOW"}) == 3
    assert any(getattr(r, "plugin", None) == "raising" or "raising" in r.getMessage()
               for r in caplog.records if r.levelno >= logging.ERROR)


class Reader:
    """Names reads in ``read_commands`` (``ask(symbols)``) and shows what came back."""

    def __init__(self, field: str, ask: Any) -> None:
        self.field, self.ask = field, ask
        self.reads: list[Any] = []

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return (self.field,)

    @hookimpl
    def read_commands(self, host: str, symbols: Sequence[str]) -> Any:
        assert host == "governor"
        return self.ask(symbols)

    @hookimpl
    def on_permit_batch(self, reads: Any) -> Any:
        self.reads.append(reads)
        return reads

    @hookimpl
    def on_issue_permit(self, plan: Plan, batch: Any) -> Mapping[str, str]:
        if batch is None:
            return {self.field: "no reads"}
        replies = dict(zip(batch.symbols, batch.replies, strict=True))
        return {self.field: str(replies[plan.symbol])}


@pytest.mark.redis
def test_read_commands_are_read_with_the_gates_and_handed_to_each_plugin(real_redis) -> None:
    real_redis.set("a:BTCUSDT", "a-btc")
    real_redis.set("a:ETHUSDT", "a-eth")
    real_redis.hset("b:ETHUSDT", "f", "b-eth")
    first = Reader("first", lambda symbols: [("GET", f"a:{s}") for s in symbols])
    second = Reader("second", lambda symbols: [("HGET", f"b:{s}", "f") for s in symbols])
    permits, registry = run_governor(real_redis, ("first", first), ("second", second),
                                     symbols=("ETHUSDT", "BTCUSDT"))
    assert [(p["first"], p["second"]) for p in permits] == [
        ("a-eth", "b-eth"), ("a-btc", "None"), ("a-eth", "b-eth")]
    assert first.reads[0].symbols == ("BTCUSDT", "ETHUSDT")  # sorted, distinct
    assert registry.get_sample_value("governor_plugin_errors_total",
                                     {"plugin": "first", "hook": "read_commands"}) is None


@pytest.mark.redis
@pytest.mark.parametrize("asked", [
    [("SET", "written", "1")],           # not a read
    [("GET", "a"), ("DEL", "written")],  # one write among reads: all refused
    [["GET", "a"]],                      # not a tuple
    [("GET", 1)],                        # not a string
    "GET a",                             # not a list of commands
    [()],                                # empty command
])
def test_a_plugins_refused_read_commands_change_nothing_else(real_redis, asked) -> None:
    real_redis.set("written", "0")
    real_redis.set("a:BTCUSDT", "a-btc")
    bad = Reader("bad", lambda symbols: asked)
    good = Reader("good", lambda symbols: [("GET", f"a:{s}") for s in symbols])
    permits, registry = run_governor(real_redis, ("bad", bad), ("good", good))
    assert [(p["decision"], p["bad"], p["good"]) for p in permits] == [
        ("ALLOW", "no reads", "a-btc")] * 3
    assert bad.reads == [None]
    assert real_redis.get("written") == "0"
    assert errors(registry, "bad", "read_commands") == 1


class Overreacher:
    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return ("mine", "decision")

    @hookimpl
    def on_issue_permit(self) -> Mapping[str, str]:
        return {"mine": "1", "decision": "DENY", "cap_usd": "0", "undeclared": "x"}


@pytest.mark.redis
def test_core_and_undeclared_fields_are_refused(real_redis) -> None:
    permits, registry = run_governor(real_redis, ("over", Overreacher()), ("tagger", Tagger()))
    for permit in permits:
        assert permit["decision"] == "ALLOW"
        assert permit["cap_usd"] == ""
        assert permit["mine"] == "1"
        assert "undeclared" not in permit
        assert permit["tag"].startswith("x:")
    refused = registry.get_sample_value("governor_plugin_fields_refused_total",
                                        {"plugin": "over"})
    assert refused is not None and refused >= 3  # decision, cap_usd, undeclared


@pytest.mark.redis
def test_first_plugin_keeps_a_shared_field(real_redis) -> None:
    permits, _ = run_governor(real_redis, ("first", Tagger("tag", "a")),
                              ("second", Tagger("tag", "b")), n_plans=1)
    assert permits[0]["tag"] in ("a:p0:1", "b:p0:1")  # one of them, never a mix or an error


class PerSymbol:
    """Fields that depend on the symbol only, returned as SymbolFields from the batch hook;
    ``on_issue_permit`` must then never be called."""

    def __init__(self, fields: Mapping[str, Mapping[str, str]]) -> None:
        self.fields = fields
        self.batches = 0

    @hookimpl
    def permit_fields(self) -> Sequence[str]:
        return ("per_symbol",)

    @hookimpl
    def on_permit_batch(self, plans: Sequence[Plan]) -> SymbolFields:
        self.batches += 1
        return SymbolFields(self.fields)

    @hookimpl
    def on_issue_permit(self) -> Mapping[str, str]:
        raise AssertionError("called per plan despite SymbolFields")


@pytest.mark.redis
def test_symbol_fields_go_to_every_plan_of_the_symbol_without_a_call(real_redis) -> None:
    plugin = PerSymbol({"BTCUSDT": {"per_symbol": "btc"}, "ETHUSDT": {"per_symbol": "eth"}})
    permits, registry = run_governor(real_redis, ("per", plugin), n_plans=6,
                                     symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"))
    assert [permit.get("per_symbol") for permit in permits] == [
        "btc", "eth", None, "btc", "eth", None]
    assert plugin.batches == 1
    assert errors(registry, "per", "on_issue_permit") == 0


@pytest.mark.redis
def test_symbol_fields_mix_with_per_plan_fields_and_are_still_checked(real_redis) -> None:
    plugin = PerSymbol({"BTCUSDT": {"per_symbol": "btc", "decision": "DENY"}})
    permits, registry = run_governor(real_redis, ("per", plugin), ("tagger", Tagger()),
                                     n_plans=3)
    for i, permit in enumerate(permits):
        assert (permit["per_symbol"], permit["tag"]) == ("btc", f"x:p{i}:3")
        assert permit["decision"] == "ALLOW"
    assert registry.get_sample_value("governor_plugin_fields_refused_total",
                                     {"plugin": "per"}) == 3  # once per plan


@pytest.mark.redis
def test_refused_symbol_fields_are_counted_per_plan_when_alone(real_redis) -> None:
    plugin = PerSymbol({"BTCUSDT": {"per_symbol": "btc", "cap_usd": "0"}})
    permits, registry = run_governor(real_redis, ("per", plugin), n_plans=4)
    assert [(p["per_symbol"], p["cap_usd"]) for p in permits] == [("btc", "")] * 4
    assert registry.get_sample_value("governor_plugin_fields_refused_total",
                                     {"plugin": "per"}) == 4


# -- the real p31_efficiency plugin, through its entry point --------------------------------

def test_p31_keeps_working_after_an_allocation_host_is_built() -> None:
    """The demo runs both hosts in one process; configuring p31 for the allocation host must
    not switch off its governor behaviour."""
    governor = build_plugin_host("governor", {}, CollectorRegistry())
    build_plugin_host("allocation", {}, CollectorRegistry())
    client = fakeredis.FakeRedis(decode_responses=True)
    client.hset("quantum:capital:efficiency:BTCUSDT",
                mapping={"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW)})
    batch = governor.permit_batch([PLAN], client, NOW, {})
    context = batch.contexts["p31_efficiency"]
    assert isinstance(context, SymbolFields)  # the host's per-symbol fast path
    issue = next(hook for hook in governor.permit_hooks(batch, NOW)
                 if hook.plugin == "p31_efficiency")
    fields = issue(PLAN, {})
    assert fields is not None and fields["eff_action"] == "DOWNSIZE"


def test_p31_bad_config_disables_it_loudly() -> None:
    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", {"P31_MIN_CONF": "abc"}, registry)
    record = status(plugin_host, "p31_efficiency")
    assert record.state == "disabled"
    assert "P31_MIN_CONF" in record.why
    assert errors(registry, "p31_efficiency", "on_configure") == 1
    assert "p31_efficiency" not in plugin_host.declared_fields
    # a disabled plugin exports no metrics of its own... beyond what it registered before
    assert registry.get_sample_value("p32_eff_apply_total",
                                     {"action": "NONE", "reason": "ok"}) is None


def test_p31_blocked_exports_no_metrics() -> None:
    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", {}, registry, disabled=["p31_efficiency"])
    assert status(plugin_host, "p31_efficiency").state == "blocked"
    names = {metric.name for metric in registry.collect()}
    assert not any(name.startswith("p32_") for name in names)
