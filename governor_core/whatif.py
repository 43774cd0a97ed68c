"""What-if (SPEC 8): the window's recorded evidence replayed under changed settings.

This module is the replay: the plugins' replays found, the changes validated, the window
read (:func:`replay_window`) and the report computed. The command ``quantum-governor
what-if --set NAME=VALUE … [--window 1h] [--json]`` (its options, ``--window``, the text it
prints) is :mod:`governor_core.whatif_cli`.

It replays the window's recorded evidence (permit stream entries with their ``eff_*`` fields,
proposal stream entries) through the plugins' own pure formulas under the current
environment with the given settings changed. It reads two streams (``XRANGE``, in pages)
and writes nothing; no service needs to run. The report is a pure function of the entries
and the settings (:func:`what_if`). "Before" is what was recorded, "after" the replay with
the changes; the replay without any change counts the entries it ``reproduced`` exactly
(fewer than all when the recording ran under other settings, see the entries'
``config_id``; scores are judged at the 4 decimals the permit records, so a record is the
decision's exact input). ``docs/what-if.md`` is the user's page.

**How a plugin offers a replay (the decision).** The host imports no plugin internals and
holds no copy of any formula: for each installed, not blocked entry point of the
``quantum_governor`` group (``p31_efficiency.plugin:plugin``), it imports the ``formula``
module of the entry point's package (``p31_efficiency.formula``) and takes its ``WHAT_IF``
mapping: ``evidence`` (``"permits"``: the governor's permit stream, or ``"proposals"``);
``config``, the plugin's config class (``from_env`` validates a value with the plugin's own
one-line :class:`~governor_core.config.ConfigError`; its ``setting`` fields are the names
``--set`` accepts); ``replay(entries, config)``, one dict of recomputed fields per entry
(``None``: nothing to replay), computed by the functions the plugin's hooks call;
``fields``, those of them compared with the record (others, such as an amount recomputed
from a rounded input, are only summed); for
proposals ``stream(config)``, the stream's name; ``fixed``, the settings a replay cannot
honour and why (a note). A plugin without one is not replayed. A pluggy hook would say the
same, but needs an implementation in every ``plugin.py``; the entry point already names
the package, and the formula modules are where the pure functions live.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from governor_core.config import ConfigError, EnvReader, settings_of
from governor_core.keys import PERMIT_STREAM
from governor_core.parsing import parse_decimal
from governor_core.plugins import ENTRY_POINT_GROUP, canonical_name
from governor_core.runtime import StartupError

PROG = "quantum-governor what-if"
PAGE = 5_000
#: The multiplier quantiles reported (nearest rank: the value at rank ⌈q·n⌉ of the sorted
#: values, so every reported value is one that occurred).
QUANTILES = {"p0": 0.0, "p10": 0.10, "p50": 0.50, "p90": 0.90, "p100": 1.0}


@dataclass(frozen=True, slots=True)
class Replayer:
    """One plugin's ``WHAT_IF`` declaration (see the module docstring)."""

    plugin: str
    evidence: str
    config: type
    replay: Callable[[Sequence[Mapping[str, str]], Any], list[dict[str, str] | None]]
    fields: tuple[str, ...]
    stream: Callable[[Any], str] | None = None
    fixed: Mapping[str, str] = field(default_factory=dict)

    @property
    def settings(self) -> list[str]:
        return [spec.env for _name, spec in settings_of(self.config)]


def discover(env: Mapping[str, str]) -> tuple[list[Replayer], list[str]]:
    """The replayers of the installed plugins not named in ``QUANTUM_DISABLE_PLUGINS``,
    and notes on the plugins left out (blocked, no replay, a broken declaration)."""
    blocked = {canonical_name(name) for name in EnvReader(env).names("QUANTUM_DISABLE_PLUGINS")}
    replayers, notes = [], []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                     key=lambda ep: ep.name):
        dist = ep.dist.name if ep.dist else ""
        if {canonical_name(ep.name), canonical_name(dist)} & blocked:
            notes.append(f"plugin {ep.name} is blocked (QUANTUM_DISABLE_PLUGINS): not replayed")
            continue
        module = (ep.module.rpartition(".")[0] or ep.module) + ".formula"
        try:
            declared = getattr(importlib.import_module(module), "WHAT_IF", None)
            if declared is not None:
                replayers.append(Replayer(
                    ep.name, declared["evidence"], declared["config"], declared["replay"],
                    tuple(declared["fields"]), declared.get("stream"),
                    dict(declared.get("fixed", {}))))
                continue
            notes.append(f"plugin {ep.name} offers no replay (no {module}.WHAT_IF)")
        except ModuleNotFoundError as exc:
            notes.append(f"plugin {ep.name} offers no replay (no {module})" if exc.name ==
                         module else f"plugin {ep.name} not replayed: {exc}")
        except Exception as exc:  # a broken plugin is left out, as the hosts do
            notes.append(f"plugin {ep.name} not replayed ({type(exc).__name__}: {exc})")
    return replayers, notes


