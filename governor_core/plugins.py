"""Building the plugin manager, and calling plugins so that one cannot hurt the others.

:func:`build_plugin_host` is the only way a host gets its plugins: add the specs, block the
names in ``QUANTUM_DISABLE_PLUGINS`` (a blocked plugin is never imported), load the
``quantum_governor`` entry points one by one, validate them, then configure them. A plugin
that fails to import, to validate or to configure is disabled, logged and counted; the host
runs on with the rest.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from prometheus_client import CollectorRegistry, Counter

from governor_core import hookspecs
from governor_core.hookspecs import READ_COMMANDS, Reads
from governor_core.wire import Packed, bulk

log = logging.getLogger("quantum.plugins")

ENTRY_POINT_GROUP = hookspecs.PROJECT
HOOK_NAMES = ("on_configure", "permit_fields", "read_commands", "on_permit_batch",
              "on_issue_permit", "on_allocation_tick")
#: Encoded plugin read commands remembered between batches (then the memory starts over).
MAX_REMEMBERED_READS = 100_000


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
class BoundImpl:
    """One plugin's implementation of one hook, ready to call with only its arguments."""

    plugin: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]

    def __call__(self, kwargs: Mapping[str, Any]) -> Any:
        return self.function(*[kwargs[name] for name in self.argnames])


