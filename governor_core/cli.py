"""``quantum-governor``: run the governor, inspect plugins, check config, explain permits."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from governor_core import __version__
from governor_core.config import ConfigError, EnvReader, GovernorConfig
from governor_core.logs import configure_logging
from governor_core.plugins import PluginHost, build_plugin_host
from governor_core.redis_io import connect
from governor_core.runtime import StartupError, load_config, main_guard, run_service

PROG = "quantum-governor"
HOSTS = ("governor", "allocation")
#: The hooks each host calls besides the set-up hooks every plugin may implement.
HOST_HOOKS = {"governor": {"on_permit_batch", "on_issue_permit"},
              "allocation": {"on_allocation_tick"}}


def governor_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume plans and issue permits until SIGTERM/SIGINT")
    commands.add_parser("plugins", help="list installed plugins and whether they are active")
    commands.add_parser("check-config",
                        help="validate the environment for both hosts and every plugin")
    explain = commands.add_parser("explain", help="show a permit and why it was decided")
    explain.add_argument("plan_id")
    demo = commands.add_parser("demo", help="run the whole stack on a scripted market")
    demo.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    demo.add_argument("--redis-url", default=None,
                      help="use this Redis instead of the embedded one")
    demo.add_argument("--force", action="store_true",
                      help="with --redis-url: delete the database's quantum:* keys first "
                           "(without it the demo refuses a database that has any)")
    args = parser.parse_args(argv)

    if args.command == "run":
        return main_guard(run_governor)
    if args.command == "plugins":
        return list_plugins()
    if args.command == "check-config":
        return check_config()
    if args.command == "explain":
        return main_guard(lambda: explain_plan(args.plan_id))
    from governor_core.demo import run_demo

    return main_guard(lambda: run_demo(duration=args.duration, redis_url=args.redis_url,
                                       force=args.force))


def run_governor() -> int:
    from governor_core.governor.service import GovernorService

    return run_service(PROG, "governor", GovernorConfig.from_env, GovernorService)


def _plugin_hosts(env: dict[str, str]) -> dict[str, PluginHost]:
    disabled = EnvReader(env).names("QUANTUM_DISABLE_PLUGINS")
    return {host: build_plugin_host(host, env, CollectorRegistry(), disabled=disabled)
            for host in HOSTS}


def list_plugins() -> int:
    """Every installed plugin with its distribution, version, hooks and state per host."""
    configure_logging("text", "critical")
    hosts = _plugin_hosts(dict(os.environ))
    names = sorted({status.name for host in hosts.values() for status in host.statuses})
    if not names:
        print("no plugins installed (entry-point group quantum_governor)")
        return 0
    for name in names:
        statuses = {host: next(s for s in plugin_host.statuses if s.name == name)
                    for host, plugin_host in hosts.items()}
        first = statuses["governor"]
        hooks = sorted({hook for status in statuses.values() for hook in status.hooks})
        print(f"{name}  ({first.distribution or 'not installed'} {first.version or ''})".rstrip())
        print(f"  hooks: {', '.join(hooks) or '-'}")
        for host, status in statuses.items():
            if status.state != "active":
                print(f"  {host}: {status.state}: {status.why}")
            elif HOST_HOOKS[host].isdisjoint(status.hooks):
                print(f"  {host}: idle (implements no hook this host calls)")
            else:
                print(f"  {host}: active")
    return 0


def check_config() -> int:
    """Validate the core config of both hosts and every installed plugin; 1 on any error."""
    from governor_core.allocation.config import AllocationConfig

    configure_logging("text", "critical")
    env = dict(os.environ)
    errors = []
    for label, loader in (("governor", GovernorConfig.from_env),
                          ("allocation", AllocationConfig.from_env)):
        try:
            loader(EnvReader(env))
            print(f"ok     {label} core configuration")
        except ConfigError as exc:
            errors.append(f"{label}: {exc}")
            print(f"ERROR  {label} core configuration: {exc}")
    for host, plugin_host in _plugin_hosts(env).items():
        for status in plugin_host.statuses:
            if status.state == "disabled":
                errors.append(f"{status.name}: {status.why}")
                print(f"ERROR  plugin {status.name} on {host}: {status.why}")
            else:
                print(f"ok     plugin {status.name} on {host}: {status.state}")
    print(f"{len(errors)} error(s)" if errors else "configuration is valid")
    return 1 if errors else 0


def explain_plan(plan_id: str) -> int:
    from governor_core.explain import explain

    config = load_config(PROG, GovernorConfig.from_env)
    configure_logging("text", "critical")
    declared = build_plugin_host("governor", os.environ, CollectorRegistry(),
                                 disabled=config.common.disabled_plugins).declared_fields
    text = explain(connect(config.common.redis), plan_id, declared)
    if text is None:
        raise StartupError(f"{PROG}: no permit or dead letter found for plan {plan_id!r} "
                           "(permits expire after GOVERNOR_PERMIT_TTL_SEC; the permit "
                           "stream keeps the newest GOVERNOR_STREAM_MAXLEN)")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(governor_main())
