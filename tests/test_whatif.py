"""``quantum-governor what-if`` (issue 15 item 3, SPEC 8): the recorded evidence replayed
through the plugins' own formulas."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from p29_shadow.formula import ShadowConfig, proposal_fields, propose
from p31_efficiency.formula import EfficiencyConfig, downsize_hint, hint_fields

from governor_core.cli import governor_main
from governor_core.efficiency import REDIS_ERROR, EfficiencyReading, read_efficiency_values
from governor_core.keys import PERMIT_STREAM, PROPOSAL_STREAM
from governor_core.whatif import (
    configure,
    discover,
    parse_changes,
    permit_summary,
    proposal_summary,
    what_if,
)
from governor_core.whatif_cli import parse_window

NOW = 1_800_000_000.0
DOCS = Path(__file__).resolve().parents[1] / "docs" / "what-if.md"


def raw_input(kind: str, score: int, confidence: int) -> tuple[str | None, ...]:
    """An efficiency hash's three fields as HMGET returns them, for a kind of reading."""
    texts = (str(score / 10_000), str(confidence / 10_000))
    return {"fresh": (*texts, str(NOW - 5)), "stale": (*texts, str(NOW - 10_000)),
            "missing": (None, None, None), "invalid": ("high", texts[1], str(NOW)),
            "no_ts": (*texts, None)}[kind]


def reading_of(raw: tuple[str | None, ...] | None, min_conf: float, stale_sec: float):
    if raw is None:
        return REDIS_ERROR
    return read_efficiency_values(*raw, NOW, min_conf, stale_sec)


def permit_entry(index: int, raw, config: EfficiencyConfig, allowed: str = "1000"):
    """A permit stream entry as the governor records it: core fields, the plugin's fields
    (computed by the plugin's formula from the raw efficiency data), config_id."""
    reading = reading_of(raw, config.min_conf, config.eff_ttl_sec)
    return {"plan_id": f"p-{index}", "symbol": f"S{index % 3}USDT", "side": "BUY",
            "notional_usd": allowed, "decision": "ALLOW", "reason": "within_cap",
            "allowed_notional_usd": allowed, "cap_usd": "20000", "cap_source": "budget",
            "cooldown_sec": "0", "issued_ts": str(NOW), "expires_ts": str(NOW + 60),
            **hint_fields(reading, downsize_hint(reading, config)), "config_id": "abc123def456"}


def proposal_entry(index: int, raw, config: ShadowConfig, base_cents: int):
    reading = reading_of(raw, config.min_conf, config.stale_sec)
    base = base_cents / 100
    return {**proposal_fields(f"S{index % 3}USDT", base, propose(base, reading, config),
                              reading, int(NOW)), "config_id": "abc123def456"}


def env_of(p31: EfficiencyConfig, p29: ShadowConfig) -> dict[str, str]:
    return {"P31_MIN_CONF": repr(p31.min_conf), "P31_DOWNSIZE_THRESHOLD":
            repr(p31.downsize_threshold), "P31_MIN_FACTOR": repr(p31.min_factor),
            "P31_MAX_EXTRA_COOLDOWN_SEC": str(p31.max_extra_cooldown_sec),
            "P31_MIN_MULT": repr(p29.min_mult), "P31_MAX_MULT": repr(p29.max_mult),
            "P31_SCALE": repr(p29.scale), "P31_BASE": repr(p29.base)}


unit = st.integers(0, 10_000).map(lambda n: n / 10_000)
raws = st.one_of(st.none(), st.builds(
    raw_input, st.sampled_from(["fresh", "fresh", "fresh", "stale", "missing", "invalid",
                                "no_ts"]), st.integers(0, 10_000), st.integers(0, 10_000)))


@st.composite
def config_pairs(draw):
    """The plugins' configs with the same P31_MIN_CONF (both read it), valid bounds."""
    min_conf = draw(unit)
    p31 = EfficiencyConfig(min_conf=min_conf, downsize_threshold=draw(unit.filter(bool)),
                           min_factor=draw(unit),
                           max_extra_cooldown_sec=draw(st.integers(0, 600)))
    low = draw(st.integers(0, 200).map(lambda n: n / 100))
    p29 = ShadowConfig(min_conf=min_conf, min_mult=low,
                       max_mult=low + draw(st.integers(0, 200).map(lambda n: n / 100)),
                       scale=draw(st.integers(-300, 300).map(lambda n: n / 100)),
                       base=draw(st.integers(0, 200).map(lambda n: n / 100)))
    return p31, p29


