"""``deploy/prometheus/alerts.yml``: valid, documented, and proven by ``promtool test rules``.

``alerts.test.yml`` has, for every alert, series where it must fire and series where it
must stay quiet. To show that neither half is vacuous, each alert is also mutated here: made
unable to fire (the firing case must then fail) and loosened (a quiet case must then fail).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROMETHEUS = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts.test.yml"


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing on CI: `make promtool` installs it")
        pytest.skip("promtool not installed (`make promtool` installs Debian's prometheus)")
    return binary


def _run(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def alert_blocks(text: str) -> dict[str, str]:
    """Each rule's text, from its ``- alert:`` line to the next rule or group."""
    starts = [m for m in re.finditer(r"^( *)- alert: (\w+)$", text, re.M)]
    blocks = {}
    for index, match in enumerate(starts):
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        group = re.search(r"^  - name:", text[match.start():end], re.M)
        if group:
            end = match.start() + group.start()
        blocks[match.group(2)] = text[match.start():end]
    return blocks


ALERTS = alert_blocks(RULES.read_text(encoding="utf-8"))

#: A loosening per alert: with it, some series of alerts.test.yml that must stay quiet fires.
LOOSENED = {
    "QuantumServiceDown": ("for: 1m", "for: 0s"),
    "QuantumServiceRestarting": ("[1h]) > 3", "[1h]) > 1"),
    "QuantumPluginErrors": ("[5m]", "[15m]"),
    "QuantumPluginDisabled": ('hook=~"load|on_configure"', 'hook=~".+"'),
    "GovernorDeadLetters": ("> 0", ">= 0"),
    "GovernorPermitsStalled": ("== 0)", ">= 0)"),
    "GovernorKillSwitchOn": ("== 1", ">= 0"),
    "QuantumRedisErrors": ("[5m]", "[15m]"),
    "GovernorWritesRefused": ("[2m]", "[15m]"),
    "GovernorStalePlans": ("[5m])) > 0", "[5m])) >= 0"),
    "P29StaleFallbacksHigh": ("* 60 > 10", "* 60 > 4"),
    "P29LoopSlow": ("> 2", "> 0.2"),
    "P29NoTargetsComputed": ("[5m])) > 0)", "[5m])) > 1000)"),
    "P29ModeKeyInvalid": ("== 1", ">= 0"),
}


def test_check_rules() -> None:
    result = _run("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_rule_unit_tests_pass() -> None:
    result = _run("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_design_thresholds_are_the_alerts() -> None:
    """design/p29_capital_allocation.md, "Alert Thresholds", plus the governor's own."""
    assert set(ALERTS) == set(LOOSENED)
    assert "rate(p29_stale_fallback_total[5m])) * 60 > 10" in ALERTS["P29StaleFallbacksHigh"]
    assert "p29_loop_duration_seconds" in ALERTS["P29LoopSlow"]
    assert "> 2\n" in ALERTS["P29LoopSlow"]
    assert "increase(p29_targets_computed_total[5m])" in ALERTS["P29NoTargetsComputed"]
    assert "[1h]) > 3" in ALERTS["QuantumServiceRestarting"]
    assert "== 0" in ALERTS["QuantumServiceDown"]


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_tells_the_operator_what_to_check(name: str) -> None:
    block = ALERTS[name]
    severity = re.search(r"^\s+severity: (\w+)$", block, re.M)
    assert severity and severity.group(1) in ("critical", "warning"), name
    assert re.search(r"^\s+summary: \S", block, re.M), f"{name}: no summary"
    description = re.search(r"^\s+description: >-\n((?:\s{12,}.*\n?)+)", block, re.M)
    assert description, f"{name}: no description"
    text = " ".join(description.group(1).split())
    assert len(text) > 120 and "`" in text, f"{name}: the description should say what to check"


def _with_mutation(tmp_path: Path, name: str, mutate) -> subprocess.CompletedProcess[str]:
    text = RULES.read_text(encoding="utf-8")
    block = ALERTS[name]
    (tmp_path / RULES.name).write_text(text.replace(block, mutate(block)))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    return _run("test", "rules", RULE_TESTS.name, cwd=tmp_path)


def _never_fires(block: str) -> str:
    expr = re.search(r"^( +)expr: (?:>-\n(?:\1 +.*\n)+|.*\n)", block, re.M)
    assert expr, block
    return block.replace(expr.group(0), f"{expr.group(1)}expr: vector(1) == 0\n")


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_each_alert_has_a_case_where_it_fires(name: str, tmp_path: Path) -> None:
    result = _with_mutation(tmp_path, name, _never_fires)
    assert result.returncode != 0, f"no test expects {name} to fire"
    assert f"alertname: {name}" in result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_each_alert_has_a_case_where_it_stays_quiet(name: str, tmp_path: Path) -> None:
    old, new = LOOSENED[name]
    assert old in ALERTS[name], f"{name}: mutation target {old!r} not found"
    result = _with_mutation(tmp_path, name, lambda block: block.replace(old, new))
    assert result.returncode != 0, f"loosening {name} ({old} → {new}) broke no test"
    assert f"alertname: {name}" in result.stdout + result.stderr


def test_scrape_jobs_are_the_ones_the_alerts_select(tmp_path: Path) -> None:
    scrape = (PROMETHEUS / "scrape.yml").read_text(encoding="utf-8")
    jobs = set(re.findall(r"job_name: (\S+)", scrape))
    assert jobs == {"quantum-governor", "quantum-capital-allocation"}
    rules = RULES.read_text(encoding="utf-8")
    selected = set(re.findall(r'job=~?"([^"]+)"', rules))
    assert {job for pattern in selected for job in pattern.split("|")} == jobs
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nrule_files:\n  - alerts.yml\n"
                      + scrape[scrape.index("scrape_configs:"):])
    shutil.copy(RULES, tmp_path / RULES.name)
    result = _run("check", "config", config.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
