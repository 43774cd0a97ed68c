"""The shadow multiplier (SPEC 4.1): a pure function of an efficiency reading and config.

::

    no usable score (missing / stale / low_conf / invalid / redis error) → 1.0, that reason
    otherwise → clamp(P31_MIN_MULT, P31_MAX_MULT, P31_BASE + P31_SCALE × (score − 0.5)), "ok"
    proposed_target = base_target × multiplier

With the defaults: score 0.0 → 0.5, 0.3 → 0.8, 0.5 → 1.0, 0.9 → 1.4, 1.0 → 1.5.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from governor_core.allocation.publish import fmt_usd, fmt_usd_column
from governor_core.config import ConfigError, EnvReader
from governor_core.efficiency import EfficiencyReading, fmt4
from governor_core.wire import Packed, bulk, bulk_column

DEFAULT_STREAM = "quantum:stream:allocation.target.proposed"
PROPOSED_PREFIX = "quantum:allocation:target:proposed:"
PROPOSED_KEY = PROPOSED_PREFIX + "{}"
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


def proposal_chunks(config: ShadowConfig, ts_epoch: int, symbols: Sequence[str],
                    base_targets: Sequence[float], multipliers: Sequence[float],
                    readings: Sequence[EfficiencyReading],
                    chunk_symbols: int) -> Iterator[Packed]:
    """One loop's writes, straight to RESP: per symbol the stream entry, the proposal hash
    and its TTL, with exactly the fields of :func:`proposal_fields` (a test decodes them and
    compares), in chunks of ``chunk_symbols`` symbols.

    Encoded column by column: each column of numbers in one list comprehension, the fields
    that depend only on the efficiency reading once per distinct reading, and each symbol's
    three commands in one f-string.
    """
    ts = str(ts_epoch)
    xadd = "*26\r\n" + "".join(map(bulk, (
        "XADD", config.stream, "MAXLEN", "~", str(config.stream_maxlen), "*",
        "ts_epoch", ts, "symbol")))
    hset = "*24\r\n$4\r\nHSET\r\n"
    hash_head = bulk("ts_epoch") + bulk(ts) + "$6\r\nsymbol\r\n"
    last_update = bulk("last_update_ts_epoch") + bulk(ts)
    expire = "*3\r\n$6\r\nEXPIRE\r\n"
    ttl = bulk(str(config.key_ttl_sec))
    # Per distinct reading (in practice nearly one per symbol: scores and times differ).
    texts = dict.fromkeys(readings)
    for reading in texts:
        score, confidence = fmt4(reading.score), fmt4(reading.confidence)
        texts[reading] = (
            f"$9\r\neff_score\r\n${len(score)}\r\n{score}\r\n$14\r\neff_confidence\r\n"
            f"${len(confidence)}\r\n{confidence}\r\n$9\r\neff_stale\r\n$1\r\n"
            f"{1 if reading.stale else 0}\r\n$6\r\nreason\r\n{bulk(reading.reason)}"
            "$4\r\nmode\r\n$6\r\nshadow\r\n")
    tails = list(map(texts.__getitem__, readings))
    base = fmt_usd_column(base_targets)
    proposed = fmt_usd_column([target * multiplier for target, multiplier in zip(
        base_targets, multipliers, strict=True)])
    mult = [f"{multiplier:.4f}" for multiplier in multipliers]
    names = bulk_column(symbols)
    keys = bulk_column([PROPOSED_PREFIX + symbol for symbol in symbols])
    for start in range(0, len(symbols), chunk_symbols):
        end = start + chunk_symbols
        rows = zip(names[start:end], keys[start:end], base[start:end], proposed[start:end],
                   mult[start:end], tails[start:end], strict=True)
        wire = "".join([
            f"{xadd}{n}$11\r\nbase_target\r\n${len(b)}\r\n{b}\r\n$15\r\nproposed_target"
            f"\r\n${len(p)}\r\n{p}\r\n$10\r\nmultiplier\r\n${len(m)}\r\n{m}\r\n{t}"
            f"{hset}{k}{hash_head}{n}$11\r\nbase_target\r\n${len(b)}\r\n{b}\r\n"
            f"$15\r\nproposed_target\r\n${len(p)}\r\n{p}\r\n$10\r\nmultiplier\r\n"
            f"${len(m)}\r\n{m}\r\n{t}{last_update}{expire}{k}{ttl}"
            for n, k, b, p, m, t in rows])
        yield Packed(wire.encode(), 3 * (min(end, len(symbols)) - start))
