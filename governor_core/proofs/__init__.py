"""``quantum-governor proof step1|step2|p29|trust|all``: the design's proofs, on a real Redis.

Each proof runs the real services (``quantum-governor run``, ``quantum-allocation run``,
found next to the running interpreter, else on ``PATH``) on its own ``redis-server``
(started on a free loopback port, one per proof, gone afterwards) or, with ``--redis-url``,
on the given database. It prints a title, one ``✅ case: detail`` or ``❌ case: detail``
line per case, and finally ``SUMMARY: PASS`` (exit 0) or ``SUMMARY: FAIL (n failed)``
(exit 1; ``all`` counts every proof's failures).

Callers may rely on, for a given ``--redis-url``:

* a database holding any key is refused (one line on stderr, exit 2, nothing written)
  unless ``--force``; even with ``--force`` a proof refuses a database holding a key it
  cannot share (the allocation proofs: the portfolio state, the budgets, and for ``p29``
  the regime stream and cluster map, which its service would read or it must write);
* a proof writes only keys named for its own symbols (``P29PROOF…``, ``P31PROOF…``,
  ``PROOF…``) and plan ids (``proof-…``), the shared inputs above, and entries of its own
  symbols in shared streams; the governor runs in a consumer group of its own, never the
  real ``governor`` group;
* the ``trust`` proof (:mod:`.trust`: explain after expiry, promote, rollback, kill on/off
  and their ledger entries) turns the kill switch on and writes the allocation mode key and
  the ops ledger, which are no proof's own: every governor and allocation service of the
  database obeys them. It therefore runs on a given database only when that database holds
  no key at all; ``--force`` does not lift this (so ``all --force`` on a database in use is
  refused: run the other proofs by name). It checks again just before its first write;
* afterwards it deletes exactly what it and its services wrote (:mod:`.footprint`), even when
  a case fails or it is interrupted (Ctrl-C, SIGTERM: exit 130); it never runs ``FLUSHDB``
  or ``FLUSHALL``.

With ``--force`` on a database in use, a plan another producer adds while ``step2`` runs is
seen by the proof's governor too (in the proof's group): use an idle database.

Without ``--redis-url`` and without a ``redis-server`` binary it refuses with one line, exit 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import redis

from governor_core.config import ConfigError
from governor_core.logs import redact
from governor_core.proofs import p29, step1, step2, trust
from governor_core.proofs.footprint import Footprint
from governor_core.proofs.support import Proof, ProofRun
from governor_core.redis_settings import RedisSettings, redact_url
from governor_core.testing import start_redis

PROOFS: tuple[str, ...] = ("step1", "step2", "p29", "trust")
REGISTRY: dict[str, Proof] = {proof.name: proof for proof in (step1.PROOF, step2.PROOF,
                                                                p29.PROOF, trust.PROOF)}
PROG = "quantum-governor proof"
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130


class ProofRefused(Exception):
    """The proof cannot run here; the message is one line, the URL's password redacted."""


