"""The shadow multiplier (SPEC 4.1): a pure function of an efficiency reading and config.

::

    no usable score (missing / stale / low_conf / invalid / redis error) → 1.0, that reason
    otherwise → clamp(P31_MIN_MULT, P31_MAX_MULT, P31_BASE + P31_SCALE × (score − 0.5)), "ok"
    proposed_target = base_target × multiplier

With the defaults: score 0.0 → 0.5, 0.3 → 0.8, 0.5 → 1.0, 0.9 → 1.4, 1.0 → 1.5.
"""

from __future__ import annotations

from dataclasses import dataclass

from governor_core.allocation.publish import fmt_usd
from governor_core.config import ConfigError, EnvReader
from governor_core.efficiency import EfficiencyReading, fmt4
from governor_core.redis_io import Packed, bulk

DEFAULT_STREAM = "quantum:stream:allocation.target.proposed"
PROPOSED_KEY = "quantum:allocation:target:proposed:{}"
#: Keys the host owns; the proposal stream may never be pointed at them.
FORBIDDEN_STREAMS = ("quantum:stream:allocation.decision",)
LIVE_TARGET_PREFIX = "quantum:allocation:target:"


@dataclass(frozen=True, slots=True)
class ShadowConfig:
    min_conf: float = 0.65
    stale_sec: float = 600.0
    min_mult: float = 0.5
    max_mult: float = 1.5
    scale: float = 1.0
    base: float = 1.0
    loop_interval_sec: float = 10.0
    stream: str = DEFAULT_STREAM
    stream_maxlen: int = 100_000
    key_ttl_sec: int = 600

    @classmethod
    def from_env(cls, env: EnvReader) -> ShadowConfig:
        config = cls(
            min_conf=env.float("P31_MIN_CONF", 0.65, min=0.0, max=1.0),
            stale_sec=env.float("P31_STALE_SEC", 600.0, min=0.0),
            min_mult=env.float("P31_MIN_MULT", 0.5, min=0.0),
            max_mult=env.float("P31_MAX_MULT", 1.5, min=0.0),
            scale=env.float("P31_SCALE", 1.0),
            base=env.float("P31_BASE", 1.0),
            loop_interval_sec=env.float("LOOP_INTERVAL_SEC", 10.0, min=0.0),
            stream=env.str("PROPOSE_STREAM_NAME", DEFAULT_STREAM),
            stream_maxlen=env.int("PROPOSE_STREAM_MAXLEN", 100_000, min=100),
            key_ttl_sec=env.int("PROPOSE_KEY_TTL", 600, min=1),
        )
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
                    reading: EfficiencyReading, ts_epoch: int) -> dict[str, str]:
    """The stream entry of SPEC 4.1; USD amounts formatted as the host's targets."""
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
        "mode": "shadow",
    }


class ProposalWriter:
    """Encodes one loop's writes straight to RESP: per symbol the stream entry, the
    proposal hash and its TTL, with exactly the fields of :func:`proposal_fields` (a test
    decodes them and compares). The fields that depend only on the efficiency reading are
    encoded once per distinct reading; per symbol only the two amounts and the multiplier.
    """

    def __init__(self, config: ShadowConfig, ts_epoch: int) -> None:
        ts = str(ts_epoch)
        self._xadd = "*26\r\n" + "".join(map(bulk, (
            "XADD", config.stream, "MAXLEN", "~", str(config.stream_maxlen), "*",
            "ts_epoch", ts, "symbol")))
        self._hset = "*24\r\n" + bulk("HSET")
        self._hash_tail = bulk("ts_epoch") + bulk(ts)
        self._last_update = bulk("last_update_ts_epoch") + bulk(ts)
        self._expire = "*3\r\n" + bulk("EXPIRE")
        self._ttl = bulk(str(config.key_ttl_sec))
        self._readings: dict[EfficiencyReading, str] = {}

    def _reading(self, reading: EfficiencyReading) -> str:
        text = self._readings.get(reading)
        if text is None:
            text = self._readings[reading] = "".join(map(bulk, (
                "eff_score", fmt4(reading.score), "eff_confidence", fmt4(reading.confidence),
                "eff_stale", "1" if reading.stale else "0", "reason", reading.reason,
                "mode", "shadow")))
        return text

    def commands(self, symbol: str, base_target: float, multiplier: float,
                 reading: EfficiencyReading) -> tuple[Packed, Packed, Packed]:
        base = fmt_usd(base_target)
        proposed = fmt_usd(base_target * multiplier)
        mult = fmt4(multiplier)
        amounts = (f"$11\r\nbase_target\r\n${len(base)}\r\n{base}\r\n"
                   f"$15\r\nproposed_target\r\n${len(proposed)}\r\n{proposed}\r\n"
                   f"$10\r\nmultiplier\r\n${len(mult)}\r\n{mult}\r\n"
                   f"{self._reading(reading)}")
        name = bulk(symbol)
        key = bulk(PROPOSED_KEY.format(symbol))
        return (Packed(f"{self._xadd}{name}{amounts}".encode()),
                Packed(f"{self._hset}{key}{self._hash_tail}$6\r\nsymbol\r\n{name}{amounts}"
                       f"{self._last_update}".encode()),
                Packed(f"{self._expire}{key}{self._ttl}".encode()))