def parse_changes(texts: Sequence[str], replayers: Sequence[Replayer]) -> dict[str, str]:
    """``NAME=VALUE`` options as a mapping; a :class:`StartupError` for a malformed one or a
    name no replayed plugin reads (listing the names it knows)."""
    known = sorted({name for replayer in replayers for name in replayer.settings})
    changes: dict[str, str] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        name = name.strip()
        if not equals or not name:
            raise StartupError(f"{PROG}: --set {text!r} is invalid: expected NAME=VALUE, "
                               "e.g. --set P31_DOWNSIZE_THRESHOLD=0.5")
        if name not in known:
            raise StartupError(f"{PROG}: --set {name}: unknown setting: what-if knows "
                               + (", ".join(known) or "none (no plugin offers a replay)"))
        changes[name] = value
    return changes


def configure(replayers: Sequence[Replayer], env: Mapping[str, str],
              changes: Mapping[str, str]) -> list[tuple[Replayer, Any, Any]]:
    """``(replayer, config without the changes, config with them)`` for each replayer, each
    validated by the plugin's own config class; a bad value is a one-line
    :class:`StartupError` naming the variable."""
    changed = {**env, **changes}
    configured = []
    for replayer in replayers:
        try:
            configured.append((replayer, replayer.config.from_env(EnvReader(env)),
                               replayer.config.from_env(EnvReader(changed))))
        except ConfigError as exc:
            where = "--set" if exc.name in changes else "the environment"
            raise StartupError(f"{PROG}: configuration error ({where}, plugin "
                               f"{replayer.plugin}): {exc}") from None
    return configured

def read_stream(client: redis.Redis, stream: str, since_ms: int) -> list[dict[str, str]]:
    """Every entry of ``stream`` from ``since_ms`` (an entry id's time) on, oldest first,
    in pages of :data:`PAGE` (the streams are capped, so this is bounded)."""
    entries: list[dict[str, str]] = []
    start = f"{max(0, since_ms)}-0"
    while True:
        page = client.xrange(stream, min=start, max="+", count=PAGE)
        entries += [fields for _entry_id, fields in page]
        if len(page) < PAGE:
            return entries
        start = "(" + page[-1][0]


# -- the report (pure) -------------------------------------------------------------------------

def _number(text: str | None) -> float:
    value = parse_decimal(text)
    return 0.0 if value is None else value


def _counts(values: Sequence[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items()))


