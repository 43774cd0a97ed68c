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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from governor_core.plugin_api import (
    ConfigError,
    EfficiencyReader,
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
    #: A symbol's efficiency hash is read again once its last read is this old (0: every
    #: batch). See :mod:`p31_efficiency.plugin`: at 1,000 symbols each plan of a drain
    #: would otherwise read a hash of its own.
    reread_sec: float = setting("P31_REREAD_SEC", 1.0, min=0.0, max=60.0)

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


# -- what-if (``quantum-governor what-if``, SPEC 8) ------------------------------------------

#: The permit fields that record the hint's inputs (kept as recorded by a replay) and those
#: the formula computes from them (recomputed).
INPUT_FIELDS = ("eff_score", "eff_confidence", "eff_stale")
OUTPUT_FIELDS = ("eff_factor", "eff_action", "eff_reason", "downsize_factor",
                 "extra_cooldown_sec")
def replay_permits(permits: Sequence[Mapping[str, str]],
                   config: EfficiencyConfig) -> list[dict[str, str] | None]:
    """Each recorded permit's :data:`OUTPUT_FIELDS` recomputed under ``config`` by
    :func:`downsize_hint` and :func:`hint_fields`, the same functions the plugin runs;
    ``None`` for a permit without ``eff_reason`` (this plugin wrote nothing on it). Never
    raises: malformed recorded values are judged as malformed efficiency data is."""
    reader = EfficiencyReader(min_conf=config.min_conf, stale_sec=config.eff_ttl_sec)
    replayed: list[dict[str, str] | None] = []
    for permit in permits:
        if "eff_reason" not in permit:
            replayed.append(None)
            continue
        reading = reader.recorded(permit["eff_reason"], permit.get("eff_score"),
                                  permit.get("eff_confidence"), permit.get("eff_stale") == "1")
        fields = hint_fields(reading, downsize_hint(reading, config))
        replayed.append({name: fields[name] for name in OUTPUT_FIELDS})
    return replayed


#: How ``quantum-governor what-if`` finds this formula: through the plugin's entry point
#: (``p31_efficiency.plugin:plugin``), in the ``formula`` module of its package. ``config``
#: validates the settings (``from_env``) and lists them (its :func:`setting` fields);
#: ``fixed`` names the settings a replay cannot honour, and why.
WHAT_IF = {
    "evidence": "permits",
    "config": EfficiencyConfig,
    "replay": replay_permits,
    "fields": OUTPUT_FIELDS,
    "fixed": {"P31_EFF_TTL_SEC": "a permit records whether its reading was stale, not its "
                                 "age: recorded staleness is kept",
              "P31_REREAD_SEC": "when a hash was read again changes what was read, which "
                                "the record cannot tell"},
}