def replayed(raw_list, p31, p29, bases):
    permits = [permit_entry(i, raw, p31) for i, raw in enumerate(raw_list)]
    proposals = [proposal_entry(i, raw, p29, base) for i, (raw, base)
                 in enumerate(zip(raw_list, bases, strict=True))]
    return {"permits": permits, "proposals": proposals}


@settings(max_examples=150, deadline=None)
@given(config_pairs(), config_pairs(), st.lists(raws, min_size=1, max_size=12),
       st.data())
def test_what_if_equals_the_formulas_recomputed_directly(before, after, raw_list, data):
    """Entries recorded under one configuration, replayed under another, give exactly what
    the plugins' formulas give on the same raw efficiency data under the other (staleness,
    whose age is not recorded, is judged with the same limit in both)."""
    bases = data.draw(st.lists(st.integers(0, 10**9), min_size=len(raw_list),
                               max_size=len(raw_list)))
    recorded = replayed(raw_list, *before, bases)
    direct = replayed(raw_list, *after, bases)
    env, changed = env_of(*before), env_of(*after)
    replayers, _notes = discover({})
    report = what_if(recorded, configure(replayers, env, changed), changed)
    assert report["permits"]["after"] == permit_summary(direct["permits"])
    assert report["proposals"]["after"] == proposal_summary(direct["proposals"])
    assert report["permits"]["before"] == permit_summary(recorded["permits"])
    # Entry by entry, through each plugin's declared replay.
    for replayer, _old, new in configure(replayers, env, changed):
        outputs = replayer.replay(recorded[replayer.evidence], new)
        for output, expected in zip(outputs, direct[replayer.evidence], strict=True):
            assert set(replayer.fields) <= output.keys()
            assert output == {name: expected[name] for name in output}


@settings(max_examples=100, deadline=None)
@given(config_pairs(), st.lists(raws, min_size=1, max_size=12), st.data())
def test_without_changes_it_reproduces_the_recorded_fields_exactly(configs, raw_list, data):
    bases = data.draw(st.lists(st.integers(0, 10**9), min_size=len(raw_list),
                               max_size=len(raw_list)))
    recorded = replayed(raw_list, *configs, bases)
    replayers, _notes = discover({})
    report = what_if(recorded, configure(replayers, env_of(*configs), {}), {})
    for kind in ("permits", "proposals"):
        section = report[kind]
        assert section["entries"] == section["replayed"] == section["reproduced"]
        assert section["changed"] == 0 and section["symbols"] == []
        assert section["after"] == section["before"]


DEFAULTS = (EfficiencyConfig(), ShadowConfig())
# (score, confidence, kind) → recorded under the defaults (threshold 0.45), then replayed
# with P31_DOWNSIZE_THRESHOLD=0.5: (action before, after, factor after, cooldown after).
THRESHOLD_TABLE = [
    (2000, 9000, "fresh", "DOWNSIZE", "DOWNSIZE", "0.4000", "96"),  # design example
    (4500, 9000, "fresh", "NONE", "DOWNSIZE", "0.9000", "66"),
    (4800, 9000, "fresh", "NONE", "DOWNSIZE", "0.9600", "62"),
    (5000, 9000, "fresh", "NONE", "NONE", "1.0000", "0"),
    (9000, 9000, "fresh", "NONE", "NONE", "1.0000", "0"),
    (1000, 9000, "stale", "NONE", "NONE", "1.0000", "0"),
    (3000, 5000, "fresh", "NONE", "NONE", "1.0000", "0"),  # low_conf stays low_conf
    (0, 0, "missing", "NONE", "NONE", "1.0000", "0"),
    (1000, 9000, "invalid", "NONE", "NONE", "1.0000", "0"),
]