@dataclass
class PluginHost:
    """A host's loaded plugins, with isolated calling and the record of what happened."""

    host: str
    manager: pluggy.PluginManager
    registry: CollectorRegistry
    errors: Counter
    statuses: list[PluginStatus] = field(default_factory=list)
    declared_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def impls(self, hook: str) -> list[BoundImpl]:
        """Implementations of ``hook``, in pluggy's call order (last registered first)."""
        caller = getattr(self.manager.hook, hook)
        return [BoundImpl(impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())]

    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook`` on its own; failures are logged, counted
        and left out of the result."""
        results = []
        for impl in self.impls(hook):
            ok, value = self.call_isolated(hook, impl, kwargs)
            if ok:
                results.append((impl.plugin, value))
        return results

    def call_isolated(self, hook: str, impl: BoundImpl,
                      kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
        try:
            return True, impl(kwargs)
        except Exception as exc:
            self.record_error(impl.plugin, hook, exc)
            return False, None

    def record_error(self, plugin: str, hook: str, exc: BaseException) -> None:
        self.errors.labels(plugin=plugin, hook=hook).inc()
        log.error("plugin %s raised in %s: %s: %s", plugin, hook, type(exc).__name__, exc,
                  extra={"plugin": plugin, "hook": hook}, exc_info=exc)

    @property
    def active(self) -> list[str]:
        return [status.name for status in self.statuses if status.state == "active"]

    def _disable(self, name: str, why: str) -> None:
        self.manager.unregister(name=name)
        self.statuses = [
            PluginStatus(s.name, s.distribution, s.version, s.hooks, "disabled", why)
            if s.name == name else s for s in self.statuses]


class PluginReads:
    """Each plugin's ``read_commands``, sent in its host's own read round trip.

    A host builds one and calls :meth:`request` per batch or cycle, appends the request's
    :attr:`ReadRequest.commands` after its own reads, and hands the replies back through
    :meth:`ReadRequest.reads`. A plugin's request is checked before anything is sent:
    tuples of strings naming a command of :data:`~governor_core.hookspecs.READ_COMMANDS`.
    Anything else is that plugin's error (logged, counted, its reads dropped); since the
    commands are encoded here, never taken as wire text, no plugin can garble the host's
    own reads. Each command's encoding is remembered between calls: a plugin asks for the
    same keys batch after batch.
    """

    def __init__(self, plugins: PluginHost) -> None:
        self.plugins = plugins
        self._impls = plugins.impls("read_commands")
        self._wire: dict[int, tuple[tuple[str, ...], str]] = {}  # id -> (command, text)

    def __bool__(self) -> bool:
        return bool(self._impls)

    def request(self, symbols: Sequence[str], now: float) -> ReadRequest:
        symbols = tuple(symbols)
        kwargs = {"host": self.plugins.host, "symbols": symbols, "now": now}
        commands: list[Packed] = []
        owners: list[tuple[str, int]] = []
        for impl in self._impls:
            ok, asked = self.plugins.call_isolated("read_commands", impl, kwargs)
            if not ok or not asked:
                continue
            try:
                asked = list(asked)
                wire = self._encoded(asked)
            except (TypeError, ValueError) as exc:
                self.plugins.record_error(impl.plugin, "read_commands", exc)
                continue
            commands.append(Packed(wire.encode(), len(asked)))
            owners.append((impl.plugin, len(asked)))
        return ReadRequest(symbols, commands, owners)

    def _encoded(self, asked: Sequence[tuple[str, ...]]) -> str:
        """The commands as RESP text. Remembered by identity: a plugin that keeps its
        command tuples (as :class:`~governor_core.efficiency.EfficiencyReader` does) costs
        a lookup per command, not a hash of every argument (the tuple is kept with its
        text, so its id cannot be reused while remembered)."""
        memory = self._wire
        if len(memory) > MAX_REMEMBERED_READS:
            memory.clear()
        parts = []
        for command in asked:
            known = memory.get(id(command))
            if known is not None and known[0] is command:
                parts.append(known[1])
                continue
            if type(command) is not tuple or not command or not all(
                    type(arg) is str for arg in command):
                raise TypeError(f"a read command must be a tuple of strings, "
                                f"not {command!r:.80}")
            if command[0].upper() not in READ_COMMANDS:
                raise ValueError(f"{command[0]!r} is not a read command the host sends "
                                 f"(allowed: {', '.join(sorted(READ_COMMANDS))})")
            wire = f"*{len(command)}\r\n{''.join(map(bulk, command))}"
            memory[id(command)] = (command, wire)
            parts.append(wire)
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """The plugins' reads for one batch or cycle: ``commands`` to send after the host's
    own, and which plugin asked for how many (in order)."""

    symbols: tuple[str, ...]
    commands: list[Packed]
    owners: list[tuple[str, int]]

    def reads(self, replies: Sequence[object]) -> dict[str, Reads]:
        """Each plugin's :class:`~governor_core.hookspecs.Reads`, from the replies to
        :attr:`commands` (in order)."""
        result, at = {}, 0
        for plugin, count in self.owners:
            result[plugin] = Reads(self.symbols, list(replies[at:at + count]))
            at += count
        return result


NO_READS = ReadRequest((), [], [])


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
    :param disabled: plugin names to block (from ``QUANTUM_DISABLE_PLUGINS``).
    :param load_entrypoints: load installed plugins (tests turn this off and register
        their own through ``extra_plugins``).
    :param extra_plugins: ``(name, plugin)`` pairs registered beside the entry points.
    """
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    result = PluginHost(host, manager, registry, plugin_errors_counter(registry))
    for name in disabled:
        manager.set_blocked(name)

    candidates: list[tuple[str, Callable[[], object], str | None, str | None]] = [
        (name, (lambda p=plugin: p), None, None) for name, plugin in extra_plugins]
    if load_entrypoints:
        for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                         key=lambda ep: ep.name):
            dist = ep.dist
            candidates.append((ep.name, ep.load, dist.name if dist else None,
                               dist.version if dist else None))

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

    _configure(result, env)
    return result


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
    unknown = [caller.name for caller in manager.get_hookcallers(plugin) or ()
               if not caller.has_spec() and not all(
                   impl.optionalhook for impl in caller.get_hookimpls())]
    if unknown:
        manager.unregister(plugin)
        return ("implements hooks no host defines: " + ", ".join(unknown)
                + f" (known hooks: {', '.join(HOOK_NAMES)})")
    return ""


def _configure(result: PluginHost, env: Mapping[str, str]) -> None:
    kwargs = {"host": result.host, "env": env, "registry": result.registry}
    for impl in result.impls("on_configure"):
        try:
            impl(kwargs)
        except Exception as exc:
            why = f"invalid configuration: {exc}"
            result.errors.labels(plugin=impl.plugin, hook="on_configure").inc()
            log.error("plugin %s disabled: %s", impl.plugin, why,
                      extra={"plugin": impl.plugin, "hook": "on_configure"})
            result._disable(impl.plugin, why)
    for plugin, fields in result.call_each("permit_fields"):
        result.declared_fields[plugin] = tuple(fields or ())
