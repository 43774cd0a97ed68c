"""After the run: the totals (from the services' metrics), a plan worth explaining, and
where to look next."""

from __future__ import annotations

from collections.abc import Sequence

import redis
from prometheus_client import CollectorRegistry

from governor_core.allocation.metrics import DATA_SOURCES
from governor_core.demo.display import Totals
from governor_core.demo.market import SYMBOLS
from governor_core.demo.stack import DemoStack
from governor_core.efficiency import REASONS
from governor_core.governor.gates import DECISIONS
from governor_core.keys import PERMIT_PREFIX
from governor_core.redis_io import Command, execute_commands
from governor_core.redis_settings import redact_url

#: The plugins the demo is about, and the host each one acts on.
DEMO_PLUGINS = (("p31_efficiency", "governor"), ("p29_shadow", "allocation"))


def samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, ...], int]:
    """Sample ``name``'s values by label values (in label order)."""
    found = {}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                found[tuple(sample.labels.values())] = int(sample.value)
    return found


def plugin_lines(stack: DemoStack) -> list[str]:
    """One line per demo plugin: active (with version) or why its columns stay empty."""
    hosts = {"governor": stack.governor_plugins, "allocation": stack.allocation_plugins}
    lines = []
    for name, host in DEMO_PLUGINS:
        status = next((s for s in hosts[host].statuses if s.name == name), None)
        if status is None:
            lines.append(f"  {name}: NOT INSTALLED, so its columns stay empty "
                         f"(pip install plugins/{name})")
        elif status.state != "active":
            lines.append(f"  {name}: {status.state.upper()} ({status.why}), so its columns "
                         "stay empty")
        else:
            version = f" {status.version}" if status.version else ""
            lines.append(f"  {name}{version}: active on the {host} host")
    return lines


def collect_totals(stack: DemoStack, allocation_cycles: int) -> Totals:
    gov, alloc = stack.governor_registry, stack.allocation_registry
    permits = samples(gov, "governor_permits_issued_total")
    hints = samples(gov, "p32_eff_apply_total")
    proposals = samples(alloc, "p29_shadow_proposed_total")
    fallbacks = samples(alloc, "p29_stale_fallback_total")
    errors = samples(gov, "governor_plugin_errors_total")
    for key, count in samples(alloc, "governor_plugin_errors_total").items():
        errors[key] = errors.get(key, 0) + count
    active = [f"{name} ({host})" for name, host in DEMO_PLUGINS
              if name in {"governor": stack.governor_plugins,
                          "allocation": stack.allocation_plugins}[host].active]
    return Totals(
        allocation_cycles=allocation_cycles,
        shadow_loops=sum(samples(alloc, "p29_shadow_loops_total").values()),
        permits={d: permits.get((d,), 0) for d in DECISIONS},
        hints={(a, r): hints[(a, r)] for a in ("DOWNSIZE", "NONE") for r in REASONS
               if hints.get((a, r))},
        proposals={r: proposals[(r,)] for r in REASONS if (r,) in proposals},
        fallbacks={s: fallbacks.get((s,), 0) for s in DATA_SOURCES},
        dead_letters={k[0]: n for k, n in sorted(samples(
            gov, "governor_dead_letters_total").items()) if n},
        plugin_errors={k: n for k, n in sorted(errors.items()) if n},
        plugins=active,
    )


def plan_to_explain(client: redis.Redis, plan_ids: Sequence[str]) -> str | None:
    """The newest plan whose permit says DOWNSIZE (a CLAMP preferred), else the newest
    permitted plan; ``None`` when no plan has a permit."""
    commands: list[Command] = [("HMGET", PERMIT_PREFIX + plan_id, "decision", "eff_action")
                               for plan_id in plan_ids]
    replies = execute_commands(client, commands) if commands else []
    best: tuple[int, int] | None = None
    for index, reply in enumerate(replies):
        if not isinstance(reply, list) or reply[0] is None:
            continue
        rank = (reply[1] == "DOWNSIZE") * 2 + (reply[0] == "CLAMP")
        if best is None or (rank, index) >= best:
            best = (rank, index)
    return None if best is None else plan_ids[best[1]]


def where_next(stack: DemoStack, plan_id: str | None) -> list[str]:
    symbol = plan_id.rsplit("-", 1)[-1] if plan_id else SYMBOLS[0]
    permit = PERMIT_PREFIX + (plan_id or "<plan_id>")
    n = len(SYMBOLS)
    keys = [
        ("permit", f"HGETALL {permit}"),
        ("permits", "XREVRANGE quantum:stream:permit.issued + - COUNT 5"),
        ("live target", f"HGETALL quantum:allocation:target:{symbol}"),
        ("proposal", f"HGETALL quantum:allocation:target:proposed:{symbol}"),
        ("decisions", f"XREVRANGE quantum:stream:allocation.decision + - COUNT {n}"),
        ("proposals",
         f"XREVRANGE quantum:stream:allocation.target.proposed + - COUNT {n}"),
        ("dead letters", "XRANGE quantum:stream:apply.plan.dead - +"),
    ]
    lines = ["WHERE TO LOOK NEXT"]
    if stack.embedded:
        lines += [
            "  The embedded Redis is gone when the demo exits. To keep the keys, run the demo",
            "  against a real Redis, e.g.:",
            "    redis-server --port 6390 --save '' --daemonize yes",
            "    quantum-governor demo --redis-url redis://127.0.0.1:6390/0",
            "  and then look at (with redis-cli -u <url>):",
        ]
        prefix = ""
    else:
        url = redact_url(stack.url or "")
        hidden = " (password hidden: use your own URL)" if url != stack.url else ""
        lines.append(f"  The keys stay in {url}{hidden}; permits for an hour:")
        prefix = f"redis-cli -u {url} "
    lines += [f"    {what:<12} {prefix}{command}" for what, command in keys]
    if not stack.embedded and plan_id:
        lines.append(f"    {'why':<12} REDIS_URL={url} quantum-governor explain "
                     f"{plan_id}")
    lines += [
        "  Metrics: the demo serves none; the counts above are the ones the services",
        "  export when run for real (quantum-governor run on :8044, quantum-allocation",
        "  run on :8059).",
    ]
    return lines