def add_parser(commands: Any) -> None:
    """Add the ``proof`` subcommand (``name``, ``--redis-url``, ``--force``) to
    ``commands``, the result of ``ArgumentParser.add_subparsers()``."""
    proof = commands.add_parser(
        "proof", help="run a proof of the design against a real redis-server",
        description="Run the real services against a real Redis and print one line per case,"
                    " then SUMMARY: PASS (exit 0) or SUMMARY: FAIL (n failed) (exit 1).")
    proof.add_argument("name", choices=(*PROOFS, "all"), help="the proof to run, or all")
    proof.add_argument("--redis-url", default=None,
                       help="use this database (it must hold no key, unless --force) instead "
                            "of starting a redis-server of its own")
    proof.add_argument("--force", action="store_true",
                       help="with --redis-url: run even though the database holds keys; the "
                            "proof deletes only what it wrote")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the proofs ``args.name`` names; the exit status: 0 pass, 1 fail, 2 refused (one
    line on stderr), 130 interrupted. Case lines and the summary go to ``out`` (stdout)."""
    out = out or sys.stdout
    proofs = [REGISTRY[name] for name in (PROOFS if args.name == "all" else (args.name,))]
    try:
        with _sigterm_interrupts():
            if args.redis_url is None:
                failed = _on_own_servers(proofs, out)
            else:
                failed = _on_database(proofs, args.redis_url, args.force, out)
    except ProofRefused as exc:
        print(exc, file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; its services were stopped and what it wrote deleted",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print("SUMMARY: PASS" if failed == 0 else f"SUMMARY: FAIL ({failed} failed)", file=out)
    return 0 if failed == 0 else 1


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile, so the clean-up runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _on_own_servers(proofs: list[Proof], out: TextIO) -> int:
    if shutil.which("redis-server") is None:
        raise ProofRefused(f"{PROG}: no redis-server on PATH to start: install it (Debian: "
                           "apt-get install redis-server) or pass --redis-url of an empty "
                           "database")
    failed = 0
    for proof in proofs:
        try:
            server = start_redis()
        except RuntimeError as exc:
            raise ProofRefused(f"{PROG}: {exc}") from None
        try:
            client = server.client()
            failed += _run_proof(proof, client, server.url, out)
            client.close()
        finally:
            server.stop()
    return failed


def _on_database(proofs: list[Proof], url: str, force: bool, out: TextIO) -> int:
    safe = redact_url(url)
    try:
        RedisSettings.from_url(url, name="--redis-url")
    except ConfigError as exc:
        raise ProofRefused(f"{PROG}: {exc}") from None
    try:
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                                      socket_timeout=30)
        claim_database(client, safe, proofs, force)
    except (ValueError, redis.RedisError) as exc:
        raise ProofRefused(f"{PROG}: cannot use Redis at {safe}: "
                           f"{redact(str(exc)) or type(exc).__name__}") from None
    try:
        return sum(_run_proof(proof, client, url, out) for proof in proofs)
    finally:
        client.close()


def claim_database(client: redis.Redis, safe_url: str, proofs: list[Proof],
                   force: bool) -> None:
    """Raise :class:`ProofRefused` unless ``proofs`` may run on this database: it holds no
    key, or ``force`` and none of the keys the proofs cannot share. Reads only."""
    size = client.dbsize()
    if size == 0:
        return
    if not force:
        example = next(client.scan_iter(count=1000), "?")
        raise ProofRefused(
            f"{PROG}: {safe_url} holds {size} key(s) (e.g. {example}), and a proof writes "
            "there: use an empty database, or pass --force to run beside them (the proof "
            "then deletes only what it wrote)")
    for proof in proofs:
        if proof.empty_database_only:
            raise ProofRefused(
                f"{PROG}: the {proof.name} proof turns the kill switch on and writes the "
                f"allocation mode key and the ops ledger, which every service of {safe_url} "
                f"obeys: it runs only on an empty database or on its own redis-server (no "
                "--redis-url), even with --force")
        found = [key for key in proof.absent_keys if client.exists(key)]
        found += [key for pattern in proof.absent_patterns
                  for key in [next(client.scan_iter(match=pattern, count=1000), None)] if key]
        if found:
            raise ProofRefused(
                f"{PROG}: {safe_url} holds {found[0]}, which the {proof.name} proof would "
                "overwrite or act on, even with --force: run it on an empty database or on "
                "its own redis-server (no --redis-url)")


def _run_proof(proof: Proof, client: redis.Redis, url: str, out: TextIO) -> int:
    """Run one proof and clean up after it; its number of failed cases."""
    with tempfile.TemporaryDirectory(prefix=f"qg-proof-{proof.name}-") as work:
        run = ProofRun(client=client, redis_url=url, work=Path(work),
                       run_id=f"{int(time.time())}{os.getpid()}", out=out,
                       footprint=Footprint())
        print(proof.title, file=out, flush=True)
        try:
            run.footprint.watch_snapshots(client)  # its services write theirs at start
            proof.prove(run)
        except redis.RedisError as exc:
            run.case("redis", False, f"{type(exc).__name__}: {redact(str(exc))}")
        finally:
            run.stop_all()
            try:
                run.footprint.clean(client)
            except redis.RedisError as exc:
                run.case("clean-up", False, f"could not delete what the proof wrote: "
                                            f"{type(exc).__name__}: {redact(str(exc))}")
        if run.failed:
            print("   service logs: last lines", file=out)
            for line in run.log_tail():
                print(f"   {line}", file=out)
        return run.failed
