"""``quantum-allocation readiness``: the criteria on constructed windows of evidence, the
JSON object's schema, and the reader on a real redis-server."""

from __future__ import annotations

import json

import pytest

from governor_core.allocation import promotion
from governor_core.allocation.config import AllocationConfig
from governor_core.allocation.readiness import evaluate, oscillations_per_hour, quantile
from governor_core.allocation.readiness_model import Evidence, ReadinessConfig
from governor_core.config import EnvReader

NOW = 1_800_000_000.0
HOUR = 3600.0
INTERVAL = 5.0
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def decision(ts: float, symbol: str, *, fallbacks: str = "none", confidence: str = "1.0000",
             budget: str = "20000", target: str = "10907.99") -> dict[str, str]:
    return {"symbol": symbol, "timestamp": f"{ts:.3f}", "target_usd": target,
            "base_budget": budget, "confidence": confidence, "fallbacks": fallbacks,
            "mode": "shadow"}


def proposal(ts: float, symbol: str, multiplier: float, reason: str = "ok") -> dict[str, str]:
    return {"ts_epoch": str(int(ts)), "symbol": symbol, "multiplier": f"{multiplier:.4f}",
            "reason": reason, "mode": "shadow"}


def cycles(share: float = 1.0) -> list[float]:
    """Cycle times over the last hour (the newest ``share`` of them)."""
    count = int(HOUR / INTERVAL)
    return [NOW - HOUR + INTERVAL * (k + 1) for k in range(count)][int(count * (1 - share)):]


