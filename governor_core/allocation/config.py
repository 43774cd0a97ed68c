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
from governor_core.config import CommonConfig, ConfigError, EnvReader, read_settings, setting

MODES = ("shadow", "enforce")


@dataclass(frozen=True, slots=True)
class AllocationConfig:
    common: CommonConfig
    formula: FormulaConfig
    #: symbol → cluster from ``P29_CLUSTER_MAP_FILE``; ``None`` means read the Redis hash.
    cluster_map: Mapping[str, str] | None
    mode: str = setting("P29_MODE", "shadow", choices=MODES)
    interval_sec: float = setting("P29_INTERVAL_SEC", 5.0, min=0.05, max=3600.0)
    metrics_port: int = setting("P29_METRICS_PORT", 8059, min=0, max=65535)
    stale_data_sec: float = setting("STALE_DATA_SEC", 60.0, min=0.0)
    target_ttl_sec: int = setting("TARGET_TTL_SEC", 300, min=1)
    stream_maxlen: int = setting("P29_STREAM_MAXLEN", 100_000, min=100)

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> AllocationConfig:
        env = env or EnvReader()
        formula = read_settings(FormulaConfig, env)
        if formula.dd_high_threshold < formula.dd_low_threshold:
            raise ConfigError("DD_HIGH_THRESHOLD", str(formula.dd_high_threshold),
                              f"a number >= DD_LOW_THRESHOLD ({formula.dd_low_threshold})")
        if formula.cluster_stress_max < formula.cluster_stress_min:
            raise ConfigError("CLUSTER_STRESS_MAX", str(formula.cluster_stress_max),
                              f"a number >= CLUSTER_STRESS_MIN ({formula.cluster_stress_min})")
        map_file = env.optional_str("P29_CLUSTER_MAP_FILE")
        return read_settings(cls, env, common=CommonConfig.from_env(env), formula=formula,
                        cluster_map=None if map_file is None else load_cluster_map(map_file))


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
