"""The shadow multiplier (SPEC 4.1): a pure function of an efficiency reading and config.

::

    no usable score (missing / stale / low_conf / invalid / redis error) → 1.0, that reason
    otherwise → clamp(P31_MIN_MULT, P31_MAX_MULT, P31_BASE + P31_SCALE × (score − 0.5)), "ok"
    proposed_target = base_target × multiplier

With the defaults: score 0.0 → 0.5, 0.3 → 0.8, 0.5 → 1.0, 0.9 → 1.4, 1.0 → 1.5.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from governor_core.plugin_api import (
    DECISION_STREAM,
    PROPOSAL_PREFIX,
    PROPOSAL_STREAM,
    TARGET_PREFIX,
    CommandTemplate,
    ConfigError,
    EfficiencyReader,
    EfficiencyReading,
    EnvReader,
    Group,
    Packed,
    RowTemplate,
    Slot,
    field_pairs,
    fmt4,
    fmt_usd,
    fmt_usd_column,
    read_settings,
    setting,
)

DEFAULT_STREAM = PROPOSAL_STREAM
PROPOSED_PREFIX = PROPOSAL_PREFIX
PROPOSED_KEY = PROPOSED_PREFIX + "{}"
#: Keys the host owns; the proposal stream may never be pointed at them.
FORBIDDEN_STREAMS = (DECISION_STREAM,)
LIVE_TARGET_PREFIX = TARGET_PREFIX
#: A proposal's stream entry fields, in order; its hash holds them and
#: ``last_update_ts_epoch``.
PROPOSAL_FIELDS = ("ts_epoch", "symbol", "base_target", "proposed_target", "multiplier",
                   "eff_score", "eff_confidence", "eff_stale", "reason", "mode", "config_id")
#: Every proposal's ``mode``: it is never a live target.
PROPOSAL_MODE = "shadow"


@dataclass(frozen=True, slots=True)
class ShadowConfig:
    min_conf: float = setting("P31_MIN_CONF", 0.65, min=0.0, max=1.0)
    stale_sec: float = setting("P31_STALE_SEC", 600.0, min=0.0)
    min_mult: float = setting("P31_MIN_MULT", 0.5, min=0.0)
    max_mult: float = setting("P31_MAX_MULT", 1.5, min=0.0)
    scale: float = setting("P31_SCALE", 1.0)
    base: float = setting("P31_BASE", 1.0)
    loop_interval_sec: float = setting("LOOP_INTERVAL_SEC", 10.0, min=0.0)
    stream: str = setting("PROPOSE_STREAM_NAME", DEFAULT_STREAM)
    stream_maxlen: int = setting("PROPOSE_STREAM_MAXLEN", 100_000, min=100)
    key_ttl_sec: int = setting("PROPOSE_KEY_TTL", 600, min=1)

    @classmethod
    def from_env(cls, env: EnvReader) -> ShadowConfig:
        config = read_settings(cls, env)
        if config.max_mult < config.min_mult:
            raise ConfigError("P31_MAX_MULT", str(config.max_mult),
                              f"a number >= P31_MIN_MULT ({config.min_mult})")
        if config.stream in FORBIDDEN_STREAMS or config.stream.startswith(LIVE_TARGET_PREFIX):
            raise ConfigError("PROPOSE_STREAM_NAME", config.stream,
                              "a stream of its own (not the host's decision stream or a "
                              "target key)")
        return config


@dataclass(frozen=True, slots=True)
class ShadowProposal:
    multiplier: float
    proposed_target: float
    reason: str


def shadow_multiplier(reading: EfficiencyReading, config: ShadowConfig) -> float:
    if not reading.usable or reading.score is None:
        return 1.0
    raw = config.base + config.scale * (reading.score - 0.5)
    return max(config.min_mult, min(config.max_mult, raw))


def propose(base_target: float, reading: EfficiencyReading,
            config: ShadowConfig) -> ShadowProposal:
    multiplier = shadow_multiplier(reading, config)
    return ShadowProposal(multiplier, base_target * multiplier, reading.reason)


def proposal_fields(symbol: str, base_target: float, proposal: ShadowProposal,
                    reading: EfficiencyReading, ts_epoch: int,
                    config_id: str = "") -> dict[str, str]:
    """The stream entry of SPEC 4.1, in :data:`PROPOSAL_FIELDS` order; USD amounts
    formatted as the host's targets; ``config_id`` is the allocation host's (its snapshot
    holds this plugin's settings, SPEC 8)."""
    return {
        "ts_epoch": str(ts_epoch),
        "symbol": symbol,
        "base_target": fmt_usd(base_target),
        "proposed_target": fmt_usd(proposal.proposed_target),
        "multiplier": fmt4(proposal.multiplier),
        "eff_score": fmt4(reading.score),
        "eff_confidence": fmt4(reading.confidence),
        "eff_stale": "1" if reading.stale else "0",
        "reason": proposal.reason,
        "mode": PROPOSAL_MODE,
        "config_id": config_id,
    }


#: Per symbol: the stream entry, the proposal hash, its TTL.
_PROPOSAL_ROW = RowTemplate(
    CommandTemplate("XADD", Slot("stream"), "MAXLEN", "~", Slot("stream_maxlen"), "*",
                    *field_pairs(PROPOSAL_FIELDS)),
    CommandTemplate("HSET", Slot("key"),
                    *field_pairs((*PROPOSAL_FIELDS, "last_update_ts_epoch"))),
    CommandTemplate("EXPIRE", Slot("key"), Slot("ttl")))


def _reading_columns(readings: list[EfficiencyReading]) -> Mapping[str, list[str]]:
    return {"eff_score": [fmt4(reading.score) for reading in readings],
            "eff_confidence": [fmt4(reading.confidence) for reading in readings],
            "eff_stale": ["1" if reading.stale else "0" for reading in readings],
            "reason": [reading.reason for reading in readings]}


def proposal_chunks(config: ShadowConfig, ts_epoch: int, symbols: Sequence[str],
                    base_targets: Sequence[float], multipliers: Sequence[float],
                    readings: Sequence[EfficiencyReading],
                    chunk_symbols: int, config_id: str = "") -> Iterator[Packed]:
    """One loop's writes, straight to RESP: per symbol the stream entry, the proposal hash
    and its TTL, with exactly the fields of :func:`proposal_fields` (a test decodes them and
    compares), in chunks of ``chunk_symbols`` symbols.

    Encoded column by column (:class:`~governor_core.wire.RowTemplate`): each column of
    numbers in one list comprehension, the fields that depend only on the efficiency
    reading once per distinct reading.
    """
    ts = str(ts_epoch)
    per_loop = {"stream": config.stream, "stream_maxlen": str(config.stream_maxlen),
                "ts_epoch": ts, "mode": PROPOSAL_MODE, "last_update_ts_epoch": ts,
                "ttl": str(config.key_ttl_sec), "config_id": config_id}
    per_symbol = {
        "symbol": symbols,
        "key": [PROPOSED_PREFIX + symbol for symbol in symbols],
        "base_target": fmt_usd_column(base_targets),
        "proposed_target": fmt_usd_column([target * multiplier for target, multiplier in zip(
            base_targets, multipliers, strict=True)]),
        "multiplier": [f"{multiplier:.4f}" for multiplier in multipliers],
    }
    yield from _PROPOSAL_ROW.chunks(
        tick=per_loop, columns=per_symbol, groups=[Group(readings, _reading_columns)],
        chunk_rows=chunk_symbols)


# -- what-if (``quantum-governor what-if``, SPEC 8) ------------------------------------------

#: The proposal fields a replay recomputes from the entry's reading and compares with the
#: recorded ones. It also recomputes ``proposed_target``, but from the recorded
#: ``base_target`` (8 decimals), so that one may differ from the record in the 8th decimal
#: with nothing changed: it is reported (summed), not compared.
REPLAYED_FIELDS = ("multiplier", "reason")
def _amount(text: str | None) -> float | None:
    """A recorded USD amount (``fmt_usd``'s plain decimal), or None when unusable."""
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0.0 else None


def replay_proposals(entries: Sequence[Mapping[str, str]],
                     config: ShadowConfig) -> list[dict[str, str] | None]:
    """Each recorded proposal's :data:`REPLAYED_FIELDS` and ``proposed_target`` recomputed
    under ``config`` by :func:`propose`, as the plugin computes them; ``None`` for an entry
    without ``reason`` or a usable ``base_target``. Never raises."""
    reader = EfficiencyReader(min_conf=config.min_conf, stale_sec=config.stale_sec)
    replayed: list[dict[str, str] | None] = []
    for entry in entries:
        base_target = _amount(entry.get("base_target"))
        if "reason" not in entry or base_target is None:
            replayed.append(None)
            continue
        reading = reader.recorded(entry["reason"], entry.get("eff_score"),
                                  entry.get("eff_confidence"), entry.get("eff_stale") == "1")
        proposal = propose(base_target, reading, config)
        replayed.append({"proposed_target": fmt_usd(proposal.proposed_target),
                         "multiplier": fmt4(proposal.multiplier), "reason": proposal.reason})
    return replayed


#: How ``quantum-governor what-if`` finds this formula: through the plugin's entry point
#: (``p29_shadow.plugin:plugin``), in the ``formula`` module of its package. ``stream``
#: names the evidence's stream under a configuration.
WHAT_IF = {
    "evidence": "proposals",
    "config": ShadowConfig,
    "replay": replay_proposals,
    "fields": REPLAYED_FIELDS,
    "stream": lambda config: config.stream,
    "fixed": {"P31_STALE_SEC": "a proposal records whether its reading was stale, not its "
                               "age: recorded staleness is kept"},
}