def test_downsize_threshold_table() -> None:
    raw_list = [raw_input(kind, score, conf) for score, conf, kind, *_ in THRESHOLD_TABLE]
    recorded = replayed(raw_list, *DEFAULTS, [100_000] * len(raw_list))
    assert [p["eff_action"] for p in recorded["permits"]] == [row[3] for row in
                                                               THRESHOLD_TABLE]
    replayers, _notes = discover({})
    changes = parse_changes(["P31_DOWNSIZE_THRESHOLD=0.5"], replayers)
    configured = configure(replayers, {}, changes)
    permits = next(r for r, _b, _a in configured if r.evidence == "permits")
    outputs = permits.replay(recorded["permits"], configured[[c[0] for c in configured]
                                                              .index(permits)][2])
    assert [(o["eff_action"], o["eff_factor"], o["extra_cooldown_sec"]) for o in outputs] == [
        row[4:] for row in THRESHOLD_TABLE]
    report = what_if(recorded, configured, changes)["permits"]
    assert report["before"]["by_action"] == {"DOWNSIZE": 1, "NONE": 8}
    assert report["after"]["by_action"] == {"DOWNSIZE": 3, "NONE": 6}
    assert report["before"]["notional_affected_usd"] == 555.6  # 1000 × (1 − 0.4444)
    assert report["after"]["notional_affected_usd"] == 740.0  # 600 + 100 + 40
    assert report["changed"] == 3 and report["reproduced"] == 9
    by_symbol = {row["symbol"]: row for row in report["symbols"]}
    assert by_symbol["S0USDT"] == {"symbol": "S0USDT", "entries": 3, "changed": 1,
                                   "downsized_before": 1, "notional_affected_usd_before":
                                   555.6, "downsized_after": 1,
                                   "notional_affected_usd_after": 600.0}
    assert {row["symbol"]: row["changed"] for row in report["symbols"]} == {
        "S0USDT": 1, "S1USDT": 1, "S2USDT": 1}
    # The proposals read P31_DOWNSIZE_THRESHOLD not at all: nothing changes there.
    assert what_if(recorded, configured, changes)["proposals"]["changed"] == 0


def test_min_conf_rejudges_ok_and_low_conf_only() -> None:
    raw_list = [raw_input("fresh", 2000, 6000), raw_input("fresh", 2000, 9000),
                raw_input("stale", 2000, 9000)]
    recorded = replayed(raw_list, *DEFAULTS, [100_000] * 3)
    replayers, _notes = discover({})
    changes = {"P31_MIN_CONF": "0.5"}
    report = what_if(recorded, configure(replayers, {}, changes), changes)
    assert report["permits"]["before"]["by_reason"] == {"low_conf": 1, "ok": 1, "stale_eff": 1}
    assert report["permits"]["after"]["by_reason"] == {"ok": 2, "stale_eff": 1}
    assert report["proposals"]["after"]["by_reason"] == {"ok": 2, "stale_eff": 1}
    assert report["proposals"]["before"]["multiplier_quantiles"] == {
        "p0": 0.7, "p10": 0.7, "p50": 1.0, "p90": 1.0, "p100": 1.0}
    assert report["proposals"]["after"]["multiplier_quantiles"]["p50"] == 0.7
    # 1,000 USD base targets: the 0.6-confidence symbol's proposal goes 1000 → 700.
    assert report["proposals"]["symbols"] == [
        {"symbol": "S0USDT", "entries": 1, "changed": 1, "multiplier_p50_before": 1.0,
         "multiplier_p50_after": 0.7, "proposed_usd_before": 1000.0,
         "proposed_usd_after": 700.0}]


def test_settings_are_validated_by_the_plugins_config_classes() -> None:
    replayers, _notes = discover({})
    with pytest.raises(Exception, match=r"--set FOO: unknown setting: what-if knows .*"
                                        r"P31_DOWNSIZE_THRESHOLD.*P31_SCALE"):
        parse_changes(["FOO=1"], replayers)
    with pytest.raises(Exception, match="expected NAME=VALUE"):
        parse_changes(["P31_SCALE"], replayers)
    for text, variable in (("P31_DOWNSIZE_THRESHOLD=2", "P31_DOWNSIZE_THRESHOLD='2'"),
                           ("P31_DOWNSIZE_THRESHOLD=0", "P31_DOWNSIZE_THRESHOLD='0.0'"),
                           ("P31_MAX_MULT=0.1", "P31_MAX_MULT='0.1'")):
        changes = parse_changes([text], replayers)
        with pytest.raises(Exception, match=re.escape(variable)) as caught:
            configure(replayers, {}, changes)
        assert "\n" not in str(caught.value) and "--set" in str(caught.value)
    assert [parse_window(t) for t in ("90", "90s", "30m", "1h", "2d")] == [
        90, 90, 1800, 3600, 172800]
    with pytest.raises(Exception, match="--window"):
        parse_window("soon")


def test_a_blocked_plugin_is_not_replayed() -> None:
    replayers, notes = discover({"QUANTUM_DISABLE_PLUGINS": "quantum-governor-p29-shadow"})
    assert [r.plugin for r in replayers] == ["p31_efficiency"]
    assert any("p29_shadow is blocked" in note for note in notes)
    report = what_if({"proposals": [{"reason": "ok"}]}, configure(replayers, {}, {}), {})
    assert report["proposals"] is None


