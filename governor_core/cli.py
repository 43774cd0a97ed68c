"""``quantum-governor``: run the governor, inspect plugins, check config, explain permits."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from governor_core import __version__, feed, kill, ledger, proofs, whatif_cli
from governor_core.allocation.mode import mode_status_line
from governor_core.check_config import plugin_hosts, plugin_state
from governor_core.config import ConfigError
from governor_core.governor.config import GovernorConfig
from governor_core.logs import configure_logging
from governor_core.plugins import build_plugin_host
from governor_core.redis_io import connect
from governor_core.redis_settings import RedisSettings
from governor_core.runtime import StartupError, load_config, main_guard, run_service

PROG = "quantum-governor"
HOSTS = ("governor", "allocation")


def plain(doc: str | None) -> str:
    """A docstring as ``--help`` shows it: without reST's literal markup."""
    return (doc or "").replace("``", "")


def governor_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=plain(__doc__))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume plans and issue permits until SIGTERM/SIGINT")
    commands.add_parser("plugins", help="list installed plugins and whether they are active")
    add_check_config_parser(commands, "validate the environment for both hosts and every "
                                      "plugin, and connect to Redis")
    explain = commands.add_parser("explain", help="show a permit and why it was decided")
    explain.add_argument("plan_id")
    demo = commands.add_parser("demo", help="run the whole stack on a scripted market")
    demo.add_argument("--duration", type=float, default=30.0, help="seconds (default 30)")
    demo.add_argument("--redis-url", default=None,
                      help="use this Redis instead of the embedded one")
    demo.add_argument("--force", action="store_true",
                      help="with --redis-url: delete the database's quantum:* keys first "
                           "(without it the demo refuses a database that has any)")
    proofs.add_parser(commands)
    feed.add_parser(commands)
    kill.add_parser(commands)
    ledger.add_parser(commands)
    whatif_cli.add_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "run":
        return main_guard(run_governor, PROG)
    if args.command == "plugins":
        return main_guard(list_plugins, PROG)
    if args.command == "check-config":
        return main_guard(lambda: run_check_config(PROG, HOSTS, args), PROG)
    if args.command == "explain":
        return main_guard(lambda: explain_plan(args.plan_id), PROG)
    if args.command == "proof":
        return main_guard(lambda: proofs.run(args), PROG, redis_url=args.redis_url)
    if args.command == "feed":
        return main_guard(lambda: feed.run(args), PROG, redis_url=args.redis_url)
    if args.command == "kill":
        return main_guard(lambda: kill.run(args), PROG, redis_url=args.redis_url)
    if args.command == "ledger":
        return main_guard(lambda: ledger.run(args), PROG, redis_url=args.redis_url)
    if args.command == "what-if":
        return main_guard(lambda: whatif_cli.run(args), PROG, redis_url=args.redis_url)
    return main_guard(lambda: demo_main(args), PROG, redis_url=args.redis_url)


def add_check_config_parser(commands: Any, help: str) -> None:
    """The ``check-config`` subcommand and its options (both programs have it)."""
    check = commands.add_parser("check-config", help=help)
    check.add_argument("--offline", action="store_true",
                       help="do not connect to Redis (check the environment only)")
    check.add_argument("--env-file", metavar="PATH", default=None,
                       help="check this env file, read as systemd's EnvironmentFile= reads "
                            "it, instead of the current environment")


def run_check_config(prog: str, hosts: Sequence[str], args: argparse.Namespace) -> int:
    """``check-config`` on the environment, or on ``--env-file`` alone (what the unit gets)."""
    from governor_core.check_config import check_config
    from governor_core.envfile import read_env_file

    configure_logging("text", "critical")
    env: dict[str, str] = dict(os.environ)
    notes: tuple[str, ...] = ()
    if args.env_file is not None:
        try:
            parsed = read_env_file(args.env_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise StartupError(f"{prog}: cannot read the env file {args.env_file}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        env, notes = parsed.values, tuple(f"{args.env_file}: {w}" for w in parsed.warnings)
    return check_config(prog, hosts, env, offline=args.offline, notes=notes)


def demo_main(args: argparse.Namespace) -> int:
    from governor_core.demo import run_demo

    if args.redis_url is not None:
        try:
            RedisSettings.from_url(args.redis_url, name="--redis-url")
        except ConfigError as exc:
            raise StartupError(f"{PROG}: {exc}") from None
    return run_demo(duration=args.duration, redis_url=args.redis_url, force=args.force)


def run_governor() -> int:
    from governor_core.governor.service import GovernorService

    return run_service(PROG, "governor", GovernorConfig.from_env, GovernorService)


def list_plugins() -> int:
    """Every installed plugin with its distribution, version, hooks and state per host."""
    configure_logging("text", "critical")
    hosts = plugin_hosts(dict(os.environ), HOSTS)
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
            print(f"  {host}: {plugin_state(host, status)}")
    print(mode_status_line(dict(os.environ)))
    return 0


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
