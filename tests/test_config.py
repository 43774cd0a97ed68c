"""Configuration: a bad core value stops the host with one line; a bad plugin value disables
only that plugin."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from governor_core.config import ConfigError, EnvReader
from governor_core.governor.config import GovernorConfig
from governor_core.plugins import build_plugin_host
from governor_core.redis_settings import RedisSettings, redact_url

BIN = Path(sys.executable).parent
NOW = 1_700_000_000.0


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_"))}
    full_env.update(env or {})
    return subprocess.run([str(BIN / "quantum-governor"), *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_defaults_are_the_spec() -> None:
    config = GovernorConfig.from_env(EnvReader({}))
    assert (config.metrics_port, config.group, config.permit_ttl_sec, config.cooldown_sec) == (
        8044, "governor", 60, 0)
    assert config.common.redis.url == "redis://localhost:6379/0"
    assert config.common.metrics_addr == "127.0.0.1"
    assert config.common.disabled_plugins == frozenset()


@pytest.mark.parametrize(("name", "value"), [
    ("GOVERNOR_PERMIT_TTL_SEC", "soon"),
    ("GOVERNOR_PERMIT_TTL_SEC", "0"),
    ("GOVERNOR_PERMIT_TTL_SEC", "1.5"),
    ("GOVERNOR_METRICS_PORT", "70000"),
    ("GOVERNOR_METRICS_PORT", "http"),
    ("GOVERNOR_COOLDOWN_SEC", "-1"),
    ("GOVERNOR_BATCH_SIZE", "0"),
    ("GOVERNOR_STREAM_MAXLEN", "10"),
    ("GOVERNOR_CLAIM_IDLE_MS", "5"),
    ("REDIS_PORT", "abc"),
    ("REDIS_URL", "http://localhost:6379"),
    ("LOG_FORMAT", "xml"),
    ("LOG_LEVEL", "loud"),
])
def test_bad_core_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GovernorConfig.from_env(EnvReader({name: value}))
    assert caught.value.name == name
    message = str(caught.value)
    assert message.startswith(f"{name}=")
    assert "expected" in message
    assert "\n" not in message


def test_redis_settings_from_parts_and_url() -> None:
    assert RedisSettings.from_env(EnvReader({"REDIS_HOST": "h", "REDIS_PORT": "7000",
                                             "REDIS_DB": "3"})).url == "redis://h:7000/3"
    url = "rediss://user:s3cret@h:6380/1"
    settings = RedisSettings.from_env(EnvReader({"REDIS_URL": url, "REDIS_HOST": "ignored"}))
    assert settings.url == url
    assert settings.safe_url == "rediss://user:***@h:6380/1"


@pytest.mark.parametrize(("url", "safe"), [
    ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("rediss://u:p%40ss@h/0", "rediss://u:***@h/0"),
    # malformed: the password must go whatever the shape
    ("redis//:hunter2@host", "redis//:***@host"),
    ("redis://:hunter2@host:639200", "redis://:***@host:639200"),
    ("redis://:hunter2@host:63920", "redis://:***@host:63920"),
    ("redis://h:6379/0?password=hunter2", "redis://h:6379/0?password=***"),
    ("redis://h/0?db=1&PASSWORD=hunter2&x=1", "redis://h/0?db=1&PASSWORD=***&x=1"),
    ("redis://:hun@ter2@h/0", "redis://:***@h/0"),
    ("redis://hunter2@h/0", "redis://***@h/0"),
    ("redis:hunter2@h", "redis:***@h"),
    ("redis://:hunter2@[::1", "redis://:***@[::1"),
    ("unix://:hunter2@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
])
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe
    assert "hunter2" not in redact_url(url) and "ter2" not in redact_url(url)


@pytest.mark.parametrize("url", [
    "redis://:hunter2@h:639200/0", "redis://:hunter2@h:65536", "redis://:hunter2@h:0/0",
    "redis://:hunter2@h:port/0", "redis://:hunter2@[::1", "redis//:hunter2@h",
    "redis://:hunter2@/0", "redis://:hunter2@h/zero", "redis://:hunter2@h/0?socket_timeout=x",
    "unix://:hunter2@",
])
def test_an_unusable_redis_url_is_a_config_error_naming_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GovernorConfig.from_env(EnvReader({"REDIS_URL": url}))
    assert caught.value.name == "REDIS_URL"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize("url", ["redis://:pw@h:63920/0", "rediss://u:pw@h/15",
                                 "unix:///run/redis.sock?db=2", "redis://[::1]:6379"])
def test_a_usable_redis_url_is_accepted(url: str) -> None:
    assert RedisSettings.from_env(EnvReader({"REDIS_URL": url})).url == url


def test_bad_redis_url_error_does_not_leak_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        GovernorConfig.from_env(EnvReader({"REDIS_URL": "http://u:topsecret@h/0"}))
    assert "topsecret" not in str(caught.value)


def test_run_with_bad_core_value_exits_2_with_one_line() -> None:
    result = cli("run", env={"GOVERNOR_PERMIT_TTL_SEC": "soon",
                             "REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GOVERNOR_PERMIT_TTL_SEC" in lines[0] and "soon" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_p31_bad_value_disables_only_the_plugin() -> None:
    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", {"P31_MIN_CONF": "abc"}, registry)
    record = next(s for s in plugin_host.statuses if s.name == "p31_efficiency")
    assert record.state == "disabled"
    assert "P31_MIN_CONF='abc'" in record.why
    assert registry.get_sample_value("governor_plugin_errors_total",
                                     {"plugin": "p31_efficiency", "hook": "on_configure"}) == 1


@pytest.mark.redis
def test_governor_issues_permits_without_a_misconfigured_p31(real_redis) -> None:
    from governor_core.governor.service import GovernorService

    env = {"P31_MIN_CONF": "abc", "GOVERNOR_CONSUMER": "c", "GOVERNOR_BLOCK_MS": "1"}
    registry = CollectorRegistry()
    plugin_host = build_plugin_host("governor", env, registry)
    service = GovernorService(GovernorConfig.from_env(EnvReader(env)), real_redis, plugin_host,
                              registry, clock=lambda: NOW)
    real_redis.hset("quantum:capital:efficiency:BTCUSDT",
                    mapping={"efficiency_score": "0.2", "confidence": "0.9", "ts": str(NOW)})
    real_redis.xadd("quantum:stream:apply.plan", {"plan_id": "cfg-1", "symbol": "BTCUSDT",
                                                  "side": "BUY", "notional_usd": "10"})
    service.ensure_group()
    while service.step() or service.step():
        pass
    permit = real_redis.hgetall("quantum:permit:cfg-1")
    assert permit["decision"] == "ALLOW"
    assert not any(name.startswith("eff_") for name in permit)
    assert "downsize_factor" not in permit
    assert registry.get_sample_value("governor_plugin_errors_total",
                                     {"plugin": "p31_efficiency", "hook": "on_configure"}) == 1


@pytest.mark.parametrize("env", [{"GOVERNOR_PERMIT_TTL_SEC": "soon"},
                                 {"P31_MIN_CONF": "abc"}], ids=["core", "plugin"])
def test_check_config_fails_on_a_bad_value(env: dict[str, str]) -> None:
    pytest.importorskip("governor_core.allocation.config")
    result = cli("check-config", env=env)
    assert result.returncode != 0, result.stdout
    assert next(iter(env)) in result.stdout
    assert "Traceback" not in result.stderr


def test_check_config_passes_on_defaults() -> None:
    pytest.importorskip("governor_core.allocation.config")
    result = cli("check-config", "--offline")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration is valid" in result.stdout


# -- Redis refusing the credentials or a command: a configuration error, not an outage ------

@pytest.fixture(scope="module")
def locked_redis():
    """A server whose default user has a password, and a user ``noclaim`` that may not
    run XAUTOCLAIM."""
    from governor_core.testing import start_redis

    server = start_redis()
    client = server.client()
    client.acl_setuser("noclaim", enabled=True, passwords=["+pw-Ok-1"], keys=["quantum:*"],
                       commands=["+@all", "-xautoclaim"])
    client.config_set("requirepass", "pw-Ok-1")
    yield server
    server.stop()


@pytest.mark.redis
@pytest.mark.parametrize("program", ["quantum-governor", "quantum-allocation"])
@pytest.mark.parametrize(("userinfo", "expected"), [
    (":wr0ng-Pw", "refused the credentials: AuthenticationError"),
    ("", "refused the credentials: AuthenticationError"),  # no password: NOAUTH
])
def test_run_with_refused_credentials_exits_2_with_one_line(
        locked_redis, program: str, userinfo: str, expected: str) -> None:
    auth = f"{userinfo}@" if userinfo else ""
    env = {"REDIS_URL": f"redis://{auth}127.0.0.1:{locked_redis.port}/0",
           "GOVERNOR_METRICS_PORT": "0", "P29_METRICS_PORT": "0"}
    result = subprocess.run([str(BIN / program), "run"], capture_output=True, text=True,
                            timeout=30, env={**os.environ, **env})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{program}: configuration error: Redis at ") and expected in last
    assert "wr0ng-Pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.redis
def test_an_acl_refusal_in_the_loop_is_fatal_not_retried(locked_redis) -> None:
    env = {"REDIS_URL": f"redis://noclaim:pw-Ok-1@127.0.0.1:{locked_redis.port}/0",
           "GOVERNOR_METRICS_PORT": "0", "LOG_FORMAT": "text"}
    result = subprocess.run([str(BIN / "quantum-governor"), "run"], capture_output=True,
                            text=True, timeout=30, env={**os.environ, **env})
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "refused a command (ACL): NoPermissionError" in last and "xautoclaim" in last
    assert "redis unavailable" not in result.stderr


def test_host_loop_raises_an_access_error_after_close() -> None:
    import redis

    from governor_core.host import HostService

    class Refused(HostService):
        closed = steps = 0

        def prepare(self) -> None:
            pass

        def step(self) -> None:
            self.steps += 1
            if self.steps == 1:
                raise redis.ConnectionError("down")  # an outage: retried
            raise redis.exceptions.NoPermissionError("no permissions to run 'xack'")

        def close(self) -> None:
            self.closed += 1

    service = Refused(None, None, None, None)  # type: ignore[arg-type]
    guard = threading.Timer(5.0, service.stop.set)  # a loop that retries it stops here
    guard.start()
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            service.run()
    finally:
        guard.cancel()
    assert (service.steps, service.closed) == (2, 1)


# -- declared settings (config.setting / read_settings) --------------------------------

def _config_classes():
    from p29_shadow.formula import ShadowConfig
    from p31_efficiency.formula import EfficiencyConfig

    from governor_core.allocation.config import AllocationConfig
    from governor_core.allocation.formula import FormulaConfig
    from governor_core.config import CommonConfig
    from governor_core.governor.config import GovernorConfig

    return [CommonConfig, GovernorConfig, AllocationConfig, FormulaConfig, EfficiencyConfig,
            ShadowConfig]


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda cls: cls.__name__)
def test_unset_settings_take_the_declared_defaults(cls) -> None:
    import dataclasses

    from governor_core.config import read_settings, settings_of

    settings = settings_of(cls)
    assert settings, f"{cls.__name__} declares no setting"
    given = {item.name: object() for item in dataclasses.fields(cls)
             if "setting" not in item.metadata}
    config = read_settings(cls, EnvReader({}), **given)
    for name, _setting in settings:
        declared = next(item for item in dataclasses.fields(cls) if item.name == name)
        assert getattr(config, name) == declared.default


@pytest.mark.parametrize("cls", _config_classes(), ids=lambda cls: cls.__name__)
def test_a_bad_value_of_any_setting_names_its_variable(cls) -> None:
    import dataclasses

    from governor_core.config import read_settings, settings_of

    given = {item.name: None for item in dataclasses.fields(cls)
             if "setting" not in item.metadata}
    checked = 0
    for name, spec in settings_of(cls):
        annotation = str(next(f for f in dataclasses.fields(cls) if f.name == name).type)
        if annotation not in ("int", "float") and not spec.choices:
            continue  # free text: any value is one
        with pytest.raises(ConfigError) as error:
            read_settings(cls, EnvReader({spec.env: "not-a-value"}), **given)
        assert error.value.name == spec.env
        checked += 1
    assert checked


def test_a_setting_of_a_type_with_no_reader_is_refused() -> None:
    import dataclasses

    from governor_core.config import read_settings, setting

    @dataclasses.dataclass(frozen=True)
    class Odd:
        flag: bytes = setting("ODD_FLAG", b"")

    with pytest.raises(TypeError, match="ODD_FLAG"):
        read_settings(Odd, EnvReader({}))


@pytest.mark.parametrize("value", ["１０", "١٢", "1e3", "1_0", "nan", "inf", "0x10", "1.5.2"])
def test_numeric_settings_take_plain_ascii_decimals_only(value: str) -> None:
    """Env values follow the rule of every Redis value (issue 14, item 2): a full-width
    ``１０`` is no 10, and ``float()``'s other spellings are refused, naming the variable."""
    reader = EnvReader({"X_SEC": value})
    with pytest.raises(ConfigError, match="X_SEC"):
        reader.float("X_SEC", 1.0)
    with pytest.raises(ConfigError, match="X_SEC"):
        reader.int("X_SEC", 1)


@pytest.mark.parametrize(("value", "expected"), [("10", 10.0), ("+2.5", 2.5), (".5", 0.5),
                                                 ("-1", -1.0), ("5.", 5.0)])
def test_plain_decimal_settings_read(value: str, expected: float) -> None:
    assert EnvReader({"X_SEC": value}).float("X_SEC", 0.0) == expected


def test_the_start_up_heap_is_frozen_out_of_full_collections() -> None:
    """``run_service`` freezes what is alive before the loop (runtime.freeze_startup_heap):
    the collector's full passes then scan only what the loop allocates."""
    import gc

    from governor_core.runtime import freeze_startup_heap

    gc.unfreeze()
    alive = len(gc.get_objects())
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() >= alive * 0.9
        assert len(gc.get_objects()) < alive * 0.1
    finally:
        gc.unfreeze()
