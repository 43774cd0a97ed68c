"""``quantum-governor demo``: runs to the end, shows what the script provokes, is
reproducible, works against a real Redis, and keeps plugin errors visible."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from governor_core.demo import run_demo
from governor_core.demo.display import (
    Header,
    SymbolState,
    Totals,
    age_text,
    legend,
    render_row,
    render_summary,
    render_table,
    usd_k,
)
from governor_core.demo.market import SCRIPT_SEC, SYMBOLS, market_second
from governor_core.runtime import EXIT_CONFIG, StartupError
from governor_core.testing import RedisServer, start_redis

CLI = str(Path(sys.executable).parent / "quantum-governor")


def demo(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "demo", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def section(output: str, title: str) -> str:
    """The block of ``output`` from the line starting with ``title`` to the next blank line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


def without_timing(output: str) -> list[str]:
    return [line for line in output.splitlines()
            if "ran in" not in line and "expires in" not in line]


@pytest.fixture(scope="module")
def embedded_run() -> subprocess.CompletedProcess[str]:
    """One run as ``make demo`` does it, but three seconds long (the script always
    completes: it is spread over the duration)."""
    started = time.monotonic()
    result = demo("--duration", "3")
    assert 3 <= time.monotonic() - started < 15
    return result


def test_embedded_demo_runs_the_whole_script(embedded_run: subprocess.CompletedProcess[str]
                                             ) -> None:
    out = embedded_run.stdout
    assert embedded_run.returncode == 0, embedded_run.stderr
    assert embedded_run.stderr == ""
    assert "embedded Redis" in out
    assert "p31_efficiency 0.1.0: active on the governor host" in out
    assert "p29_shadow 0.1.0: active on the allocation host" in out
    assert "cap_source=allocation" in out
    assert "\x1b[" not in out  # not a terminal: tables are appended, no escape codes
    assert "sim 4:00 of 4:00  phase 4/4: efficiency decays" in out
    assert out.count("SYMBOL ") == 4  # one table per phase
    assert "Done: the whole script ran in" in out


def test_embedded_demo_shows_what_the_script_provokes(
        embedded_run: subprocess.CompletedProcess[str]) -> None:
    out = embedded_run.stdout
    rows = [line for line in out.splitlines() if line.split(" ", 1)[0] in SYMBOLS]
    assert any("DOWNSIZE x" in row for row in rows)
    assert any(" CLAMP " in row for row in rows) and any(" ALLOW " in row for row in rows)
    for reason in ("ok", "stale_eff", "invalid_eff", "low_conf", "missing_eff"):
        assert any(f" {reason} " in row for row in rows), reason
    assert "regime TREND" in out and "regime CHOP" in out
    assert "zone LOW" in out and "zone MID" in out

    summary = section(out, "SUMMARY")
    assert "240 permits by decision: ALLOW" in summary
    assert "CLAMP 0" not in summary
    for reason in ("ok", "stale_eff", "invalid_eff", "low_conf", "missing_eff"):
        assert f"{reason} 0" not in summary and f" {reason} " in summary
    assert "DOWNSIZE/ok" in summary
    assert "dead letters: 1 (bad_notional 1)" in summary
    assert "alpha 48" in summary
    assert "plugin errors: 0" in summary

    explain = section(out, "EXPLAIN")
    plan_id = explain.split()[1]
    assert "eff_action = DOWNSIZE" in explain and "decision:  CLAMP" in explain
    assert "from allocation (quantum:allocation:target:" in explain
    where = section(out, "WHERE TO LOOK NEXT")
    assert f"HGETALL quantum:permit:{plan_id}" in where
    for key in ("quantum:stream:permit.issued", "quantum:allocation:target:ETHUSDT",
                "quantum:allocation:target:proposed:ETHUSDT",
                "quantum:stream:allocation.decision"):
        assert key in where
    assert "plan dead-lettered" in out.split("SERVICE LOG", 1)[1]


def test_two_runs_print_the_same_tables_and_summary(
        embedded_run: subprocess.CompletedProcess[str]) -> None:
    again = demo("--duration", "0")
    assert again.returncode == 0, again.stderr
    first = without_timing(embedded_run.stdout)
    second = without_timing(again.stdout)
    assert [line for line in first if "played in" not in line] == [
        line for line in second if "played in" not in line]
    assert section(embedded_run.stdout, "SUMMARY") == section(again.stdout, "SUMMARY")


def test_bad_duration_is_one_line() -> None:
    result = demo("--duration", "-1")
    assert result.returncode == EXIT_CONFIG
    assert result.stderr.strip().count("\n") == 0 and "--duration" in result.stderr