def window(*, share: float = 1.0, regime_stale_every: int = 0, missing_alpha: str = "",
           oscillate: bool = False, errors: int = 0, proposals: bool = True) -> Evidence:
    decisions, props = [], []
    for index, ts in enumerate(cycles(share)):
        stale = bool(regime_stale_every) and index % regime_stale_every == 0
        for symbol in SYMBOLS:
            sources = [s for s, on in (("regime", stale), ("alpha", symbol == missing_alpha))
                       if on]
            conf = 1.0 - 0.2 * stale - 0.1 * (symbol == missing_alpha)
            decisions.append(decision(ts, symbol, fallbacks=",".join(sources) or "none",
                                      confidence=f"{conf:.4f}"))
            if proposals and index % 2 == 0:  # LOOP_INTERVAL_SEC 10 on a 5 s tick
                up = not oscillate or (index // 2) % 2 == 0
                props.append(proposal(ts, symbol, 1.2 if up else 0.8))
    return Evidence(now=NOW, window_sec=HOUR, interval_sec=INTERVAL, target_ttl_sec=300,
                    decisions=decisions, proposals=props,
                    errors=[{"ts": str(NOW - 10), "kind": "write", "detail": "x"}] * errors)


#: The criteria every window below must judge, and the ones each is expected to fail.
CRITERIA = ("cycles", "targets_computed", "fallback_rate.budget", "fallback_rate.regime",
            "fallback_rate.cluster_stress", "fallback_rate.alpha", "fallback_rate.per_symbol",
            "confidence", "errors", "enforce_changes", "proposals.coverage",
            "proposals.oscillation", "proposals.multiplier")

WINDOWS = [
    ("healthy", window(), set()),
    # One regime reading in 20 is stale: 5% of every symbol's targets, per target.
    ("one stale source", window(regime_stale_every=20),
     {"fallback_rate.regime", "fallback_rate.per_symbol"}),
    # A cluster without alpha: 1/3 of the targets, 100% of SOLUSDT's, and only alpha.
    ("permanently missing alpha", window(missing_alpha="SOLUSDT"),
     {"fallback_rate.alpha", "fallback_rate.per_symbol"}),
    ("oscillating proposals", window(oscillate=True), {"proposals.oscillation"}),
    ("too few cycles", window(share=0.5), {"cycles"}),
    ("errors", window(errors=2), {"errors"}),
    ("no evidence at all", Evidence(NOW, HOUR, INTERVAL, 300),
     {"cycles", "targets_computed", "confidence"}),
]


@pytest.mark.parametrize(("name", "evidence", "failing"), WINDOWS, ids=[w[0] for w in WINDOWS])
def test_windows(name: str, evidence: Evidence, failing: set[str]) -> None:
    report = evaluate(evidence, ReadinessConfig())
    statuses = {c.name: c.status for c in report.criteria}
    assert tuple(statuses) == CRITERIA
    assert {n for n, s in statuses.items() if s == "FAIL"} == failing, name
    assert report.passed is (not failing)
    assert statuses["proposals.multiplier"] == "INFO"


def test_fallback_rates_are_per_target_and_name_the_source() -> None:
    report = evaluate(window(missing_alpha="SOLUSDT"), ReadinessConfig())
    by_name = {c.name: c for c in report.criteria}
    assert by_name["fallback_rate.alpha"].value == pytest.approx(1 / 3)
    assert by_name["fallback_rate.alpha"].detail == "720 of 2160 targets: SOLUSDT"
    assert by_name["fallback_rate.regime"].value == 0.0
    assert by_name["fallback_rate.per_symbol"].value == 1.0
    assert "SOLUSDT 100.0% (alpha)" in by_name["fallback_rate.per_symbol"].detail
    stale = {c.name: c for c in evaluate(window(regime_stale_every=20),
                                         ReadinessConfig()).criteria}
    assert stale["fallback_rate.regime"].value == pytest.approx(36 / 720)


def test_thresholds_are_settings() -> None:
    loose = ReadinessConfig(max_fallback_rate=1.0, max_errors=5, min_cycle_ratio=0.4)
    assert evaluate(window(missing_alpha="SOLUSDT", errors=2, share=0.5), loose).passed
    env = EnvReader({"READINESS_MAX_FALLBACK_RATE": "0.5", "READINESS_MAX_ERRORS": "3"})
    from governor_core.config import read_settings

    config = read_settings(ReadinessConfig, env)
    assert (config.max_fallback_rate, config.max_errors) == (0.5, 3)
    assert ReadinessConfig().max_fallback_rate == 0.01  # the design's "under 1%"


def test_confidence_is_the_share_of_symbols_whose_median_is_above_the_level() -> None:
    # Stale budgets half the time: confidence 0.5 on those targets. Median 0.75 > 0.5.
    rows = [decision(ts, "BTCUSDT", confidence="0.5000" if i % 2 else "1.0000")
            for i, ts in enumerate(cycles())]
    rows += [decision(ts, "ETHUSDT", confidence="0.5000", fallbacks="budget") for ts in cycles()]
    report = evaluate(Evidence(NOW, HOUR, INTERVAL, 300, decisions=rows), ReadinessConfig())
    confidence = next(c for c in report.criteria if c.name == "confidence")
    assert (confidence.status, confidence.value) == ("FAIL", 0.5)
    assert "ETHUSDT" in confidence.detail and "BTCUSDT" not in confidence.detail


def test_what_enforce_would_change_replays_the_permits_through_the_gate() -> None:
    """The issue's case: budget 20,000, target 10,907.99. A 15,000 plan was allowed on the
    budget and would be clamped to the target; a 30,000 clamp tightens; a 5,000 plan is
    the same; a permit older than TARGET_TTL_SEC after the last target, or a DENY, is left."""
    decisions = [decision(NOW - 600, "BTCUSDT")]
    permits = [
        {"symbol": "BTCUSDT", "notional_usd": "15000", "decision": "ALLOW",
         "allowed_notional_usd": "15000", "cap_usd": "20000", "cap_source": "budget",
         "issued_ts": f"{NOW - 590:.3f}"},
        {"symbol": "BTCUSDT", "notional_usd": "30000", "decision": "CLAMP",
         "allowed_notional_usd": "20000", "cap_usd": "20000", "cap_source": "budget",
         "issued_ts": f"{NOW - 500:.3f}"},
        {"symbol": "BTCUSDT", "notional_usd": "5000", "decision": "ALLOW",
         "allowed_notional_usd": "5000", "cap_usd": "20000", "cap_source": "budget",
         "issued_ts": f"{NOW - 400:.3f}"},
        {"symbol": "BTCUSDT", "notional_usd": "15000", "decision": "ALLOW",
         "allowed_notional_usd": "15000", "cap_usd": "20000", "cap_source": "budget",
         "issued_ts": f"{NOW - 100:.3f}"},  # 500 s after the target: expired
        {"symbol": "BTCUSDT", "notional_usd": "15000", "decision": "DENY",
         "allowed_notional_usd": "0", "cap_usd": "20000", "cap_source": "budget",
         "issued_ts": f"{NOW - 590:.3f}"},
        {"symbol": "ETHUSDT", "notional_usd": "15000", "decision": "ALLOW",
         "allowed_notional_usd": "15000", "cap_usd": "", "cap_source": "none",
         "issued_ts": f"{NOW - 590:.3f}"},  # no target computed for it
    ]
    report = evaluate(Evidence(NOW, HOUR, INTERVAL, 300, decisions=decisions,
                               permits=permits), ReadinessConfig())
    changes = next(c for c in report.criteria if c.name == "enforce_changes")
    assert changes.value == pytest.approx(2 / 5) and changes.status == "PASS"
    assert changes.detail == "2 of 5 permits would be decided differently (BTCUSDT)"
    row = report.symbols["BTCUSDT"]
    assert row["permits"] == 4 and row["permits_changed"] == 2
    assert row["notional_removed_usd"] == pytest.approx((15000 - 10907.99) + (20000 - 10907.99))
    assert row["change"] == pytest.approx(10907.99 / 20000 - 1)
    strict = evaluate(Evidence(NOW, HOUR, INTERVAL, 300, decisions=decisions, permits=permits),
                      ReadinessConfig(max_changed_permit_rate=0.1))
    assert "enforce_changes" in [c.name for c in strict.failing]


@pytest.mark.parametrize(("multipliers", "changes"), [
    ([1.2, 1.0, 1.2], 0),       # 1.0 has no sign: no change (docstring example)
    ([1.2, 1.0, 0.8], 1),       # docstring example
    ([1.2, 0.8, 1.2, 0.8], 3),
    ([1.0, 1.0, 1.0], 0),
    ([0.5, 0.6, 0.7], 0),
    ([], 0),
])
def test_oscillation_counts_sign_changes_of_multiplier_minus_one(multipliers, changes) -> None:
    series = [(NOW + 10 * i, m) for i, m in enumerate(multipliers)]  # < 1 h: per 1 h
    assert oscillations_per_hour(series) == changes


def test_oscillation_is_per_hour_of_the_span() -> None:
    series = [(NOW + 1800 * i, 1.2 if i % 2 else 0.8) for i in range(9)]  # 4 h, 8 changes
    assert oscillations_per_hour(series) == 2.0
    assert oscillations_per_hour(list(reversed(series))) == 2.0  # sorted by time first


def test_quantile_is_nearest_rank() -> None:
    assert [quantile([1.0, 2.0, 3.0, 4.0, 5.0], q) for q in (0, 0.5, 1)] == [1.0, 3.0, 5.0]


def test_no_proposals_is_skip_not_fail() -> None:
    report = evaluate(window(proposals=False), ReadinessConfig())
    statuses = {c.name: c.status for c in report.criteria}
    assert statuses["proposals.coverage"] == statuses["proposals.oscillation"] == "SKIP"
    assert report.passed


def test_proposal_coverage_is_the_share_ok() -> None:
    evidence = window()
    props = [dict(p, reason="missing_eff") if i % 5 == 0 else p
             for i, p in enumerate(evidence.proposals)]
    report = evaluate(Evidence(NOW, HOUR, INTERVAL, 300, decisions=evidence.decisions,
                               proposals=props), ReadinessConfig())
    coverage = next(c for c in report.criteria if c.name == "proposals.coverage")
    assert coverage.value == pytest.approx(0.8) and coverage.status == "FAIL"


# -- the JSON object (docs/schema.md, "Readiness report") --------------------------------

CRITERION_KEYS = {"name": str, "status": str, "value": (int, float, type(None)),
                  "threshold": str, "detail": str}
SYMBOL_KEYS = {"budget_usd", "target_usd", "change", "permits", "permits_changed",
               "notional_removed_usd"}


def test_json_schema() -> None:
    evidence = window(missing_alpha="SOLUSDT")
    report = evaluate(evidence, ReadinessConfig())
    data = json.loads(json.dumps(promotion.as_json(report, evidence)))
    assert set(data) == {"schema", "passed", "now", "window_sec", "counts", "criteria",
                         "failing", "symbols"}
    assert data["schema"] == "quantum.readiness/1" and data["passed"] is False
    assert data["window_sec"] == HOUR and data["now"] == NOW
    assert data["counts"] == {"decisions": 2160, "proposals": 1080, "permits": 0, "errors": 0}
    assert [c["name"] for c in data["criteria"]] == list(CRITERIA)
    for item in data["criteria"]:
        assert set(item) == set(CRITERION_KEYS)
        for key, kind in CRITERION_KEYS.items():
            assert isinstance(item[key], kind), (item, key)
        assert item["status"] in ("PASS", "FAIL", "SKIP", "INFO")
    assert data["failing"] == ["fallback_rate.alpha", "fallback_rate.per_symbol"]
    assert set(data["symbols"]) == set(SYMBOLS)
    for row in data["symbols"].values():
        assert set(row) == SYMBOL_KEYS


@pytest.mark.parametrize(("text", "seconds"), [("24h", 86400), ("30m", 1800), ("90s", 90),
                                               ("2d", 172800), ("600", 600), ("1.5h", 5400)])
def test_window_durations(text: str, seconds: float) -> None:
    assert promotion.parse_window(text) == seconds


@pytest.mark.parametrize("text", ["", "0h", "-1h", "1w", "h", "1 h 2"])
def test_bad_window_is_one_line(text: str) -> None:
    from governor_core.runtime import StartupError

    with pytest.raises(StartupError, match="--window"):
        promotion.parse_window(text)


@pytest.mark.redis
def test_the_reader_pages_through_the_window(real_redis, monkeypatch) -> None:
    monkeypatch.setattr(promotion, "PAGE", 7)
    now_ms = int(NOW * 1000)
    for index in range(30):  # ids 1 s apart, the last 29 s before NOW
        real_redis.xadd("quantum:stream:allocation.decision",
                        decision(NOW - 29 + index, "BTCUSDT"),
                        id=f"{now_ms - 29_000 + index * 1000}-0")
    real_redis.xadd("quantum:stream:allocation.errors", {"ts": "1", "kind": "read",
                                                         "detail": "x"},
                    id=f"{now_ms - 5000}-0")
    config = AllocationConfig.from_env(EnvReader({}))
    evidence = promotion.read_evidence(real_redis, config, 20.5, NOW)
    assert len(evidence.decisions) == 21  # ids within the last 20.5 s, across 3 pages
    assert [e["timestamp"] for e in evidence.decisions] == [
        f"{NOW - 20 + i:.3f}" for i in range(21)]
    assert len(evidence.errors) == 1 and evidence.permits == [] and evidence.proposals == []


def test_a_trimmed_stream_is_named_as_the_cause_of_too_few_cycles() -> None:
    report = evaluate(window(share=0.25), ReadinessConfig())
    cycles_line = report.criteria[0]
    assert cycles_line.status == "FAIL"
    assert "starts 2705 s into the window" in cycles_line.detail  # first cycle at +5 s
    assert "P29_STREAM_MAXLEN must be >= 3 symbols x 720 cycles = 2160 entries" in (
        cycles_line.detail)
    assert evaluate(window(), ReadinessConfig()).criteria[0].detail == ""
