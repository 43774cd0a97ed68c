"""The governor plugins' permit fields for a batch: checked, encoded, and cheap.

This is the governor's hot path (once per plan per plugin), so the per-plan work is kept to
a bound call (:class:`~governor_core.plugins.PermitHook`, the hooks themselves are called
by :class:`~governor_core.plugins.PluginHost`) and a cache lookup: a returned mapping is
checked and encoded to RESP once, and remembered between batches for as long as the plugin
keeps returning it (:data:`MAX_KNOWN_MAPPINGS`). A plugin whose batch hook returned
:class:`~governor_core.hookspecs.SymbolFields` is not called per plan at all: its fields
are looked up by symbol. The host splices the encoded fields into the permit's write as
they are; the core fields a plugin sees are a read-only view, built only for
implementations that ask for ``permit``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import redis
from prometheus_client import Counter

from governor_core.governor.gates import refused_fields
from governor_core.hookspecs import Reads, SymbolFields
from governor_core.plans import Plan
from governor_core.plugins import PermitHook, PluginHost
from governor_core.wire import bulk

log = logging.getLogger("quantum.governor")

#: Checked and encoded mappings remembered between batches (each held, so its identity
#: stays its own); past this many the memory starts over. A plugin that hints by reading
#: returns one mapping per distinct reading, so this covers some thousands of symbols.
MAX_KNOWN_MAPPINGS = 20_000
#: Fields the host adds to every permit after the plugins' (SPEC 8).
RECORD_FIELDS = frozenset({"config_id"})
#: A checked mapping: the mapping itself (held), the plugin, its refused names, and its
#: accepted part encoded.
_Checked = tuple[Any, str, list[str], "PluginFields"]

@dataclass(frozen=True, slots=True)
class PluginFields:
    """The fields the plugins added to one permit: their ``names`` in plugin order, and
    ``values`` holding each one's value RESP-encoded, in the same order (the names are
    encoded by the writer, once per distinct tuple of names: the *layout*); ``mappings``
    are the accepted parts as returned (shared, never copied: merge them only when
    needed)."""

    names: tuple[str, ...] = ()
    values: str = ""
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
        # ``config_id`` is the host's (the decision record's last field): a plugin that
        # declares it has it refused and counted like a core field.
        self.declared = {plugin: names - RECORD_FIELDS for plugin, names in
                         _declared_without_overlap(plugins.declared_fields).items()}
        #: id(mapping) -> what the check made of it, across batches. Measured at 1,000
        #: symbols with distinct hints, checking and encoding each batch's mappings anew
        #: was a quarter of the governor's Python time: a batch of 500 plans names ~400
        #: symbols, so the per-batch memory hardly ever hit.
        self.known: dict[int, _Checked] = {}

    def begin(self, plans: Sequence[Plan], client: redis.Redis, now: float,
              reads: Mapping[str, Reads] | None = None) -> BatchExtensions:
        """Call every ``on_permit_batch`` (with the replies to its ``read_commands``, if
        it named any); a plugin that raises sits this batch out."""
        if len(self.known) > MAX_KNOWN_MAPPINGS:
            self.known.clear()
        batch = self.plugins.permit_batch(plans, client, now, reads or {})
        by_symbol = {plugin: context for plugin, context in batch.contexts.items()
                     if isinstance(context, SymbolFields)}
        hooks: list[PermitHook | _SymbolHook] = list(
            self.plugins.permit_hooks(batch, now, skip=by_symbol))
        hooks.extend(_SymbolHook(plugin, fields) for plugin, fields in by_symbol.items())
        return BatchExtensions(self, hooks)


@dataclass(frozen=True, slots=True)
class _SymbolHook:
    """A plugin whose batch hook returned :class:`SymbolFields`: its fields are looked up
    by the plan's symbol, its ``on_issue_permit`` is not called."""

    plugin: str
    by_symbol: Mapping[str, Any]
    wants_permit: bool = False

    def __call__(self, plan: Plan, _permit: Mapping[str, str] | None) -> Any:
        return self.by_symbol.get(plan.symbol)


