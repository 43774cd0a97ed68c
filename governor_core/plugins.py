"""The plugin manager of both hosts, and the one place where their hooks are called.

:func:`build_plugin_host` is the only way a host gets its plugins: add the specs, block the
names in ``QUANTUM_DISABLE_PLUGINS`` (a blocked plugin is never imported), load the
``quantum_governor`` entry points one by one, validate them, then configure them. A plugin
that fails to import, to validate or to configure is disabled, logged and counted; the host
runs on with the rest.

:class:`PluginHost` is the hosts' typed view of their plugins: one method per hook, each
calling every implementation on its own (pluggy would stop at the first exception), so a
plugin that raises is logged with its name, counted in
``governor_plugin_errors_total{plugin,hook}`` and left out, and the others go on.
Implementations are called with only the arguments they name (pluggy's opt-in
arguments), which the host binds once per batch, not per call. Hook wrappers
(``wrapper=True`` / ``hookwrapper=True``) are refused at registration: every hook here is
advisory, and a wrapper would see the other plugins' calls, which the host makes one by one.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from prometheus_client import CollectorRegistry, Counter

from governor_core import hookspecs

log = logging.getLogger("quantum.plugins")

ENTRY_POINT_GROUP = hookspecs.PROJECT
HOOK_NAMES = ("on_configure", "permit_fields", "read_commands", "on_permit_batch",
              "on_issue_permit", "on_allocation_tick")
#: The arguments ``on_issue_permit`` may name, in the order :class:`PermitHook` binds them.
PERMIT_HOOK_ARGS = ("plan", "permit", "batch", "now")


@dataclass(frozen=True, slots=True)
class PluginStatus:
    """What ``quantum-governor plugins`` shows for one plugin."""

    name: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]
    state: str  # "active", "blocked" or "disabled"
    why: str


@dataclass(frozen=True, slots=True)
class _Impl:
    """One plugin's implementation of one hook, with the argument names it asks for."""

    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]

    def call(self, kwargs: Mapping[str, Any]) -> Any:
        return self.function(*[kwargs[name] for name in self.argnames])


@dataclass(frozen=True, slots=True)
class PermitBatch:
    """What each plugin's ``on_permit_batch`` returned for a batch (``contexts``), and the
    plugins whose batch hook raised (``failed``: they sit the batch out)."""

    contexts: Mapping[str, Any]
    failed: frozenset[str]


class PermitHook:
    """One plugin's ``on_issue_permit``, bound to a batch: called once per plan with the
    plan and its core fields. A raise is logged, counted and read as no fields."""

    __slots__ = ("_function", "_host", "_positions", "batch", "now", "plugin", "wants_permit")

    def __init__(self, host: PluginHost, impl: _Impl, batch: Any, now: float) -> None:
        self._host = host
        self._function = impl.function
        self._positions = tuple(PERMIT_HOOK_ARGS.index(name) for name in impl.argnames)
        self.plugin = impl.plugin
        self.batch = batch
        self.now = now
        self.wants_permit = "permit" in impl.argnames

    def __call__(self, plan: Any, permit: Mapping[str, str] | None) -> Any:
        values = (plan, permit, self.batch, self.now)
        try:
            return self._function(*[values[at] for at in self._positions])
        except Exception as exc:
            self._host.record_error(self.plugin, "on_issue_permit", exc)
            return None