def test_malformed_entries_never_raise() -> None:
    junk = [{}, {"eff_reason": "ok"}, {"eff_reason": "ok", "eff_score": "x",
                                       "eff_confidence": "2"},
            {"eff_reason": "weird", "eff_action": "BLOCK", "allowed_notional_usd": "-1"},
            {"eff_reason": "ok", "eff_score": "0.1", "eff_confidence": "",
             "eff_action": "DOWNSIZE", "eff_factor": "nan"}]
    proposals = [{}, {"reason": "ok", "base_target": "nan"},
                 {"reason": "ok", "base_target": "10", "eff_score": "1e3"}]
    replayers, _notes = discover({})
    report = what_if({"permits": junk, "proposals": proposals},
                     configure(replayers, {}, {"P31_DOWNSIZE_THRESHOLD": "0.9"}),
                     {"P31_DOWNSIZE_THRESHOLD": "0.9"})
    assert report["permits"]["entries"] == 5 and report["permits"]["replayed"] == 4
    assert report["proposals"]["replayed"] == 1


def _keys_and_lengths(client) -> dict[str, object]:
    return {key: (client.type(key), client.xlen(key) if client.type(key) == "stream" else 0)
            for key in client.keys("*")}


@pytest.mark.redis
def test_cli_json_on_a_real_redis_reads_only(real_redis, redis_server, capsys,
                                             monkeypatch) -> None:
    monkeypatch.delenv("QUANTUM_DISABLE_PLUGINS", raising=False)
    for name in [n for n in __import__("os").environ if n.startswith(("P31_", "PROPOSE_"))]:
        monkeypatch.delenv(name)
    raw_list = [raw_input(kind, score, conf) for score, conf, kind, *_ in THRESHOLD_TABLE]
    recorded = replayed(raw_list, *DEFAULTS, [123_456] * len(raw_list))
    for entry in recorded["permits"]:
        real_redis.xadd(PERMIT_STREAM, entry)
    for entry in recorded["proposals"]:
        real_redis.xadd(PROPOSAL_STREAM, entry)
    before = _keys_and_lengths(real_redis)
    status = governor_main(["what-if", "--set", "P31_DOWNSIZE_THRESHOLD=0.5", "--window",
                            "1h", "--json", "--redis-url", redis_server.url])
    out = capsys.readouterr().out
    assert status == 0
    assert _keys_and_lengths(real_redis) == before
    report = json.loads(out)
    assert set(report) == {"window_sec", "from_ts", "to_ts", "changes", "notes", "permits",
                           "proposals"}
    assert report["window_sec"] == 3600 and report["changes"] == {
        "P31_DOWNSIZE_THRESHOLD": "0.5"}
    section_keys = {"entries", "replayed", "reproduced", "changed", "before", "after",
                    "symbols"}
    assert set(report["permits"]) == set(report["proposals"]) == section_keys
    assert set(report["permits"]["before"]) == {"by_action", "by_reason", "downsized",
                                                "notional_affected_usd"}
    assert set(report["proposals"]["after"]) == {"by_reason", "multiplier_quantiles"}
    assert set(report["proposals"]["after"]["multiplier_quantiles"]) == {
        "p0", "p10", "p50", "p90", "p100"}
    assert report["permits"]["after"]["notional_affected_usd"] == 740.0
    for row in report["permits"]["symbols"]:
        assert set(row) == {"symbol", "entries", "changed", "downsized_before",
                            "downsized_after", "notional_affected_usd_before",
                            "notional_affected_usd_after"}
    # Every key of the object is documented.
    documented = set(re.findall(r"`([a-z0-9_]+)`", DOCS.read_text()))
    keys = set(report) | section_keys | set(report["permits"]["before"]) | set(
        report["proposals"]["before"]) | set(report["permits"]["symbols"][0]) | {
        "multiplier_p50_before", "multiplier_p50_after", "proposed_usd_before",
        "proposed_usd_after"}
    assert keys <= documented, keys - documented
    # The text form says the same.
    assert governor_main(["what-if", "--set", "P31_DOWNSIZE_THRESHOLD=0.5",
                          "--redis-url", redis_server.url]) == 0
    text = capsys.readouterr().out
    assert "action DOWNSIZE: 1 -> 3" in text and "555.60 -> 740.00" in text