def test_missing_fakeredis_is_one_line_naming_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fakeredis", None)  # as if not installed
    out = io.StringIO()
    with pytest.raises(StartupError) as refused:
        run_demo(duration=0, out=out)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("quantum-governor demo: ")
    assert "fakeredis" in message and "quantum-governor[demo]" in message
    assert "--redis-url" in message
    assert out.getvalue() == ""


def test_ctrl_c_still_prints_the_summary() -> None:
    process = subprocess.Popen([CLI, "demo", "--duration", "60"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)  # past the start-up; the first table comes only at 1:00 of script time
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "Interrupted after" in out
    assert "SUMMARY" in out and "permits by decision" in out
    assert "sim " in out  # the table as it was when interrupted
    assert "Traceback" not in err


def test_redis_url_refuses_a_database_in_use_unless_forced(redis_server: RedisServer,
                                                           real_redis: redis.Redis) -> None:
    real_redis.set("quantum:x", "1")
    real_redis.set("other:key", "kept")
    refused = demo("--duration", "0", "--redis-url", redis_server.url)
    assert refused.returncode == EXIT_CONFIG
    assert refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "quantum:x" in refused.stderr and "--force" in refused.stderr
    assert real_redis.get("quantum:x") == "1"

    forced = demo("--duration", "0", "--redis-url", redis_server.url, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "--force: deleted 1 quantum:* key(s) first" in forced.stdout
    assert real_redis.get("quantum:x") is None
    assert real_redis.get("other:key") == "kept"
    plan_id = section(forced.stdout, "EXPLAIN").split()[1]
    permit = real_redis.hgetall(f"quantum:permit:{plan_id}")
    assert permit["eff_action"] == "DOWNSIZE" and permit["cap_source"] == "allocation"
    assert real_redis.xlen("quantum:stream:permit.issued") == 240
    assert f"quantum-governor explain {plan_id}" in forced.stdout
    assert real_redis.exists("quantum:allocation:target:proposed:SOLUSDT")
    # plans carry the simulated ts, so the plan-age gate measures simulated ages: 0 s each
    plans = {fields["plan_id"]: fields for _id, fields in real_redis.xrange(
        "quantum:stream:apply.plan")}
    entries = [fields for _id, fields in real_redis.xrange("quantum:stream:permit.issued")]
    assert {entry["reason"] for entry in entries} == {"within_cap", "above_cap"}
    assert all(float(entry["issued_ts"]) == float(plans[entry["plan_id"]]["ts"])
               for entry in entries)
    # the what-if's "before" is the permit stream as recorded
    actions = Counter(entry["eff_action"] for entry in entries)
    assert (f"eff_action DOWNSIZE {actions['DOWNSIZE']} -> " in section(forced.stdout,
                                                                         "WHAT-IF"))
    assert f"NONE {actions['NONE']} -> " in section(forced.stdout, "WHAT-IF")


def test_redis_url_with_a_password_never_prints_it() -> None:
    server = start_redis()
    try:
        server.client().config_set("requirepass", "s3cret-pw")
        url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
        result = demo("--duration", "0", "--redis-url", url)
        assert result.returncode == 0, result.stderr
        assert "s3cret-pw" not in result.stdout + result.stderr
        assert f"redis://:***@127.0.0.1:{server.port}/0" in result.stdout
        wrong = demo("--duration", "0", "--redis-url", url.replace("s3cret-pw", "n0pe-pw"))
        assert wrong.returncode == EXIT_CONFIG
        assert "n0pe-pw" not in wrong.stdout + wrong.stderr
    finally:
        server.stop()


def test_a_plugin_error_is_shown_after_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import p29_shadow.plugin

    def broken(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(p29_shadow.plugin, "shadow_multiplier", broken)
    out = io.StringIO()
    assert run_demo(duration=0, out=out) == 0
    text = out.getvalue()
    assert "p29_shadow/on_allocation_tick 24" in section(text, "SUMMARY")
    assert "ERROR quantum.plugins: plugin p29_shadow raised in on_allocation_tick" in text
    assert "240 permits" in text  # the governor carried on
    # no proposal was recorded, so none is replayed; the permits still are
    what_if = section(text, "WHAT-IF")
    assert "proposals: 0 of 0 replayed" in what_if and "permits: 240 of 240" in what_if
    assert "WHERE TO LOOK NEXT" in text


def test_the_market_script_is_pure() -> None:
    assert [market_second(t) for t in range(SCRIPT_SEC)] == [
        market_second(t) for t in range(SCRIPT_SEC)]
    plans = [plan for t in range(SCRIPT_SEC) for plan in market_second(t).plans]
    assert len({plan["plan_id"] for plan in plans}) == len(plans) == SCRIPT_SEC + 1


def test_rows_render_missing_data_as_dashes() -> None:
    row = render_row(SymbolState("AAVEUSDT", {}, {}, {}, {}), now=100.0)
    assert row.startswith("AAVEUSDT")
    assert "(no plan yet)" in row and row.endswith(" -")
    header = Header(60, 240, "calm trend", 1, 4, "TREND", 0.02, 100_000.0, "LOW")
    lines = render_table(header, [SymbolState("BTCUSDT", {}, {}, {}, {})], now=0.0)
    assert lines[0] == "sim 1:00 of 4:00  phase 1/4: calm trend"
    head, row = lines[2], lines[3]
    # the header's columns and the row's line up
    assert row[head.index("REASON")] == "-" and row[head.index("REASON") - 1] == " "
    assert head.index("HINT") == row.rindex(" -") + 1


#: The widest values each column can show: an 8-character symbol, a 4-character age and
#: amounts, the longest reason, and the longest hint (cooldown 120 s).
WIDEST = SymbolState(
    "PEPEUSDT",
    {"efficiency_score": "0.0001", "ts": "0"},
    {"target_usd": "999000"},
    {"multiplier": "1.5", "reason": "invalid_eff"},
    {"notional_usd": "123456789", "decision": "CLAMP", "allowed_notional_usd": "9990",
     "eff_action": "DOWNSIZE", "eff_factor": "0.25", "extra_cooldown_sec": "120"})


def test_the_table_fits_80_columns() -> None:
    """Every table line, at the widest values, leaves the 80th column free (so a line
    never wraps: LiveTable redraws by counting lines)."""
    header = Header(3599, 3600, "efficiency decays", 4, 4, "MEAN_REVERSION", 0.999,
                    999_999_999.0, "HIGH")
    lines = render_table(header, [WIDEST], now=10_000_000.0)
    assert max(len(line) for line in lines) <= 79, lines
    row = lines[3]
    assert "DOWNSIZE x0.25 +120s" in row and " invalid_eff " in row and " CLAMP " in row
    head = lines[2]
    for title, value in (("HINT", "DOWNSIZE"), ("REASON", "invalid_eff")):
        assert head.index(title) == row.index(value), title  # columns line up
    assert all(len(line) <= 79 for line in legend(60))


@pytest.mark.parametrize(("text", "shown"), [
    ("400", "0.4k"), ("9949", "9.9k"), ("9950", "10k"), ("12000", "12k"), ("999499", "999k"),
    ("999500", "1.0M"), ("12000000", "12M"), ("5e3", "-"), (None, "-"), ("", "-"),
])
def test_amounts_take_at_most_four_characters(text: str | None, shown: str) -> None:
    assert usd_k(text) == shown


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "0s"), (9.4, "9s"), (149, "149s"), (999, "999s"), (1000, "17m"), (59_000, "983m"),
    (60_000, "17h"), (10_000_000, "116d"),
])
def test_ages_take_at_most_four_characters(seconds: float, shown: str) -> None:
    assert age_text(seconds) == shown


