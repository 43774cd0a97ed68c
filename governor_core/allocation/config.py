"""The allocation host's configuration (SPEC 4 and 6), read once from the environment.

Variables and defaults are those of ``design/p29_capital_allocation.md``, plus
``P29_STREAM_MAXLEN`` (cap of the decision stream) and ``P29_CLUSTER_MAP_FILE`` (a JSON object
``{"SYMBOL": "cluster", …}`` used instead of the ``quantum:config:symbol.cluster`` hash; it is
read and validated here, at start, so a bad file stops the service with one line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from governor_core.allocation.formula import FormulaConfig
from governor_core.config import CommonConfig, ConfigError, EnvReader

MODES = ("shadow", "enforce")


@dataclass(frozen=True, slots=True)
class AllocationConfig:
    common: CommonConfig
    mode: str
    interval_sec: float
    metrics_port: int
    stale_data_sec: float
    target_ttl_sec: int
    stream_maxlen: int
    formula: FormulaConfig
    #: symbol → cluster from ``P29_CLUSTER_MAP_FILE``; ``None`` means read the Redis hash.
    cluster_map: Mapping[str, str] | None

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> AllocationConfig:
        env = env or EnvReader()
        formula = FormulaConfig(
            regime_trend=env.float("REGIME_FACTOR_TREND", 1.2, min=0.0),
            regime_mr=env.float("REGIME_FACTOR_MR", 1.0, min=0.0),
            regime_chop=env.float("REGIME_FACTOR_CHOP", 0.6, min=0.0),
            dd_low_threshold=env.float("DD_LOW_THRESHOLD", 0.05, min=0.0, max=1.0),
            dd_high_threshold=env.float("DD_HIGH_THRESHOLD", 0.15, min=0.0, max=1.0),
            dd_factor_low=env.float("DD_FACTOR_LOW", 1.0, min=0.0),
            dd_factor_mid=env.float("DD_FACTOR_MID", 0.7, min=0.0),
            dd_factor_high=env.float("DD_FACTOR_HIGH", 0.4, min=0.0),
            cluster_stress_min=env.float("CLUSTER_STRESS_MIN", 0.3, min=0.0, max=1.0),
            cluster_stress_max=env.float("CLUSTER_STRESS_MAX", 1.0, min=0.0, max=1.0),
            max_symbol_pct=env.float("MAX_SYMBOL_PCT", 0.40, min=0.0, max=1.0),
            max_cluster_pct=env.float("MAX_CLUSTER_PCT", 0.60, min=0.0, max=1.0),
        )
        if formula.dd_high_threshold < formula.dd_low_threshold:
            raise ConfigError("DD_HIGH_THRESHOLD", str(formula.dd_high_threshold),
                              f"a number >= DD_LOW_THRESHOLD ({formula.dd_low_threshold})")
        if formula.cluster_stress_max < formula.cluster_stress_min:
            raise ConfigError("CLUSTER_STRESS_MAX", str(formula.cluster_stress_max),
                              f"a number >= CLUSTER_STRESS_MIN ({formula.cluster_stress_min})")
        map_file = env.optional_str("P29_CLUSTER_MAP_FILE")
        return cls(
            common=CommonConfig.from_env(env),
            mode=env.choice("P29_MODE", "shadow", MODES),
            interval_sec=env.float("P29_INTERVAL_SEC", 5.0, min=0.05, max=3600.0),
            metrics_port=env.int("P29_METRICS_PORT", 8059, min=0, max=65535),
            stale_data_sec=env.float("STALE_DATA_SEC", 60.0, min=0.0),
            target_ttl_sec=env.int("TARGET_TTL_SEC", 300, min=1),
            stream_maxlen=env.int("P29_STREAM_MAXLEN", 100_000, min=100),
            formula=formula,
            cluster_map=None if map_file is None else load_cluster_map(map_file),
        )


def load_cluster_map(path: str) -> Mapping[str, str]:
    """Read a ``{"SYMBOL": "cluster"}`` JSON file; any problem is a ConfigError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise ConfigError("P29_CLUSTER_MAP_FILE", path,
                          f"a readable JSON file ({exc.strerror})") from None
    except ValueError as exc:
        raise ConfigError("P29_CLUSTER_MAP_FILE", path, f"valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()):
        raise ConfigError("P29_CLUSTER_MAP_FILE", path,
                          'a JSON object of symbol → non-empty cluster id strings')
    return MappingProxyType(dict(data))
