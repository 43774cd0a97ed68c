"""Running the governor plugins' permit hooks for a batch: isolated, checked, and cheap.

This is the governor's hot path (once per plan per plugin), so the per-plan work is kept to
a bound call and a dict update: each implementation's arguments are bound once per batch,
and a returned mapping's fields are checked once per batch (plugins usually return one
shared mapping per symbol; the check is cached by identity, and the batch contexts keep
those mappings alive while the batch lasts).
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
from governor_core.plans import Plan
from governor_core.plugins import PluginHost

log = logging.getLogger("quantum.governor")

_PERMIT_ARGS = ("plan", "permit", "batch", "now")


@dataclass(frozen=True, slots=True)
class _BoundPermitHook:
    plugin: str
    call: Callable[[Plan, Mapping[str, str]], Any]


class PermitExtensions:
    """The governor's view of its plugins: ``on_permit_batch`` then ``on_issue_permit``."""

    def __init__(self, plugins: PluginHost, refused: Counter) -> None:
        self.plugins = plugins
        self.refused = refused
        self._batch_impls = plugins.impls("on_permit_batch")
        self._permit_impls = plugins.impls("on_issue_permit")
        self._declared = _declared_without_overlap(plugins.declared_fields)

    def begin(self, plans: Sequence[Plan], client: redis.Redis, now: float) -> BatchExtensions:
        """Call every ``on_permit_batch``; a plugin that raises sits this batch out."""
        contexts: dict[str, Any] = {}
        failed: set[str] = set()
        kwargs = {"plans": plans, "redis": client, "now": now}
        for impl in self._batch_impls:
            ok, context = self.plugins.call_isolated("on_permit_batch", impl, kwargs)
            if ok:
                contexts[impl.plugin] = context
            else:
                failed.add(impl.plugin)
        hooks = [_bind(impl.function, impl.argnames, contexts.get(impl.plugin), now, impl.plugin)
                 for impl in self._permit_impls if impl.plugin not in failed]
        return BatchExtensions(self, hooks)


class BatchExtensions:
    def __init__(self, owner: PermitExtensions, hooks: list[_BoundPermitHook]) -> None:
        self._owner = owner
        self._hooks = hooks
        self._checked: dict[int, tuple[Mapping[str, str], list[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def extend(self, plan: Plan, permit: dict[str, str]) -> None:
        """Add every plugin's fields to ``permit``; plugins see the core fields only."""
        core = MappingProxyType(permit.copy())
        for hook in self._hooks:
            try:
                fields = hook.call(plan, core)
            except Exception as exc:
                self._owner.plugins.record_error(hook.plugin, "on_issue_permit", exc)
                continue
            if not fields:
                continue
            checked = self._checked.get(id(fields))
            if checked is None or checked[0] is not fields:
                checked = (fields, self._check(hook.plugin, fields))
                self._checked[id(fields)] = checked
            refused = checked[1]
            if refused:
                self._owner.refused.labels(plugin=hook.plugin).inc(len(refused))
                log.warning("refused permit fields from plugin %s: %s", hook.plugin,
                            ", ".join(refused),
                            extra={"plugin": hook.plugin, "plan_id": plan.plan_id})
                permit.update((k, v) for k, v in fields.items() if k not in refused)
            else:
                permit.update(fields)

    def _check(self, plugin: str, fields: Mapping[str, str]) -> list[str]:
        if not isinstance(fields, Mapping):
            return [f"<{type(fields).__name__} instead of a mapping>"]
        return refused_fields(fields, self._owner._declared.get(plugin, frozenset()))


def _bind(function: Callable[..., Any], argnames: Sequence[str], batch: Any, now: float,
          plugin: str) -> _BoundPermitHook:
    """Fix the batch-wide arguments now, so a plan costs one call."""
    names = tuple(argnames)
    if names == ("plan", "batch"):  # the usual shape: look the plan up in the batch context
        return _BoundPermitHook(plugin, lambda plan, _permit: function(plan, batch))
    if names == ("plan", "permit"):
        return _BoundPermitHook(plugin, function)
    positions = tuple(_PERMIT_ARGS.index(name) for name in names)

    def call(plan: Plan, permit: Mapping[str, str]) -> Any:
        values = (plan, permit, batch, now)
        return function(*[values[i] for i in positions])

    return _BoundPermitHook(plugin, call)


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