def test_summary_lines_fit_and_keep_pairs_together() -> None:
    totals = Totals(48, 24, {"ALLOW": 90, "CLAMP": 150, "DENY": 0},
                    {("DOWNSIZE", "ok"): 56, ("NONE", "ok"): 110, ("NONE", "missing_eff"): 34,
                     ("NONE", "stale_eff"): 12, ("NONE", "low_conf"): 14,
                     ("NONE", "invalid_eff"): 14},
                    {"ok": 116, "missing_eff": 24, "stale_eff": 8, "low_conf": 10,
                     "invalid_eff": 10, "redis_error": 0},
                    {"portfolio": 0, "alpha": 48}, {"bad_notional": 1},
                    {("p29_shadow", "on_allocation_tick"): 24,
                     ("p31_efficiency", "on_permit_batch"): 240},
                    ("p31_efficiency (governor)", "p29_shadow (allocation)"))
    lines = render_summary(totals)
    assert max(len(line) for line in lines) <= 79, lines
    text = "\n".join(lines)
    for pair in ("NONE/invalid_eff 14", "p29_shadow/on_allocation_tick 24",
                 "p31_efficiency/on_permit_batch 240", "redis_error 0"):
        assert pair in text, pair


def _summary_count(summary: str, pattern: str) -> int:
    match = re.search(pattern, summary)
    assert match, pattern
    return int(match.group(1))


