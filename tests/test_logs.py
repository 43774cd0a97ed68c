"""Logs: one line per event, JSON by default, text on request, context fields where they apply,
and never a Redis password.

The end-to-end cases run the real ``quantum-governor run`` (and ``quantum-allocation run``)
and read their stderr, which is what the journal receives.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from test_dashboard_metrics import Service, start_service

from governor_core import hookimpl
from governor_core.logs import configure_logging, redact
from governor_core.plugins import build_plugin_host
from governor_core.testing import RedisServer, free_port

PASSWORD = "s3cretpw"
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) *"
                       r" quantum\.[\w.]+: .+")


def json_lines(output: str) -> list[dict]:
    lines = output.splitlines()
    assert lines, "no log output"
    events = []
    for line in lines:
        event = json.loads(line)  # every line is one complete JSON object
        assert {"ts", "level", "logger", "msg"} <= set(event), line
        events.append(event)
    return events


def run_until(service: Service, done, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        assert service.process.poll() is None, service.output()
        time.sleep(0.05)
    assert done(), f"condition not reached:\n{service.output()}"
    assert service.stop() == 0, service.output()
    return service.output()


def seed_plans(client: redis.Redis) -> None:
    client.set("quantum:portfolio:budget:XRPUSDT", "not a hash")  # unreadable cap key
    for fields in ({"plan_id": "log-ok", "symbol": "BTCUSDT", "side": "BUY",
                    "notional_usd": "100"},
                   {"plan_id": "log-xrp", "symbol": "XRPUSDT", "side": "SELL",
                    "notional_usd": "100"},
                   {"plan_id": "log-bad", "symbol": "btc/usdt", "side": "BUY",
                    "notional_usd": "100"}):
        client.xadd("quantum:stream:apply.plan", fields)


def start_governor(tmp_path: Path, env: dict[str, str], name: str = "governor") -> Service:
    return start_service(["quantum-governor", "run"],
                         {"GOVERNOR_METRICS_PORT": "0", "GOVERNOR_BLOCK_MS": "100", **env},
                         tmp_path / f"{name}.log")


@pytest.mark.redis
def test_governor_logs_json_lines_with_context(real_redis: redis.Redis,
                                               redis_server: RedisServer,
                                               tmp_path: Path) -> None:
    seed_plans(real_redis)
    service = start_governor(tmp_path, {"REDIS_URL": redis_server.url})
    output = run_until(service, lambda: real_redis.exists("quantum:permit:log-xrp")
                       and real_redis.xlen("quantum:stream:apply.plan.dead") == 1)
    events = json_lines(output)
    started = next(e for e in events if e["msg"] == "governor started")
    assert started["level"] == "info" and started["url"] == redis_server.url
    assert "p31_efficiency" in started["plugin"]
    dead = [e for e in events if e["msg"].startswith("plan dead-lettered")]
    assert [(e["level"], e["plan_id"]) for e in dead] == [("warning", "log-bad")]
    unreadable = [e for e in events if e.get("symbol") == "XRPUSDT"]
    assert unreadable and unreadable[0]["level"] == "warning"
    assert events[-1]["msg"] == "governor stopped"


@pytest.mark.redis
def test_text_format_is_one_readable_line_per_event(real_redis: redis.Redis,
                                                    redis_server: RedisServer,
                                                    tmp_path: Path) -> None:
    seed_plans(real_redis)
    service = start_governor(tmp_path, {"REDIS_URL": redis_server.url, "LOG_FORMAT": "text"})
    output = run_until(service, lambda: real_redis.xlen("quantum:stream:apply.plan.dead") == 1)
    lines = output.splitlines()
    assert lines and all(TEXT_LINE.fullmatch(line) for line in lines), output
    assert any("plan dead-lettered" in line and "plan_id=log-bad" in line for line in lines)
    assert not any(line.lstrip().startswith("{") for line in lines)


class Exploding:
    @hookimpl
    def on_allocation_tick(self, tick: object) -> None:
        raise RuntimeError("boom\nsecond line of the message")


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_raising_plugin_is_logged_on_one_line_with_its_name(
        fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt, "info")
    try:
        host = build_plugin_host("allocation", {}, CollectorRegistry(),
                                 load_entrypoints=False,
                                 extra_plugins=[("exploding", Exploding())])
        host.allocation_tick(None, None, 0.0, {})
    finally:
        logging.getLogger("quantum").handlers.clear()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    if fmt == "json":
        event = json.loads(lines[0])
        assert (event["level"], event["plugin"], event["hook"]) == (
            "error", "exploding", "on_allocation_tick")
        assert "RuntimeError: boom" in event["exc"] and "Traceback" in event["exc"]
    else:
        assert TEXT_LINE.fullmatch(lines[0])
        assert "plugin=exploding" in lines[0] and "hook=on_allocation_tick" in lines[0]
        assert "Traceback" in lines[0]


def test_redact_hides_url_passwords() -> None:
    assert redact(f"redis://:{PASSWORD}@h:1/0") == "redis://:***@h:1/0"
    assert redact(f"x rediss://user:{PASSWORD}@h:6380/2 y") == "x rediss://user:***@h:6380/2 y"
    assert redact("redis://h:1/0") == "redis://h:1/0"


def _closed_port_url() -> str:
    return f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_governor_never_logs_the_redis_password(fmt: str, tmp_path: Path) -> None:
    """Redis unreachable: the start line and every retry line show the URL or the error,
    never the password."""
    service = start_governor(tmp_path, {"REDIS_URL": _closed_port_url(), "LOG_FORMAT": fmt})
    time.sleep(1.0)
    assert service.stop() == 0, service.output()
    output = service.output()
    assert "redis unavailable" in output, output
    assert PASSWORD not in output
    assert ":***@127.0.0.1" in output
    if fmt == "json":
        json_lines(output)


@pytest.mark.parametrize("command", ["quantum-governor", "quantum-allocation"])
def test_config_errors_never_show_the_redis_password(command: str, tmp_path: Path) -> None:
    service = start_service([command, "run"],
                            {"REDIS_URL": f"http://:{PASSWORD}@127.0.0.1:1/0"},
                            tmp_path / "out.log")
    assert service.process.wait(timeout=30) == 2
    output = service.output()
    assert "REDIS_URL" in output and "***" in output and PASSWORD not in output
    assert len(output.strip().splitlines()) == 1, output


def test_allocation_never_logs_the_redis_password(tmp_path: Path) -> None:
    service = start_service(["quantum-allocation", "run"],
                            {"REDIS_URL": _closed_port_url(), "P29_METRICS_PORT": "0",
                             "P29_INTERVAL_SEC": "0.1"},
                            tmp_path / "allocation.log")
    time.sleep(1.0)
    assert service.stop() == 0, service.output()
    output = service.output()
    events = json_lines(output)
    assert any(e["level"] == "warning" for e in events), output
    assert PASSWORD not in output and ":***@127.0.0.1" in output
