"""Table tests of the P3.1 downsize hint: read_efficiency → downsize_hint → hint_fields."""

from __future__ import annotations

import logging

import pytest
from p31_efficiency.formula import EfficiencyConfig, downsize_hint, hint_fields

from governor_core.config import ConfigError, EnvReader
from governor_core.efficiency import (
    LOG_INTERVAL_SEC,
    REDIS_ERROR,
    EfficiencyReader,
    read_efficiency,
)

NOW = 1_700_000_000.0
CONFIG = EfficiencyConfig()  # design defaults: 0.65, 0.45, 0.25, 120, 600


def fields_for(hash_fields: dict[str, str] | None,
               config: EfficiencyConfig = CONFIG) -> dict[str, str]:
    reading = read_efficiency(hash_fields, NOW, min_conf=config.min_conf,
                              stale_sec=config.eff_ttl_sec)
    return hint_fields(reading, downsize_hint(reading, config))


def eff(score: str, conf: str = "0.9", age: float = 10.0) -> dict[str, str]:
    return {"efficiency_score": score, "confidence": conf, "ts": str(NOW - age),
            "mode": "enforce"}


def permit(score: str, conf: str, stale: str, factor: str, action: str, reason: str,
           cooldown: str) -> dict[str, str]:
    return {"eff_score": score, "eff_confidence": conf, "eff_stale": stale,
            "eff_factor": factor, "eff_action": action, "eff_reason": reason,
            "downsize_factor": factor, "extra_cooldown_sec": cooldown}


NO_HINT_MISSING = permit("", "", "0", "1.0000", "NONE", "missing_eff", "0")
NO_HINT_INVALID = permit("", "", "0", "1.0000", "NONE", "invalid_eff", "0")


@pytest.mark.parametrize(("hash_fields", "expected"), [
    # the design's worked example: max(0.25, 0.2/0.45) = 0.4444, round(0.8 * 120) = 96
    (eff("0.2"), permit("0.2000", "0.9000", "0", "0.4444", "DOWNSIZE", "ok", "96")),
    # threshold boundary: score == threshold is not below it
    (eff("0.45"), permit("0.4500", "0.9000", "0", "1.0000", "NONE", "ok", "0")),
    (eff("0.4499"), permit("0.4499", "0.9000", "0", "0.9998", "DOWNSIZE", "ok", "66")),
    # the floor: 0.05 / 0.45 = 0.111 < 0.25
    (eff("0.05"), permit("0.0500", "0.9000", "0", "0.2500", "DOWNSIZE", "ok", "114")),
    (eff("0"), permit("0.0000", "0.9000", "0", "0.2500", "DOWNSIZE", "ok", "120")),
    (eff("0.0"), permit("0.0000", "0.9000", "0", "0.2500", "DOWNSIZE", "ok", "120")),
    (eff("0.8"), permit("0.8000", "0.9000", "0", "1.0000", "NONE", "ok", "0")),
    (eff("1"), permit("1.0000", "0.9000", "0", "1.0000", "NONE", "ok", "0")),
    # confidence exactly at the minimum is usable
    (eff("0.2", conf="0.65"), permit("0.2000", "0.6500", "0", "0.4444", "DOWNSIZE", "ok",
                                     "96")),
    # exactly P31_EFF_TTL_SEC old is still fresh; a future ts within the skew is accepted
    (eff("0.2", age=600), permit("0.2000", "0.9000", "0", "0.4444", "DOWNSIZE", "ok", "96")),
    (eff("0.2", age=-30), permit("0.2000", "0.9000", "0", "0.4444", "DOWNSIZE", "ok", "96")),
    # surrounding blanks are tolerated in the producer's numbers
    ({"efficiency_score": " 0.2 ", "confidence": "0.9", "ts": f" {NOW} "},
     permit("0.2000", "0.9000", "0", "0.4444", "DOWNSIZE", "ok", "96")),
], ids=["worked-example", "at-threshold", "just-below-threshold", "floor", "zero",
        "zero-decimal", "high", "one", "conf-at-min", "age-at-ttl", "future-within-skew",
        "blanks"])
def test_downsize_hint_table(hash_fields: dict[str, str], expected: dict[str, str]) -> None:
    assert fields_for(hash_fields) == expected


