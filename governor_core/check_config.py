"""``check-config``: is this environment one the services can start and run with?

It checks, printing one ``ok``/``WARN``/``ERROR`` line each: which Redis setting wins; the
variables with the project's prefixes that nothing reads (with the nearest known name);
``QUANTUM_DISABLE_PLUGINS`` names that match no installed plugin; each host's core
configuration; each plugin's state on each host (the same words as ``quantum-governor
plugins``); and, unless offline, Redis itself (:mod:`governor_core.redis_check`). Warnings
do not fail the check; any error makes the exit status 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from governor_core.config import CommonConfig, ConfigError, EnvReader, settings_of
from governor_core.governor.config import GovernorConfig
from governor_core.plugins import PluginHost, PluginStatus, build_plugin_host, unknown_disabled
from governor_core.redis_settings import RedisSettings

#: Variables with these prefixes are the project's: one that nothing reads is a warning.
PREFIXES = ("GOVERNOR_", "P29_", "P31_", "REDIS_", "QUANTUM_", "PROPOSE_", "LOOP_",
            "TARGET_", "STALE_", "DD_", "REGIME_", "CLUSTER_", "MAX_", "METRICS_", "LOG_")
#: The reads outside a config class (``env.<method>("NAME")``, found by ``grep EnvReader``
#: and kept true by ``tests/test_check_config.py`` against the scan of
#: ``tests/test_deploy_files.py``).
LITERAL_READS = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "P29_CLUSTER_MAP_FILE",
                 "PROPOSE_STREAM_NAME", "REDIS_SENTINELS", "REDIS_SENTINEL_MASTER",
                 "REDIS_SENTINEL_PASSWORD")
REDIS_PARTS = ("REDIS_HOST", "REDIS_PORT", "REDIS_DB")
#: The hooks each host calls besides the set-up hooks every plugin may implement.
HOST_HOOKS = {"governor": {"on_permit_batch", "on_issue_permit"},
              "allocation": {"on_allocation_tick"}}


def plugin_state(host: str, status: PluginStatus) -> str:
    """A plugin's state on a host as ``plugins`` and ``check-config`` both print it:
    ``active``, ``idle (…)`` (loaded, but it implements no hook this host calls),
    ``blocked: why`` or ``disabled: why``."""
    if status.state != "active":
        return f"{status.state}: {status.why}"
    if HOST_HOOKS[host].isdisjoint(status.hooks):
        return "idle (implements no hook this host calls)"
    return "active"


class RecordingEnv(Mapping[str, str]):
    """An environment mapping that remembers every name looked up in it: what the plugins
    read while they are configured."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self._env[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return self._env.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self._env

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def core_settings() -> set[str]:
    """Every variable the hosts themselves read: their config classes' settings and the
    few literal reads."""
    from governor_core.allocation.config import AllocationConfig
    from governor_core.allocation.formula import FormulaConfig
    from governor_core.allocation.readiness_model import ReadinessConfig
    from governor_core.ledger import LedgerConfig

    classes = (CommonConfig, GovernorConfig, AllocationConfig, FormulaConfig, ReadinessConfig,
               LedgerConfig)
    return {spec.env for cls in classes for _name, spec in settings_of(cls)} | set(
        LITERAL_READS)


def plugin_hosts(env: Mapping[str, str], hosts: Sequence[str]) -> dict[str, PluginHost]:
    """Each host's plugins as its ``run`` would load them from ``env``."""
    disabled = EnvReader(env).names("QUANTUM_DISABLE_PLUGINS")
    return {host: build_plugin_host(host, env, CollectorRegistry(), disabled=disabled)
            for host in hosts}


def unknown_variables(env: Mapping[str, str], known: set[str]) -> list[tuple[str, str | None]]:
    """``(name, nearest known name or None)`` for each variable of ``env`` with one of
    :data:`PREFIXES` that is not in ``known``."""
    return [(name, next(iter(difflib.get_close_matches(name, known, n=1)), None))
            for name in sorted(env) if name.startswith(PREFIXES) and name not in known]


@dataclass
class Report:
    """The lines of a check, and its errors and warnings."""

    errors: int = 0
    warnings: int = 0
    lines: list[str] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self._line("ok     ", text)

    def warn(self, text: str) -> None:
        self.warnings += 1
        self._line("WARN   ", text)

    def error(self, text: str) -> None:
        self.errors += 1
        self._line("ERROR  ", text)

    def _line(self, tag: str, text: str) -> None:
        self.lines.append(tag + text)
        print(tag + text)

    def summary(self) -> str:
        warned = f", {self.warnings} warning(s)" if self.warnings else ""
        if self.errors:
            return f"{self.errors} error(s){warned}"
        return f"configuration is valid{warned}"