def test_the_demo_ends_with_the_readiness_of_its_own_run(
        embedded_run: subprocess.CompletedProcess[str]) -> None:
    out = embedded_run.stdout
    summary, ready = section(out, "SUMMARY"), section(out, "READINESS")
    assert all(len(line) <= 79 for line in ready.splitlines()), ready
    cycles = _summary_count(summary, r"(\d+) P2\.9 cycles")
    permits = _summary_count(summary, r"(\d+) permits by decision")
    alpha_ticks = _summary_count(summary, r"alpha (\d+)")
    # judged over the run's own simulated span: 240 s at P29_INTERVAL_SEC=5 → 48 expected
    assert "window: the run's 240 simulated s" in ready
    assert re.search(rf"PASS cycles +{cycles}  threshold >= 43\.2 \(0\.9 x 48", ready)
    targets = cycles * len(SYMBOLS)  # one decision per symbol per cycle
    assert re.search(rf"PASS targets_computed +{targets} ", ready)
    assert f"{permits} permits" in ready.splitlines()[2]
    # per target, not per tick: the two DEFI symbols lack an alpha at every cycle
    assert re.search(rf"FAIL fallback_rate\.alpha +{2 * alpha_ticks / targets:.4f} ", ready)
    assert f"{2 * alpha_ticks} of {targets} targets: AAVEUSDT, UNIUSDT" in ready
    assert "PASS fallback_rate.budget" in ready and "PASS errors" in ready
    rows = re.findall(r"budget -> .* (\d+)/(\d+) permits differ", ready)
    assert len(rows) == len(SYMBOLS)
    # the demo ran enforce from the start: enforce would decide no permit otherwise
    assert [int(changed) for changed, _ in rows] == [0] * len(SYMBOLS)
    assert sum(int(judged) for _, judged in rows) == permits
    assert "fallback_rate.alpha" in ready.split("NOT READY", 1)[1]


def test_the_demo_ends_with_a_what_if_of_its_own_permits(
        embedded_run: subprocess.CompletedProcess[str]) -> None:
    out = embedded_run.stdout
    summary, what_if = section(out, "SUMMARY"), section(out, "WHAT-IF")
    assert all(len(line) <= 79 for line in what_if.splitlines()), what_if
    assert "--set P31_DOWNSIZE_THRESHOLD=0.5" in what_if.splitlines()[0]
    permits = _summary_count(summary, r"(\d+) permits by decision")
    by_action: dict[str, int] = {}
    for action, count in re.findall(r"(DOWNSIZE|NONE)/\w+ (\d+)", summary):
        by_action[action] = by_action.get(action, 0) + int(count)
    assert sum(by_action.values()) == permits
    assert (f"permits: {permits} of {permits} replayed, {permits} reproduced exactly"
            in what_if)
    match = re.search(r"eff_action DOWNSIZE (\d+) -> (\d+), NONE (\d+) -> (\d+)", what_if)
    assert match, what_if
    down_before, down_after, none_before, none_after = map(int, match.groups())
    assert (down_before, none_before) == (by_action["DOWNSIZE"], by_action["NONE"])
    assert down_after > down_before and down_after + none_after == permits  # 0.5 > 0.45
    changed = int(re.search(r"reproduced exactly unchanged, (\d+) changed", what_if)[1])
    per_symbol = [int(n) for n in re.findall(r"\w+USDT: (\d+) of \d+ changed", what_if)]
    assert changed == sum(per_symbol) > 0


def test_the_trust_sections_fit_80_columns_at_wide_values() -> None:
    from governor_core.allocation.readiness_model import Criterion, Evidence, Readiness
    from governor_core.demo.trust import render_readiness, render_what_if

    long = "SYMBOLWITHALONGNAME 100.0% (alpha+budget+cluster_stress+regime), " * 4
    report = Readiness((Criterion("fallback_rate.cluster_stress", "FAIL", 0.123456789,
                                  "<= 0.01 for every symbol " * 3, long),),
                       {"VERYLONGSYMBOLNAME": {"budget_usd": 123456789.0, "target_usd": 1e9,
                                               "change": -0.999, "permits": 123456,
                                               "permits_changed": 123456}})
    lines = render_readiness(report, Evidence(0.0, 240.0, 5.0, 300.0))
    assert max(len(line) for line in lines) <= 79, lines
    assert "NOT READY" in " ".join(lines) and "0/123456 permits" not in " ".join(lines)
    error = render_what_if("quantum-governor what-if: plugin p29_shadow's replay failed: "
                           "RuntimeError: boom " * 2)
    assert max(len(line) for line in error) <= 79 and "not available" in error[1]


def test_the_demo_s_own_text_fits_80_columns(embedded_run: subprocess.CompletedProcess[str]
                                             ) -> None:
    """Everything the demo writes itself fits a terminal of 80 columns; only what it
    quotes is left as it is: the explain command's own output and the services' log
    lines (a key name or a message can be longer)."""
    out = embedded_run.stdout
    explain = section(out, "EXPLAIN")
    quoted = set(explain.splitlines()) | set(section(out, "SERVICE LOG").splitlines())
    wide = [line for line in out.splitlines() if len(line) > 80 and line not in quoted]
    assert not wide, "\n".join(wide)
