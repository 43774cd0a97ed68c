"""The fault suite's fixtures: the scenario's processes (cleaned up whatever happens) and its
figures.

Each scenario records one line of figures (``figures(scenario, lost=…, duplicates=…,
recovery_sec=…, …)``). It is printed at once (seen with ``-s``), shown again in a table at
the end of the run whatever the capture mode (``pytest_terminal_summary``), and written to
``.pytest_cache/faults/figures.json`` (a list of objects, with the server's name and
version; a run on one server kind keeps the other kind's lines), from which a release
note's table is made. Figures are recorded before the
invariant is asserted, so a failing scenario still reports what it measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from faultkit import DurableServer, Service

from governor_core.testing import RedisServer, server_kind, start_redis

_FIGURES: list[dict[str, Any]] = []
_FIGURES_FILE = Path(".pytest_cache") / "faults" / "figures.json"


def _server_version(url: str) -> str:
    try:
        info = redis.Redis.from_url(url, socket_timeout=2).info("server")
    except (redis.RedisError, OSError):
        return "?"
    name = info.get("server_name") or "redis"
    return f"{name} {info.get('valkey_version') or info.get('redis_version')}"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(scenario, url, **numbers)``: record one line of the scenario's figures."""

    def record(scenario: str, url: str, **numbers: Any) -> None:
        line = {"scenario": scenario, "test": request.node.nodeid, "server_kind": server_kind(),
                "server": _server_version(url), **numbers}
        _FIGURES.append(line)
        shown = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in numbers.items())
        print(f"\nFAULT FIGURES {scenario} [{line['server']}]: {shown}")

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _FIGURES:
        return
    path = Path(session.config.rootpath) / _FIGURES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    # A run on one server kind replaces that kind's figures and keeps the other's, so the
    # file of `make test` (Redis, then Valkey) holds both.
    kinds = {line["server_kind"] for line in _FIGURES}
    try:
        kept = [line for line in json.loads(path.read_text())["figures"]
                if line.get("server_kind") not in kinds]
    except (OSError, ValueError, KeyError, TypeError):
        kept = []
    path.write_text(json.dumps({"written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "figures": kept + _FIGURES}, indent=1))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault scenarios: figures")
    for line in _FIGURES:
        numbers = {k: v for k, v in line.items()
                   if k not in ("scenario", "test", "server_kind", "server")}
        shown = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in numbers.items())
        terminalreporter.write_line(f"{line['scenario']} [{line['server']}]: {shown}")
    terminalreporter.write_line(f"(written to {_FIGURES_FILE})")


class Scenario:
    """The processes of one scenario; everything still running is killed at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.services: list[Service] = []
        self.servers: list[RedisServer | DurableServer] = []

    def server(self, port: int | None = None) -> RedisServer:
        server = start_redis(port)
        self.servers.append(server)
        return server

    def durable_server(self, fsync: str) -> DurableServer:
        server = DurableServer(self.tmp_path / f"data-{fsync}", fsync)
        self.servers.append(server)
        return server

    def governor(self, url: str, name: str = "governor", **env: str) -> Service:
        return self._start("quantum-governor", url, name, env)

    def allocation(self, url: str, name: str = "allocation", **env: str) -> Service:
        return self._start("quantum-allocation", url, name, env)

    def _start(self, command: str, url: str, name: str, env: dict[str, str]) -> Service:
        service = Service(command, self.tmp_path, url, name, **env)
        self.services.append(service)
        return service

    def close(self) -> None:
        for service in self.services:
            if service.alive:
                service.kill()
        for server in self.servers:
            server.stop()


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    running = Scenario(tmp_path)
    try:
        yield running
    finally:
        running.close()