def redis_choice(env: Mapping[str, str], report: Report) -> None:
    """Say which Redis setting wins, and warn when ``REDIS_URL`` hides the others."""
    reader = EnvReader(env)
    parts = [name for name in REDIS_PARTS if reader.optional_str(name) is not None]
    if reader.optional_str("REDIS_SENTINELS") is not None:
        url = reader.optional_str("REDIS_URL") is not None
        ignored = [name for name in parts if url or name != "REDIS_DB"]
        report.ok("redis primary from Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER)"
                  + ("; REDIS_URL gives only its credentials, database, TLS and options"
                     if url else ""))
        if ignored:
            report.warn(f"REDIS_SENTINELS is set, so {', '.join(ignored)} "
                        f"{'is' if len(ignored) == 1 else 'are'} ignored")
    elif reader.optional_str("REDIS_URL") is None:
        report.ok("redis from " + ("/".join(parts) if parts else "the defaults")
                  + " (REDIS_URL is unset)")
    elif parts:
        report.warn(f"REDIS_URL is set, so {', '.join(parts)} {'is' if len(parts) == 1 else 'are'}"
                    " ignored (REDIS_URL wins over REDIS_HOST/REDIS_PORT/REDIS_DB)")
    else:
        report.ok("redis from REDIS_URL")


def mode_line(env_mode: str, settings: RedisSettings, report: Report) -> None:
    """The allocation mode in force (``P29_MODE`` or the runtime key): WARN when the key
    is unusable (the service then runs in shadow, fail safe)."""
    from governor_core.allocation.mode import read_mode_line
    from governor_core.redis_io import connect

    usable, line = read_mode_line(env_mode, connect(settings))
    (report.ok if usable else report.warn)(line)


def check_config(prog: str, hosts: Sequence[str], env: Mapping[str, str], *,
                 offline: bool = False, notes: Sequence[str] = ()) -> int:
    """Check ``env`` for ``hosts`` (``"governor"``, ``"allocation"``), printing a line per
    check and a summary; 1 on any error, else 0. ``notes`` are warnings found while reading
    the environment (e.g. an env file's ignored lines)."""
    from governor_core.allocation.config import AllocationConfig
    from governor_core.redis_check import check_redis

    loaders: dict[str, Callable[[EnvReader], Any]] = {
        "governor": GovernorConfig.from_env, "allocation": AllocationConfig.from_env}
    report = Report()
    for note in notes:
        report.warn(note)
    recording = RecordingEnv(env)
    plugins = plugin_hosts(recording, hosts)
    known = core_settings() | recording.read
    blocked = sorted({s.name for host in plugins.values() for s in host.statuses
                      if s.state == "blocked"})
    for name, nearest in unknown_variables(env, known):
        hint = f"; did you mean {nearest}?" if nearest else ""
        if blocked:
            hint += f" (or a variable of the blocked plugin(s) {', '.join(blocked)})"
        report.warn(f"{name} is not a setting of either host or any loaded plugin: "
                    f"it is ignored{hint}")
    redis_choice(env, report)
    disabled = EnvReader(env).names("QUANTUM_DISABLE_PLUGINS")
    statuses = [s for host in plugins.values() for s in host.statuses]
    for name in unknown_disabled(disabled, statuses):
        installed = ", ".join(sorted({f"{s.name} ({s.distribution or 'no distribution'})"
                                      for s in statuses})) or "none"
        report.warn(f"QUANTUM_DISABLE_PLUGINS names {name!r}, which is no installed plugin "
                    f"(installed: {installed})")
    configs = {}
    for host in hosts:
        try:
            configs[host] = loaders[host](EnvReader(env))
            report.ok(f"{host} core configuration")
        except ConfigError as exc:
            report.error(f"{host} core configuration: {exc}")
    for host, plugin_host in plugins.items():
        for status in plugin_host.statuses:
            line = f"plugin {status.name} on {host}: {plugin_state(host, status)}"
            (report.error if status.state == "disabled" else report.ok)(line)
    if offline:
        report.ok("redis not contacted (--offline)")
    else:
        try:
            settings = RedisSettings.from_env(EnvReader(env))
        except ConfigError as exc:
            report.error(f"redis not contacted: {exc.name} is invalid (above)")
        else:
            check_redis(settings, {host: plugins[host].active for host in hosts}, report)
            if "allocation" in configs:
                mode_line(configs["allocation"].mode, settings, report)
    print(report.summary())
    return 1 if report.errors else 0
