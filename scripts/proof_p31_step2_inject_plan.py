#!/usr/bin/env python3
"""Helper of ``proof_p31_step2_governor_downsize.sh``: run one proof case against a live
governor and print one line, ``✅ name: …`` or ``❌ name: …`` (exit status 0 or 1).

Subcommands:

* ``case NAME SYMBOL PLAN_ID [--eff FIELD=VALUE …] [--expect FIELD=VALUE …]
  [--factor-min X] [--factor-below Y]``: write ``quantum:capital:efficiency:{SYMBOL}`` (or
  delete it when no ``--eff`` is given), push a plan for SYMBOL, wait for its permit, and
  check the expected fields. ``ts=now-N`` in ``--eff`` means N seconds ago.
* ``metrics URL NAME…``: the metrics endpoint answers and exposes every NAME.
* ``health URL PID MIN_PERMITS``: the process is alive and has issued at least MIN_PERMITS.
* ``cleanup SYMBOL…``: delete the efficiency hashes the proof wrote.

Redis is found through ``REDIS_URL``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request

import redis

PLAN_STREAM = "quantum:stream:apply.plan"
EFF_KEY = "quantum:capital:efficiency:{}"
PERMIT_KEY = "quantum:permit:{}"


def client() -> redis.Redis:
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
                                decode_responses=True, socket_connect_timeout=2)


def report(ok: bool, name: str, detail: str) -> int:
    print(f"{'✅' if ok else '❌'} {name}: {detail}")
    return 0 if ok else 1


def eff_fields(pairs: list[str], now: float) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if value.startswith("now-"):
            value = f"{now - float(value[4:]):.3f}"
        fields[name] = value
    return fields


def run_case(args: argparse.Namespace) -> int:
    r = client()
    key = EFF_KEY.format(args.symbol)
    r.delete(key)
    if args.eff:
        r.hset(key, mapping=eff_fields(args.eff, time.time()))
    r.xadd(PLAN_STREAM, {"plan_id": args.plan_id, "symbol": args.symbol, "side": "BUY",
                         "notional_usd": "1000", "ts": f"{time.time():.3f}"})
    deadline = time.monotonic() + args.timeout
    permit: dict[str, str] = {}
    while time.monotonic() < deadline:
        permit = r.hgetall(PERMIT_KEY.format(args.plan_id))
        if permit:
            break
        time.sleep(0.05)
    if not permit:
        return report(False, args.name, f"no permit for {args.plan_id} after {args.timeout}s")
    problems = []
    for pair in args.expect:
        name, _, value = pair.partition("=")
        if permit.get(name) != value:
            problems.append(f"{name}={permit.get(name)!r} (expected {value!r})")
    if args.factor_min is not None or args.factor_below is not None:
        try:
            factor = float(permit.get("eff_factor", ""))
        except ValueError:
            factor = float("nan")
        low = args.factor_min if args.factor_min is not None else float("-inf")
        high = args.factor_below if args.factor_below is not None else float("inf")
        if not low <= factor < high:
            problems.append(f"eff_factor={permit.get('eff_factor')!r} not in [{low}, {high})")
    shown = ", ".join(f"{name}={permit.get(name, '')}" for name in (
        "decision", "eff_action", "eff_reason", "eff_score", "eff_factor",
        "extra_cooldown_sec"))
    return report(not problems, args.name, "; ".join(problems) or shown)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def run_metrics(args: argparse.Namespace) -> int:
    try:
        body = scrape(args.url)
    except OSError as exc:
        return report(False, args.name, f"{args.url} unreachable: {exc}")
    missing = [name for name in args.metrics
               if not any(line.startswith(name) for line in body.splitlines())]
    return report(not missing, args.name,
                  f"missing {', '.join(missing)}" if missing
                  else f"{', '.join(args.metrics)} exported")


def run_health(args: argparse.Namespace) -> int:
    try:
        os.kill(args.pid, 0)
    except OSError:
        return report(False, args.name, f"governor process {args.pid} is not running")
    try:
        body = scrape(args.url)
    except OSError as exc:
        return report(False, args.name, f"metrics endpoint unreachable: {exc}")
    issued = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                 if line.startswith("governor_permits_issued_total{"))
    errors = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                 if line.startswith("governor_plugin_errors_total{"))
    ok = issued >= args.min_permits and errors == 0
    return report(ok, args.name, f"pid {args.pid} running, {issued:g} permits issued, "
                                 f"{errors:g} plugin errors")


def run_cleanup(args: argparse.Namespace) -> int:
    client().delete(*[EFF_KEY.format(symbol) for symbol in args.symbols])
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    case = commands.add_parser("case")
    case.add_argument("name")
    case.add_argument("symbol")
    case.add_argument("plan_id")
    case.add_argument("--eff", action="append", default=[])
    case.add_argument("--expect", action="append", default=[])
    case.add_argument("--factor-min", type=float)
    case.add_argument("--factor-below", type=float)
    case.add_argument("--timeout", type=float, default=10.0)
    metrics = commands.add_parser("metrics")
    metrics.add_argument("name")
    metrics.add_argument("url")
    metrics.add_argument("metrics", nargs="+")
    health = commands.add_parser("health")
    health.add_argument("name")
    health.add_argument("url")
    health.add_argument("pid", type=int)
    health.add_argument("min_permits", type=int)
    cleanup = commands.add_parser("cleanup")
    cleanup.add_argument("symbols", nargs="+")
    args = parser.parse_args(argv)
    handlers = {"case": run_case, "metrics": run_metrics, "health": run_health,
                "cleanup": run_cleanup}
    try:
        return handlers[args.command](args)
    except redis.RedisError as exc:
        return report(False, getattr(args, "name", args.command), f"redis error: {exc}")


if __name__ == "__main__":
    sys.exit(main())
