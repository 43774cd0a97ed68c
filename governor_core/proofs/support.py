"""What every proof shares: its result lines, the services it runs, waiting.

A proof is a :class:`Proof`: a name, a title line, the keys it must find absent, and a
``prove`` function that runs its cases on a :class:`ProofRun`. ``prove`` records each case
with :meth:`ProofRun.case` (one ``✅``/``❌`` line) and every key it writes in
:attr:`ProofRun.footprint`; the caller stops the services and deletes the footprint
afterwards, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import redis

from governor_core.proofs.footprint import Footprint

#: The only variables of the caller's environment the services get: a proof runs them on
#: the design's defaults plus its own settings, whatever env file the operator has loaded.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "SYSTEMROOT")
STOP_TIMEOUT_SEC = 10.0


def find_command(name: str) -> str | None:
    """The ``name`` command next to the running interpreter, else on ``PATH``, else None."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def wait_until(condition: Callable[[], object], timeout: float,
               interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is truthy (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass
class Service:
    """One service process of a proof, its stdout and stderr appended to ``log_path``."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then its exit status (killed after :data:`STOP_TIMEOUT_SEC`: -9)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SEC)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -signal.SIGKILL


@dataclass
class ProofRun:
    """One proof's run on one Redis database: its client, cases, services and footprint.

    ``client`` decodes replies; ``run_id`` is digits unique to this run (for plan ids and
    consumer names); ``work`` is a directory removed after the run.
    """

    client: redis.Redis
    redis_url: str
    work: Path
    run_id: str
    out: TextIO
    footprint: Footprint
    failed: int = 0
    services: list[Service] = field(default_factory=list)

    def case(self, name: str, ok: bool, detail: str) -> bool:
        """Print ``✅ name: detail`` or ``❌ name: detail`` (counted as failed); ``ok``."""
        print(f"{'✅' if ok else '❌'} {name}: {detail}", file=self.out, flush=True)
        self.failed += not ok
        return ok

    def start(self, command: str, env: Mapping[str, str], log: str = "service.log",
              ) -> Service | None:
        """Start ``command run`` with ``env`` over :data:`INHERITED_ENV` and ``REDIS_URL``.

        None, after a failed ``setup`` case, when the command is not installed.
        """
        binary = find_command(command)
        if binary is None:
            self.case("setup", False, f"{command} not found next to {sys.executable} "
                                      "or on PATH (install quantum-governor there)")
            return None
        child_env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        child_env.update(env, REDIS_URL=self.redis_url)
        log_path = self.work / log
        with log_path.open("ab") as sink:
            process = subprocess.Popen([binary, "run"], env=child_env, stdin=subprocess.DEVNULL,
                                       stdout=sink, stderr=subprocess.STDOUT)
        service = Service(command, process, log_path)
        self.services.append(service)
        return service

    def command(self, command: str, *args: str, timeout: float = 60.0
                ) -> subprocess.CompletedProcess[str]:
        """Run an operator command (``quantum-governor kill on …``) on the proof's Redis, as
        an operator would: :data:`INHERITED_ENV` plus ``REDIS_URL``; its output captured. A
        command that is not installed gives exit status 127 and says so on stderr."""
        binary = find_command(command)
        if binary is None:
            return subprocess.CompletedProcess([command, *args], 127, "",
                                               f"{command} not found")
        child_env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
        child_env["REDIS_URL"] = self.redis_url
        return subprocess.run([binary, *args], env=child_env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def stop_all(self) -> None:
        """Stop every service still running (the caller's clean-up; idempotent)."""
        for service in self.services:
            service.stop()

    def log_tail(self, lines: int = 5) -> list[str]:
        """The last ``lines`` lines of every service log, for a failed run's report."""
        tail: list[str] = []
        for path in sorted(self.work.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()
            tail += [f"{path.name}: {line}" for line in text[-lines:]]
        return tail


def error_lines(service: Service) -> int:
    """Lines of the service's log that say ``ERROR`` or ``Traceback``."""
    text = service.log_path.read_text(errors="replace")
    return sum("ERROR" in line or "Traceback" in line for line in text.splitlines())


def service_health(run: ProofRun, service: Service, code: int) -> None:
    """The ``service health`` case of the allocation proofs: exit 0 on SIGTERM and no
    error line in its log."""
    errors = error_lines(service)
    run.case("service health", code == 0 and errors == 0,
             f"exit code {code} on SIGTERM, {errors} error lines in the service log")


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof: ``absent_keys`` and ``absent_patterns`` (``SCAN MATCH`` patterns) name what
    it writes or its services act on and may not share with anyone, so it refuses a database
    holding one even with ``--force``. ``empty_database_only``: it switches state every
    service of the database obeys (the kill switch, the allocation mode), so on a given
    ``--redis-url`` it runs only when the database holds no key at all, ``--force`` or not."""

    name: str
    title: str
    prove: Callable[[ProofRun], None]
    absent_keys: tuple[str, ...] = ()
    absent_patterns: tuple[str, ...] = ()
    empty_database_only: bool = False