class BatchExtensions:
    """One batch's plugin fields, plan by plan: checked against the declarations and
    encoded once per returned mapping (plugins usually return one shared mapping per
    symbol: the check is remembered by the mapping's identity, between batches too, which
    keeps the mapping alive meanwhile; see :attr:`PermitExtensions.known`)."""

    def __init__(self, owner: PermitExtensions,
                 hooks: Sequence[PermitHook | _SymbolHook]) -> None:
        self._owner = owner
        self._hooks = hooks
        self._wants_permit = any(hook.wants_permit for hook in hooks)
        self._checked = owner.known
        #: One plugin whose fields are per symbol, all accepted: a plan costs a lookup.
        self._per_symbol: dict[str, PluginFields] | None = None
        if len(hooks) == 1 and isinstance(hooks[0], _SymbolHook):
            self._per_symbol = self._symbol_fields(hooks[0])

    def _symbol_fields(self, hook: _SymbolHook) -> dict[str, PluginFields] | None:
        """Each symbol's accepted fields, or None if any were refused (then each plan goes
        the way that counts and logs the refusal). One pass: at 1,000 symbols a batch
        names hundreds of them."""
        per_symbol = {}
        known, plugin = self._checked, hook.plugin
        for symbol, fields in hook.by_symbol.items():
            if not fields:
                continue
            checked = known.get(id(fields))
            if checked is None or checked[0] is not fields or checked[1] != plugin:
                checked = known[id(fields)] = self._check(plugin, fields)
            if checked[2]:
                return None
            per_symbol[symbol] = checked[3]
        return per_symbol

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def extend(self, plan: Plan, permit: Mapping[str, str]) -> PluginFields:
        """Every plugin's accepted fields for this plan; plugins see the core fields only."""
        if self._per_symbol is not None:
            return self._per_symbol.get(plan.symbol, NO_FIELDS)
        core = MappingProxyType(dict(permit)) if self._wants_permit else None
        parts = [part for hook in self._hooks
                 if (part := self._fields(hook, plan, core)).names]
        if not parts:
            return NO_FIELDS
        if len(parts) == 1:
            return parts[0]
        return PluginFields(tuple(name for part in parts for name in part.names),
                            "".join(part.values for part in parts),
                            tuple(m for part in parts for m in part.mappings))

    def _fields(self, hook: PermitHook | _SymbolHook, plan: Plan,
                core: Mapping[str, str] | None) -> PluginFields:
        """One plugin's accepted fields for one plan (checked once per returned mapping)."""
        fields = hook(plan, core)
        if not fields:
            return NO_FIELDS
        checked = self._checked_fields(hook.plugin, fields)
        if checked[2]:
            refused = checked[2]
            self._owner.refused.labels(plugin=hook.plugin).inc(len(refused))
            log.warning("refused permit fields from plugin %s: %s", hook.plugin,
                        ", ".join(refused),
                        extra={"plugin": hook.plugin, "plan_id": plan.plan_id})
        return checked[3]

    def _checked_fields(self, plugin: str, fields: Any) -> _Checked:
        checked = self._checked.get(id(fields))
        if checked is None or checked[0] is not fields or checked[1] != plugin:
            checked = self._checked[id(fields)] = self._check(plugin, fields)
        return checked

    def _check(self, plugin: str, fields: Any) -> _Checked:
        if not isinstance(fields, Mapping):
            return fields, plugin, [f"<{type(fields).__name__} instead of a mapping>"], NO_FIELDS
        refused = refused_fields(fields, self._owner.declared.get(plugin, frozenset()))
        accepted = ({k: v for k, v in fields.items() if k not in refused} if refused
                    else fields)
        values = "".join(map(bulk, accepted.values()))
        return fields, plugin, refused, PluginFields(tuple(accepted), values, (accepted,))


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
