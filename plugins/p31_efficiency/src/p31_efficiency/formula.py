"""The downsize hint: a pure function of an efficiency reading and the plugin's config.

::

    no usable score      → NONE,     factor 1.0, extra cooldown 0
    score < threshold    → DOWNSIZE, factor max(min_factor, score / threshold),
                                     extra cooldown round((1 - score) × max_extra_cooldown)
    otherwise            → NONE,     factor 1.0, extra cooldown 0

``round`` is Python's (half to even), as in the design's reference code. Worked example of
the design: score 0.2, threshold 0.45, min 0.25, max 120 s → factor 0.4444, cooldown 96 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from governor_core.plugin_api import (
    ConfigError,
    EfficiencyReading,
    EnvReader,
    fmt4,
    read_settings,
    setting,
)

ACTIONS = ("NONE", "DOWNSIZE")


@dataclass(frozen=True, slots=True)
class EfficiencyConfig:
    min_conf: float = setting("P31_MIN_CONF", 0.65, min=0.0, max=1.0)
    downsize_threshold: float = setting("P31_DOWNSIZE_THRESHOLD", 0.45, min=0.0, max=1.0)
    min_factor: float = setting("P31_MIN_FACTOR", 0.25, min=0.0, max=1.0)
    max_extra_cooldown_sec: int = setting("P31_MAX_EXTRA_COOLDOWN_SEC", 120, min=0)
    eff_ttl_sec: float = setting("P31_EFF_TTL_SEC", 600.0, min=0.0)

    @classmethod
    def from_env(cls, env: EnvReader) -> EfficiencyConfig:
        config = read_settings(cls, env)
        if config.downsize_threshold <= 0.0:
            raise ConfigError("P31_DOWNSIZE_THRESHOLD", str(config.downsize_threshold),
                              "a number > 0 (it divides the score)")
        return config


@dataclass(frozen=True, slots=True)
class DownsizeHint:
    action: str
    factor: float
    extra_cooldown_sec: int
    reason: str


def downsize_hint(reading: EfficiencyReading, config: EfficiencyConfig) -> DownsizeHint:
    if not reading.usable or reading.score is None:
        return DownsizeHint("NONE", 1.0, 0, reading.reason)
    score = reading.score
    if score < config.downsize_threshold:
        factor = max(config.min_factor, score / config.downsize_threshold)
        cooldown = round((1.0 - score) * config.max_extra_cooldown_sec)
        return DownsizeHint("DOWNSIZE", factor, cooldown, reading.reason)
    return DownsizeHint("NONE", 1.0, 0, reading.reason)


PERMIT_FIELDS = ("eff_score", "eff_confidence", "eff_stale", "eff_factor", "eff_action",
                 "eff_reason", "downsize_factor", "extra_cooldown_sec")


def hint_fields(reading: EfficiencyReading, hint: DownsizeHint) -> dict[str, str]:
    """The permit fields of SPEC 3.3, in :data:`PERMIT_FIELDS` order."""
    factor = fmt4(hint.factor)
    return {
        "eff_score": fmt4(reading.score),
        "eff_confidence": fmt4(reading.confidence),
        "eff_stale": "1" if reading.stale else "0",
        "eff_factor": factor,
        "eff_action": hint.action,
        "eff_reason": hint.reason,
        "downsize_factor": factor,
        "extra_cooldown_sec": str(hint.extra_cooldown_sec),
    }