def _quantiles(values: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    return {name: (ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None)
            for name, q in QUANTILES.items()}


def _affected(permit: Mapping[str, str]) -> float:
    """USD a downsize takes off: ``allowed_notional_usd × (1 − eff_factor)``."""
    if permit.get("eff_action") != "DOWNSIZE":
        return 0.0
    factor = parse_decimal(permit.get("eff_factor"))
    if factor is None or factor > 1.0:
        return 0.0
    return _number(permit.get("allowed_notional_usd")) * (1.0 - factor)


def permit_summary(permits: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    return {"by_action": _counts([p.get("eff_action", "") for p in permits]),
            "by_reason": _counts([p.get("eff_reason", "") for p in permits]),
            "downsized": sum(p.get("eff_action") == "DOWNSIZE" for p in permits),
            "notional_affected_usd": round(sum(map(_affected, permits)), 2)}


def proposal_summary(proposals: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    multipliers = [value for value in (parse_decimal(p.get("multiplier")) for p in proposals)
                   if value is not None]
    return {"by_reason": _counts([p.get("reason", "") for p in proposals]),
            "multiplier_quantiles": _quantiles(multipliers)}


def _differs(old: Mapping[str, str], new: Mapping[str, str], fields: Sequence[str]) -> bool:
    return any(old.get(name) != new.get(name) for name in fields)


def _per_symbol(evidence: str, recorded: Sequence[Mapping[str, str]],
                base: Sequence[Mapping[str, str]], after: Sequence[Mapping[str, str]],
                fields: Sequence[str]) -> list[dict[str, Any]]:
    """One row per symbol where the changes changed an entry: its recorded ("before") and
    replayed ("after") figures."""
    groups: dict[str, list[tuple[Mapping[str, str], ...]]] = {}
    for triple in zip(recorded, base, after, strict=True):
        groups.setdefault(triple[0].get("symbol", ""), []).append(triple)
    rows = []
    for symbol, triples in sorted(groups.items()):
        changed = sum(_differs(old, new, fields) for _rec, old, new in triples)
        if not changed:
            continue
        row: dict[str, Any] = {"symbol": symbol, "entries": len(triples), "changed": changed}
        for side, index in (("before", 0), ("after", 2)):
            items = [triple[index] for triple in triples]
            if evidence == "permits":
                row[f"downsized_{side}"] = sum(p.get("eff_action") == "DOWNSIZE" for p in items)
                row[f"notional_affected_usd_{side}"] = round(sum(map(_affected, items)), 2)
            else:
                row[f"multiplier_p50_{side}"] = _quantiles(
                    [parse_decimal(p.get("multiplier")) or 0.0 for p in items])["p50"]
                row[f"proposed_usd_{side}"] = round(
                    sum(_number(p.get("proposed_target")) for p in items), 2)
        rows.append(row)
    return rows


def _section(evidence: str, entries: Sequence[Mapping[str, str]],
             configured: Sequence[tuple[Replayer, Any, Any]]) -> dict[str, Any]:
    """Recorded vs replayed for one kind of evidence, over the entries any plugin replays."""
    base_out: list[dict[str, str]] = [{} for _ in entries]
    after_out: list[dict[str, str]] = [{} for _ in entries]
    replayed = [False] * len(entries)
    fields: list[str] = []
    for replayer, before, after in configured:
        fields += replayer.fields
        try:  # a plugin's bug is one line naming it, not a traceback
            pairs = list(zip(replayer.replay(entries, before), replayer.replay(entries, after),
                             entries, strict=True))
        except Exception as exc:
            raise StartupError(f"{PROG}: plugin {replayer.plugin}'s replay failed: "
                               f"{type(exc).__name__}: {exc}") from None
        for index, (old, new, _entry) in enumerate(pairs):
            if old is not None and new is not None:
                replayed[index] = True
                base_out[index].update(old)
                after_out[index].update(new)
    recorded = [entry for entry, ok in zip(entries, replayed, strict=True) if ok]
    base = [{**e, **o} for e, o, ok in zip(entries, base_out, replayed, strict=True) if ok]
    after = [{**e, **o} for e, o, ok in zip(entries, after_out, replayed, strict=True) if ok]
    summary = permit_summary if evidence == "permits" else proposal_summary
    return {
        "entries": len(entries), "replayed": len(recorded),
        "reproduced": sum(not _differs(old, new, fields)
                          for old, new in zip(recorded, base, strict=True)),
        # The changes' own effect: against the replay without them, so that an entry the
        # replay does not reproduce (other settings then, a rounded input) is no "change".
        "changed": sum(_differs(old, new, fields) for old, new in zip(base, after, strict=True)),
        "before": summary(recorded), "after": summary(after),
        "symbols": _per_symbol(evidence, recorded, base, after, fields),
    }


def what_if(evidence: Mapping[str, Sequence[Mapping[str, str]]],
            configured: Sequence[tuple[Replayer, Any, Any]],
            changes: Mapping[str, str]) -> dict[str, Any]:
    """The report (the ``--json`` object, without the window) of ``evidence`` (``permits``
    and ``proposals`` entries, oldest first) under ``configured`` (:func:`configure`)."""
    notes = [f"{name}: not replayed ({why})" for replayer, _b, _a in configured
             for name, why in replayer.fixed.items() if name in changes]
    report: dict[str, Any] = {"changes": dict(sorted(changes.items())), "notes": notes}
    for kind in ("permits", "proposals"):
        mine = [item for item in configured if item[0].evidence == kind]
        report[kind] = _section(kind, list(evidence.get(kind, ())), mine) if mine else None
    return report


# -- the window -------------------------------------------------------------------------------

def replay_window(client: redis.Redis, sets: Sequence[str], window_sec: float,
                  env: Mapping[str, str], now: float | None = None) -> dict[str, Any]:
    """The ``--json`` report of the last ``window_sec`` seconds before ``now`` (default: the
    clock) under ``sets`` (``NAME=VALUE`` texts) applied to ``env``; a bad setting is a
    :class:`StartupError`. For a caller that wants the report itself (the demo)."""
    replayers, notes = discover(env)
    changes = parse_changes(sets, replayers)
    configured = configure(replayers, env, changes)
    now = time.time() if now is None else now
    since = int((now - window_sec) * 1000)
    evidence: dict[str, list[dict[str, str]]] = {"permits": [], "proposals": []}
    streams = {PERMIT_STREAM if r.stream is None else r.stream(before): r.evidence
               for r, before, _after in configured}
    for stream, kind in sorted(streams.items()):
        evidence[kind] += read_stream(client, stream, since)
    report = {"window_sec": window_sec, "from_ts": since / 1000, "to_ts": now,
              **what_if(evidence, configured, changes)}
    report["notes"] = notes + report["notes"]
    return report
