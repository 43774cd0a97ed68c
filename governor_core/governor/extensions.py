"""Running the governor plugins' permit hooks for a batch: isolated, checked, and cheap.

This is the governor's hot path (once per plan per plugin), so the per-plan work is kept to
a bound call and a cache lookup: each implementation's arguments are bound once per batch,
and a returned mapping is checked and encoded to RESP once per batch (plugins usually
return one shared mapping per symbol; the cache is keyed by identity, and the batch
contexts keep those mappings alive while the batch lasts). A plugin whose batch hook
returned :class:`~governor_core.hookspecs.SymbolFields` is not called per plan at all: its
fields are looked up by symbol. The host splices the encoded fields into the permit's
write as they are; the core fields a plugin sees are a read-only view, built only for
implementations that ask for ``permit``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import redis
from prometheus_client import Counter

from governor_core.governor.gates import refused_fields
from governor_core.hookspecs import Reads, SymbolFields
from governor_core.plans import Plan
from governor_core.plugins import PluginHost
from governor_core.wire import bulk

log = logging.getLogger("quantum.governor")

_PERMIT_ARGS = ("plan", "permit", "batch", "now")


@dataclass(frozen=True, slots=True)
class _BoundPermitHook:
    plugin: str
    #: None when the plugin's batch hook returned :class:`SymbolFields` (``by_symbol``):
    #: its fields are looked up, not called for.
    call: Callable[[Plan, Mapping[str, str] | None], Any] | None
    wants_permit: bool = True
    by_symbol: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PluginFields:
    """The fields the plugins added to one permit: ``resp`` holds ``count`` RESP-encoded
    arguments (name, value, name, value…) in plugin order; ``mappings`` are the accepted
    parts as returned (shared, never copied: merge them only when needed)."""

    resp: str = ""
    count: int = 0
    mappings: tuple[Mapping[str, str], ...] = ()

    def merged(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for mapping in self.mappings:
            merged.update(mapping)
        return merged


NO_FIELDS = PluginFields()

class PermitExtensions:
    """The governor's view of its plugins: ``on_permit_batch`` then ``on_issue_permit``."""

    def __init__(self, plugins: PluginHost, refused: Counter) -> None:
        self.plugins = plugins
        self.refused = refused
        self._batch_impls = plugins.impls("on_permit_batch")
        self._permit_impls = plugins.impls("on_issue_permit")
        self._declared = _declared_without_overlap(plugins.declared_fields)

    def begin(self, plans: Sequence[Plan], client: redis.Redis, now: float,
              reads: Mapping[str, Reads] | None = None) -> BatchExtensions:
        """Call every ``on_permit_batch`` (with the replies to its ``read_commands``, if
        it named any); a plugin that raises sits this batch out."""
        contexts: dict[str, Any] = {}
        failed: set[str] = set()
        reads = reads or {}
        kwargs: dict[str, Any] = {"plans": plans, "redis": client, "now": now}
        for impl in self._batch_impls:
            kwargs["reads"] = reads.get(impl.plugin)
            ok, context = self.plugins.call_isolated("on_permit_batch", impl, kwargs)
            if ok:
                contexts[impl.plugin] = context
            else:
                failed.add(impl.plugin)
        by_symbol = {plugin: context for plugin, context in contexts.items()
                     if isinstance(context, SymbolFields)}
        hooks = [_bind(impl.function, impl.argnames, contexts.get(impl.plugin), now, impl.plugin)
                 for impl in self._permit_impls
                 if impl.plugin not in failed and impl.plugin not in by_symbol]
        hooks.extend(_BoundPermitHook(plugin, None, False, fields)
                     for plugin, fields in by_symbol.items())
        return BatchExtensions(self, hooks)