@dataclass
class PluginHost:
    """A host's loaded plugins: their statuses, and one method per hook."""

    host: str
    manager: pluggy.PluginManager
    registry: CollectorRegistry
    errors: Counter
    statuses: list[PluginStatus] = field(default_factory=list)
    declared_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def active(self) -> list[str]:
        return [status.name for status in self.statuses if status.state == "active"]

    def implementers(self, hook: str) -> list[str]:
        """The plugins implementing ``hook``, in call order (last registered first)."""
        return [impl.plugin for impl in self._impls(hook)]

    # -- the hooks -------------------------------------------------------------------------

    def read_commands(self, symbols: Sequence[str], now: float) -> list[tuple[str, Any]]:
        """``(plugin, commands)`` of each plugin that asked for reads (see
        :class:`~governor_core.plugin_reads.PluginReads`, which checks them)."""
        kwargs = {"host": self.host, "symbols": symbols, "now": now}
        return [(plugin, asked) for plugin, asked in self._each("read_commands", kwargs)
                if asked]

    def permit_batch(self, plans: Sequence[Any], redis: Any, now: float,
                     reads: Mapping[str, hookspecs.Reads]) -> PermitBatch:
        """Every ``on_permit_batch``, each with the replies to its own ``read_commands``."""
        contexts: dict[str, Any] = {}
        failed = set()
        for impl in self._impls("on_permit_batch"):
            kwargs = {"plans": plans, "redis": redis, "now": now,
                      "reads": reads.get(impl.plugin)}
            ok, context = self._call("on_permit_batch", impl, kwargs)
            if ok:
                contexts[impl.plugin] = context
            else:
                failed.add(impl.plugin)
        return PermitBatch(contexts, frozenset(failed))

    def permit_hooks(self, batch: PermitBatch, now: float,
                     skip: Iterable[str] = ()) -> list[PermitHook]:
        """Each ``on_issue_permit`` bound to the batch, but for the plugins in ``skip``
        and those whose batch hook failed."""
        skipped = batch.failed.union(skip)
        return [PermitHook(self, impl, batch.contexts.get(impl.plugin), now)
                for impl in self._impls("on_issue_permit") if impl.plugin not in skipped]

    def allocation_tick(self, tick: Any, redis: Any, now: float,
                        reads: Mapping[str, hookspecs.Reads]) -> None:
        """Every ``on_allocation_tick``, each with the replies to its ``read_commands``."""
        for impl in self._impls("on_allocation_tick"):
            self._call("on_allocation_tick", impl, {"tick": tick, "redis": redis, "now": now,
                                                    "reads": reads.get(impl.plugin)})

    def record_error(self, plugin: str, hook: str, exc: BaseException) -> None:
        self.errors.labels(plugin=plugin, hook=hook).inc()
        log.error("plugin %s raised in %s: %s: %s", plugin, hook, type(exc).__name__, exc,
                  extra={"plugin": plugin, "hook": hook}, exc_info=exc)

    # -- calling -----------------------------------------------------------------------------

    def _impls(self, hook: str) -> list[_Impl]:
        caller = getattr(self.manager.hook, hook)
        return [_Impl(impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())]

    def _call(self, hook: str, impl: _Impl, kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
        try:
            return True, impl.call(kwargs)
        except Exception as exc:
            self.record_error(impl.plugin, hook, exc)
            return False, None

    def _each(self, hook: str, kwargs: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """``(plugin, result)`` of each implementation that did not raise."""
        results = []
        for impl in self._impls(hook):
            ok, value = self._call(hook, impl, kwargs)
            if ok:
                results.append((impl.plugin, value))
        return results

    def _configure(self, env: Mapping[str, str]) -> None:
        """``on_configure`` (a plugin that raises is disabled for good), then
        ``permit_fields``."""
        kwargs = {"host": self.host, "env": env, "registry": self.registry}
        for impl in self._impls("on_configure"):
            try:
                impl.call(kwargs)
            except Exception as exc:
                why = f"invalid configuration: {exc}"
                self.errors.labels(plugin=impl.plugin, hook="on_configure").inc()
                log.error("plugin %s disabled: %s", impl.plugin, why,
                          extra={"plugin": impl.plugin, "hook": "on_configure"})
                self._disable(impl.plugin, why)
        for plugin, fields in self._each("permit_fields", {}):
            self.declared_fields[plugin] = tuple(fields or ())

    def _disable(self, name: str, why: str) -> None:
        self.manager.unregister(name=name)
        self.statuses = [
            PluginStatus(s.name, s.distribution, s.version, s.hooks, "disabled", why)
            if s.name == name else s for s in self.statuses]


def plugin_errors_counter(registry: CollectorRegistry) -> Counter:
    return Counter("governor_plugin_errors_total",
                   "Plugin failures isolated by the host (import, config or a hook raising)",
                   ["plugin", "hook"], registry=registry)


def build_plugin_host(
    host: str,
    env: Mapping[str, str],
    registry: CollectorRegistry,
    *,
    disabled: Iterable[str] = (),
    load_entrypoints: bool = True,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> PluginHost:
    """The plugin factory of both hosts.

    :param host: ``"governor"`` or ``"allocation"``, passed to ``on_configure``.
    :param disabled: plugins to block (from ``QUANTUM_DISABLE_PLUGINS``), each by its entry
        point or its distribution name, in any of pip's spellings (:func:`canonical_name`);
        a name that matches no installed plugin is logged as a warning.
    :param load_entrypoints: load installed plugins (tests turn this off and register
        their own through ``extra_plugins``).
    :param extra_plugins: ``(name, plugin)`` pairs registered beside the entry points.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    result = PluginHost(host, manager, registry, plugin_errors_counter(registry))

    candidates: list[tuple[str, Callable[[], object], str | None, str | None]] = [
        (name, (lambda p=plugin: p), None, None) for name, plugin in extra_plugins]
    if load_entrypoints:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda ep: ep.name):
            dist = ep.dist  # metadata only: reading it imports nothing
            candidates.append((ep.name, ep.load, dist.name if dist else None,
                               dist.version if dist else None))

    wanted = {canonical_name(name): name for name in disabled}
    matched = set()
    for name, _load, dist_name, _version in candidates:
        hits = {canonical_name(name), canonical_name(dist_name or "")} & wanted.keys()
        if hits:
            manager.set_blocked(name)
            matched |= hits
    unknown = sorted(wanted[key] for key in wanted.keys() - matched)
    if unknown:
        installed = ", ".join(f"{name} ({dist_name})" if dist_name else name
                              for name, _load, dist_name, _version in candidates) or "none"
        log.warning("QUANTUM_DISABLE_PLUGINS names no installed plugin: %s (installed: %s)",
                    ", ".join(unknown), installed)

    for name, load, dist_name, version in candidates:
        if manager.is_blocked(name):
            result.statuses.append(PluginStatus(name, dist_name, version, (), "blocked",
                                                "named in QUANTUM_DISABLE_PLUGINS"))
            continue
        if manager.has_plugin(name):
            continue
        why = _register(manager, name, load)
        hooks = tuple(caller.name for caller in manager.get_hookcallers(
            manager.get_plugin(name)) or ()) if not why else ()
        result.statuses.append(PluginStatus(name, dist_name, version, hooks,
                                            "disabled" if why else "active", why or "loaded"))
        if why:
            result.errors.labels(plugin=name, hook="load").inc()
            log.error("plugin %s disabled: %s", name, why, extra={"plugin": name})

    result._configure(env)
    return result


def canonical_name(name: str) -> str:
    """A plugin or distribution name as ``QUANTUM_DISABLE_PLUGINS`` compares it: runs of
    ``-``, ``_`` and ``.`` are one ``-``, case is ignored (pip's rule for distribution
    names, PEP 503), so ``p31-efficiency``, ``P31_Efficiency`` and ``p31_efficiency``
    name the same plugin."""
    return re.sub(r"[-_.]+", "-", name).lower()


def unknown_disabled(disabled: Iterable[str], statuses: Iterable[PluginStatus]) -> list[str]:
    """The names in ``disabled`` that are neither the entry point nor the distribution
    name of any plugin in ``statuses`` (``build_plugin_host`` logs them as a warning)."""
    known = {canonical_name(name) for status in statuses
             for name in (status.name, status.distribution or "")}
    return sorted(name for name in disabled if canonical_name(name) not in known)


def _register(manager: pluggy.PluginManager, name: str, load: Callable[[], object]) -> str:
    """Import and register one plugin; the reason it failed, or ``""``."""
    try:
        plugin = load()
    except Exception as exc:
        return f"import failed: {type(exc).__name__}: {exc}"
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        return f"invalid hook implementation: {exc}"
    wrappers = [caller.name for caller in manager.get_hookcallers(plugin) or ()
                for impl in caller.get_hookimpls()
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper)]
    if wrappers:
        manager.unregister(plugin)
        return ("hook wrappers are not supported: " + ", ".join(wrappers)
                + " declared with wrapper=True or hookwrapper=True; the host calls each "
                "implementation on its own (drop the wrapper option and return a value)")
    unknown = [caller.name for caller in manager.get_hookcallers(plugin) or ()
               if not caller.has_spec() and not all(
                   impl.optionalhook for impl in caller.get_hookimpls())]
    if unknown:
        manager.unregister(plugin)
        return ("implements hooks no host defines: " + ", ".join(unknown)
                + f" (known hooks: {', '.join(HOOK_NAMES)})")
    return ""