@pytest.mark.parametrize(("hash_fields", "expected"), [
    # missing_eff
    (None, NO_HINT_MISSING),
    ({}, NO_HINT_MISSING),
    ({"mode": "enforce"}, NO_HINT_MISSING),  # none of the three fields the rules read
    # invalid_eff: no score beside the other fields (a producer naming it otherwise)
    ({"confidence": "0.9", "ts": str(NOW)}, NO_HINT_INVALID),
    ({"score": "0.2", "confidence": "0.9", "ts": str(NOW), "mode": "enforce"},
     NO_HINT_INVALID),
    ({"eff_score": "0.2", "ts": str(NOW)}, NO_HINT_INVALID),
    ({"confidence": "0.9"}, NO_HINT_INVALID),
    # stale_eff: older than P31_EFF_TTL_SEC; the stale values are still shown
    (eff("0.2", age=601), permit("0.2000", "0.9000", "1", "1.0000", "NONE", "stale_eff", "0")),
    (eff("0.2", age=86_400), permit("0.2000", "0.9000", "1", "1.0000", "NONE", "stale_eff",
                                    "0")),
    # low_conf
    (eff("0.2", conf="0.3"), permit("0.2000", "0.3000", "0", "1.0000", "NONE", "low_conf",
                                    "0")),
    (eff("0.2", conf="0.6499"), permit("0.2000", "0.6499", "0", "1.0000", "NONE",
                                       "low_conf", "0")),
    ({"efficiency_score": "0.2", "ts": str(NOW)},  # no confidence counts as 0
     permit("0.2000", "0.0000", "0", "1.0000", "NONE", "low_conf", "0")),
    # invalid_eff: the score
    (eff("nan"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("NaN"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("inf"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("-inf"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("abc"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff(""), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("-0.1"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("1.5"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("1e309"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("0_2"), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    # invalid_eff: the confidence
    (eff("0.2", conf="nan"), permit("0.2000", "", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("0.2", conf="1.2"), permit("0.2000", "", "0", "1.0000", "NONE", "invalid_eff", "0")),
    (eff("0.2", conf="-0.5"), permit("0.2000", "", "0", "1.0000", "NONE", "invalid_eff",
                                     "0")),
    (eff("0.2", conf="high"), permit("0.2000", "", "0", "1.0000", "NONE", "invalid_eff",
                                     "0")),
    # invalid_eff: the timestamp (missing, unparseable, future, milliseconds)
    ({"efficiency_score": "0.2", "confidence": "0.9"},
     permit("0.2000", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    ({"efficiency_score": "0.2", "confidence": "0.9", "ts": "yesterday"},
     permit("0.2000", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    ({"efficiency_score": "0.2", "confidence": "0.9", "ts": "inf"},
     permit("0.2000", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    ({"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW + 3600)},
     permit("0.2000", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    ({"efficiency_score": "0.2", "confidence": "0.9", "ts": str(int(NOW * 1000))},
     permit("0.2000", "0.9000", "0", "1.0000", "NONE", "invalid_eff", "0")),
    # malformed wins over stale: an old hash with a bad score is invalid, not stale
    (eff("abc", age=10_000), permit("", "0.9000", "0", "1.0000", "NONE", "invalid_eff",
                                    "0")),
], ids=["none", "empty", "mode-only", "no-score-field", "score-misnamed",
        "eff-score-misnamed", "conf-only", "stale", "very-stale", "low-conf",
        "conf-just-below", "no-conf", "nan", "NaN", "inf", "-inf", "abc", "empty-score",
        "negative", "above-one", "overflow", "underscore", "conf-nan", "conf-above-one",
        "conf-negative", "conf-text", "no-ts", "ts-text", "ts-inf", "ts-future", "ts-ms",
        "invalid-beats-stale"])
def test_fail_open_reasons(hash_fields: dict[str, str] | None,
                           expected: dict[str, str]) -> None:
    assert fields_for(hash_fields) == expected


def test_redis_error_reason() -> None:
    fields = hint_fields(REDIS_ERROR, downsize_hint(REDIS_ERROR, CONFIG))
    assert fields == permit("", "", "0", "1.0000", "NONE", "redis_error", "0")


def test_field_order_is_the_declared_order() -> None:
    assert list(fields_for(eff("0.2"))) == [
        "eff_score", "eff_confidence", "eff_stale", "eff_factor", "eff_action", "eff_reason",
        "downsize_factor", "extra_cooldown_sec"]


@pytest.mark.parametrize(("env", "score", "factor", "cooldown", "action"), [
    ({"P31_DOWNSIZE_THRESHOLD": "0.5"}, "0.2", "0.4000", "96", "DOWNSIZE"),
    ({"P31_MIN_FACTOR": "0.5"}, "0.2", "0.5000", "96", "DOWNSIZE"),
    ({"P31_MAX_EXTRA_COOLDOWN_SEC": "60"}, "0.2", "0.4444", "48", "DOWNSIZE"),
    ({"P31_MAX_EXTRA_COOLDOWN_SEC": "0"}, "0.2", "0.4444", "0", "DOWNSIZE"),
    ({"P31_DOWNSIZE_THRESHOLD": "0.1"}, "0.2", "1.0000", "0", "NONE"),
    # round() is half to even: (1 - 0.5) * 5 = 2.5 → 2
    ({"P31_DOWNSIZE_THRESHOLD": "0.9", "P31_MAX_EXTRA_COOLDOWN_SEC": "5"}, "0.5", "0.5556",
     "2", "DOWNSIZE"),
])
def test_configured_formula(env: dict[str, str], score: str, factor: str, cooldown: str,
                            action: str) -> None:
    config = EfficiencyConfig.from_env(EnvReader(env))
    fields = fields_for(eff(score), config)
    assert (fields["eff_factor"], fields["extra_cooldown_sec"], fields["eff_action"]) == (
        factor, cooldown, action)


def test_configured_staleness_and_confidence() -> None:
    config = EfficiencyConfig.from_env(EnvReader({"P31_EFF_TTL_SEC": "5",
                                                  "P31_MIN_CONF": "0.95"}))
    assert fields_for(eff("0.2", age=6), config)["eff_reason"] == "stale_eff"
    assert fields_for(eff("0.2", conf="0.9", age=1), config)["eff_reason"] == "low_conf"
    assert fields_for(eff("0.2", conf="0.95", age=1), config)["eff_reason"] == "ok"


def test_default_config_is_the_design() -> None:
    assert EfficiencyConfig.from_env(EnvReader({})) == EfficiencyConfig(0.65, 0.45, 0.25, 120,
                                                                        600.0)


@pytest.mark.parametrize(("name", "value"), [
    ("P31_MIN_CONF", "abc"), ("P31_MIN_CONF", "1.5"), ("P31_MIN_CONF", "nan"),
    ("P31_DOWNSIZE_THRESHOLD", "0"), ("P31_DOWNSIZE_THRESHOLD", "-0.1"),
    ("P31_MIN_FACTOR", "2"), ("P31_MAX_EXTRA_COOLDOWN_SEC", "1.5"),
    ("P31_MAX_EXTRA_COOLDOWN_SEC", "-1"), ("P31_EFF_TTL_SEC", "soon"),
])
def test_bad_plugin_config_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EfficiencyConfig.from_env(EnvReader({name: value}))
    assert caught.value.name == name
    assert name in str(caught.value)


# -- a hash without its score is visible: invalid_eff and a log line ---------------------


def judge_hashes(reader: EfficiencyReader, hashes: dict[str, dict[str, str]],
                 now: float) -> list[str]:
    """The reasons of ``reader`` for each symbol's hash, through its commands' replies."""
    symbols = sorted(hashes)
    commands = reader.commands(symbols)
    replies = [[hashes[symbol].get(name) for name in command[2:]]
               for symbol, command in zip(symbols, commands, strict=True)]
    return [reading.reason for reading in reader.judge(replies, now)]


def test_a_hash_without_a_score_is_logged_with_the_fields_it_has(
        caplog: pytest.LogCaptureFixture) -> None:
    reader = EfficiencyReader(min_conf=0.65, stale_sec=600)
    hashes = {"BTCUSDT": {"score": "0.2", "confidence": "0.9", "ts": str(NOW)},
              "ETHUSDT": {"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW)},
              "SOLUSDT": {}}
    with caplog.at_level(logging.WARNING, logger="quantum.efficiency"):
        assert judge_hashes(reader, hashes, NOW) == ["invalid_eff", "ok", "missing_eff"]
    [record] = caplog.records
    message = record.getMessage()
    assert "quantum:capital:efficiency:BTCUSDT" in message
    assert "no efficiency_score but has confidence, ts" in message
    assert record.symbol == "BTCUSDT"


def test_the_log_line_comes_once_per_symbol_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    reader = EfficiencyReader(min_conf=0.65, stale_sec=600)
    hashes = {"BTCUSDT": {"ts": str(NOW)}, "ETHUSDT": {"confidence": "0.5"}}
    with caplog.at_level(logging.WARNING, logger="quantum.efficiency"):
        for step in range(100):  # a governor batch every 10 ms for a second
            judge_hashes(reader, hashes, NOW + step / 100)
        assert [r.symbol for r in caplog.records] == ["BTCUSDT", "ETHUSDT"]
        judge_hashes(reader, hashes, NOW + LOG_INTERVAL_SEC - 1)
        assert len(caplog.records) == 2
        judge_hashes(reader, hashes, NOW + LOG_INTERVAL_SEC)
        assert len(caplog.records) == 4
    assert "has ts:" in caplog.records[0].getMessage()
    assert "has confidence:" in caplog.records[1].getMessage()


@pytest.mark.parametrize(("score", "confidence", "action", "reason", "recorded"), [
    # judged at the 4 decimals the permit records: 0.44996 is 0.4500, not below 0.45
    ("0.44996", "0.9", "NONE", "ok", "0.4500"),
    ("0.44994", "0.9", "DOWNSIZE", "ok", "0.4499"),
    # a confidence of 0.64996 is recorded as 0.6500 and passes P31_MIN_CONF=0.65
    ("0.2", "0.64996", "DOWNSIZE", "ok", "0.2000"),
    ("0.2", "0.64994", "NONE", "low_conf", "0.2000"),
])
def test_the_decision_follows_the_recorded_precision(score: str, confidence: str, action: str,
                                                     reason: str, recorded: str) -> None:
    """What a permit records is what was decided on (issue 15: what-if replays it exactly)."""
    config = CONFIG
    reading = read_efficiency({"efficiency_score": score, "confidence": confidence,
                               "ts": "1000"}, 1000.0, min_conf=config.min_conf,
                              stale_sec=config.eff_ttl_sec)
    fields = hint_fields(reading, downsize_hint(reading, config))
    assert (fields["eff_action"], fields["eff_reason"], fields["eff_score"]) == (
        action, reason, recorded)