@pytest.mark.redis
def test_cli_errors_are_one_line(redis_server, capsys) -> None:
    for argv, expected in ((["--set", "P31_MIN_FACTOR=lots"], "P31_MIN_FACTOR='lots'"),
                           (["--set", "NOPE=1"], "unknown setting"),
                           (["--window", "0"], "--window")):
        assert governor_main(["what-if", *argv, "--redis-url", redis_server.url]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1


def test_a_plugin_without_a_usable_replay_is_left_out_with_a_note(monkeypatch) -> None:
    import importlib.metadata
    import sys
    import types

    broken = types.ModuleType("broken_plugin.formula")
    broken.WHAT_IF = {"evidence": "permits"}  # no config, replay, fields
    plain = types.ModuleType("plain_plugin.formula")
    monkeypatch.setitem(sys.modules, "broken_plugin.formula", broken)
    monkeypatch.setitem(sys.modules, "plain_plugin.formula", plain)
    points = [importlib.metadata.EntryPoint(name, f"{name}.plugin:plugin", "quantum_governor")
              for name in ("broken_plugin", "json", "plain_plugin", "absent_plugin")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: points)
    replayers, notes = discover({})
    assert replayers == []
    assert notes == ["plugin absent_plugin not replayed: No module named 'absent_plugin'",
                     "plugin broken_plugin not replayed (KeyError: 'config')",
                     "plugin json offers no replay (no json.formula)",
                     "plugin plain_plugin offers no replay (no plain_plugin.formula.WHAT_IF)"]


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1e7, allow_nan=False), st.integers(0, 10_000))
def test_unrounded_base_targets_are_reproduced(base, score) -> None:
    """A base target with more than 8 decimals (the demo's 21755.054780334…) is recorded
    rounded; with no change the replay still reproduces every proposal."""
    reading = reading_of(raw_input("fresh", score, 9000), 0.65, 600.0)
    config = ShadowConfig()
    entry = proposal_fields("BTCUSDT", base, propose(base, reading, config), reading, int(NOW))
    replayers, _notes = discover({})
    report = what_if({"proposals": [entry]}, configure(replayers, {}, {}), {})["proposals"]
    assert report["reproduced"] == report["replayed"] == 1 and report["changed"] == 0
    assert report["symbols"] == []


def test_entries_recorded_under_other_settings_are_not_reproduced_but_not_changes() -> None:
    """Recorded with threshold 0.3 (and one score of 6 decimals); replayed under the
    defaults (0.45): not reproduced, yet no --set means no change; --set 0.3 reproduces
    the 0.3 entries again."""
    raw_list = [raw_input("fresh", 2000, 9000), raw_input("fresh", 4000, 9000)]
    old = EfficiencyConfig(downsize_threshold=0.3)
    permits = [permit_entry(i, raw, old) for i, raw in enumerate(raw_list)]
    precise = EfficiencyReading("ok", 0.123456, 0.9)
    permits.append({**permits[0], "symbol": "PRECISE",
                    **hint_fields(precise, downsize_hint(precise, EfficiencyConfig()))})
    replayers, _notes = discover({})
    report = what_if({"permits": permits}, configure(replayers, {}, {}), {})["permits"]
    assert (report["replayed"], report["reproduced"], report["changed"]) == (3, 0, 0)
    assert report["symbols"] == []
    changes = {"P31_DOWNSIZE_THRESHOLD": "0.3"}
    report = what_if({"permits": permits}, configure(replayers, {}, changes), changes)
    assert report["permits"]["changed"] == 3  # 0.2 and 0.4 back to the record; 0.1235 too
    assert report["permits"]["after"]["by_action"] == {"DOWNSIZE": 2, "NONE": 1}


def test_a_replay_that_raises_is_one_line_naming_the_plugin() -> None:
    from governor_core.runtime import StartupError
    from governor_core.whatif import Replayer

    def replay(entries, config):
        raise ZeroDivisionError("oops")

    broken = Replayer("buggy", "permits", EfficiencyConfig, replay, ("eff_action",))
    with pytest.raises(StartupError, match="plugin buggy's replay failed: ZeroDivisionError"):
        what_if({"permits": [{}]}, [(broken, EfficiencyConfig(), EfficiencyConfig())], {})
    short = Replayer("short", "permits", EfficiencyConfig, lambda e, c: [], ("eff_action",))
    with pytest.raises(StartupError, match="plugin short's replay failed: ValueError"):
        what_if({"permits": [{}]}, [(short, EfficiencyConfig(), EfficiencyConfig())], {})