class BatchExtensions:
    def __init__(self, owner: PermitExtensions, hooks: list[_BoundPermitHook]) -> None:
        self._owner = owner
        self._hooks = hooks
        self._wants_permit = any(hook.wants_permit for hook in hooks)
        # id(mapping) -> (mapping, refused names, accepted part as PluginFields)
        self._checked: dict[int, tuple[Any, list[str], PluginFields]] = {}
        #: One plugin whose fields are per symbol, all accepted: a plan costs a lookup.
        self._per_symbol: dict[str, PluginFields] | None = None
        if len(hooks) == 1 and hooks[0].by_symbol is not None:
            checked = {symbol: self._checked_fields(hooks[0].plugin, fields)
                       for symbol, fields in hooks[0].by_symbol.items() if fields}
            if not any(refused for _, refused, _ in checked.values()):
                self._per_symbol = {symbol: accepted
                                    for symbol, (_, _, accepted) in checked.items()}

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def extend(self, plan: Plan, permit: Mapping[str, str]) -> PluginFields:
        """Every plugin's accepted fields for this plan; plugins see the core fields only."""
        if self._per_symbol is not None:
            return self._per_symbol.get(plan.symbol, NO_FIELDS)
        core = MappingProxyType(dict(permit)) if self._wants_permit else None
        if len(self._hooks) == 1:  # the usual case: one plugin, no merging
            return self._fields(self._hooks[0], plan, core)
        parts = [part for hook in self._hooks
                 if (part := self._fields(hook, plan, core)).count]
        if not parts:
            return NO_FIELDS
        if len(parts) == 1:
            return parts[0]
        return PluginFields("".join(part.resp for part in parts),
                            sum(part.count for part in parts),
                            tuple(m for part in parts for m in part.mappings))

    def _fields(self, hook: _BoundPermitHook, plan: Plan,
                core: Mapping[str, str] | None) -> PluginFields:
        """One plugin's accepted fields for one plan (cached per returned mapping)."""
        if hook.call is None:
            fields = hook.by_symbol.get(plan.symbol) if hook.by_symbol else None
        else:
            try:
                fields = hook.call(plan, core)
            except Exception as exc:
                self._owner.plugins.record_error(hook.plugin, "on_issue_permit", exc)
                return NO_FIELDS
        if not fields:
            return NO_FIELDS
        checked = self._checked_fields(hook.plugin, fields)
        if checked[1]:
            refused = checked[1]
            self._owner.refused.labels(plugin=hook.plugin).inc(len(refused))
            log.warning("refused permit fields from plugin %s: %s", hook.plugin,
                        ", ".join(refused),
                        extra={"plugin": hook.plugin, "plan_id": plan.plan_id})
        return checked[2]

    def _checked_fields(self, plugin: str, fields: Any) -> tuple[Any, list[str], PluginFields]:
        checked = self._checked.get(id(fields))
        if checked is None or checked[0] is not fields:
            checked = self._checked[id(fields)] = self._check(plugin, fields)
        return checked

    def _check(self, plugin: str, fields: Any) -> tuple[Any, list[str], PluginFields]:
        if not isinstance(fields, Mapping):
            return fields, [f"<{type(fields).__name__} instead of a mapping>"], NO_FIELDS
        refused = refused_fields(fields, self._owner._declared.get(plugin, frozenset()))
        accepted = ({k: v for k, v in fields.items() if k not in refused} if refused
                    else fields)
        resp = "".join(bulk(part) for item in accepted.items() for part in item)
        return fields, refused, PluginFields(resp, 2 * len(accepted), (accepted,))


def _bind(function: Callable[..., Any], argnames: Sequence[str], batch: Any, now: float,
          plugin: str) -> _BoundPermitHook:
    """Fix the batch-wide arguments now, so a plan costs one call."""
    names = tuple(argnames)
    if names == ("plan", "batch"):  # the usual shape: look the plan up in the batch context
        return _BoundPermitHook(plugin, lambda plan, _permit: function(plan, batch), False)
    if names == ("plan", "permit"):
        return _BoundPermitHook(plugin, function)
    positions = tuple(_PERMIT_ARGS.index(name) for name in names)

    def call(plan: Plan, permit: Mapping[str, str]) -> Any:
        values = (plan, permit, batch, now)
        return function(*[values[i] for i in positions])

    return _BoundPermitHook(plugin, call, "permit" in names)


def _declared_without_overlap(declared: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Each plugin's declared fields; a field two plugins declare stays with the first."""
    owner: dict[str, str] = {}
    for plugin, fields in declared.items():
        for name in fields:
            if owner.setdefault(name, plugin) != plugin:
                log.error("plugins %s and %s both declare permit field %s; %s keeps it",
                          owner[name], plugin, name, owner[name], extra={"plugin": plugin})
    return {plugin: frozenset(name for name in fields if owner[name] == plugin)
            for plugin, fields in declared.items()}
