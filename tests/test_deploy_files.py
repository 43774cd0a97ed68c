"""``deploy/``: the systemd units and env files match what the code actually does.

* Each unit passes ``systemd-analyze verify`` (on a copy whose ExecStart points at the
  venv's real entry point, since ``/opt/quantum-governor`` does not exist here), and a copy
  with a misspelt directive is seen to fail, so the check cannot pass vacuously.
* Each env file lists exactly the variables its service and that service's plugins read
  (found in the source: every read is ``env.<method>("LITERAL", …)`` or a config field
  ``name: type = setting("LITERAL", default, …)``), with the code's
  default as the value and a comment line above each, and it loads without a ConfigError.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from governor_core.config import EnvReader
from governor_core.governor.config import GovernorConfig
from governor_core.plugins import build_plugin_host
from governor_core.runtime import EXIT_CONFIG

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VENV_BIN = ROOT / ".venv" / "bin"
SERVICES = ("governor", "allocation")
READ_METHODS = ("int", "float", "str", "optional_str", "choice", "names")
#: The EnvReader method a ``setting(...)`` field is read with, by its annotation.
SETTING_METHODS = {"int": "int", "float": "float", "str": "str", "str | None": "optional_str",
                   "frozenset[str]": "names"}
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]+")


# -- what the code reads ----------------------------------------------------------------

@dataclass(frozen=True)
class EnvRead:
    name: str
    method: str
    default: object  # the literal default, or None when there is none / it is computed
    where: str


def _service_of(path: Path, enclosing_class: str | None) -> tuple[str, ...]:
    """Which service(s) a read belongs to: plugin → its host; host package → that host;
    shared code → both (the demo is not a deployed service)."""
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("plugins/p31_efficiency/") or rel.startswith("governor_core/governor/"):
        return ("governor",)
    if rel.startswith("plugins/p29_shadow/") or rel.startswith("governor_core/allocation/"):
        return ("allocation",)
    if rel.startswith(("governor_core/demo", "governor_core/testing")):
        return ()
    if enclosing_class and "Governor" in enclosing_class:
        return ("governor",)
    if enclosing_class and "Allocation" in enclosing_class:
        return ("allocation",)
    return SERVICES


def _source_files() -> list[Path]:
    files = sorted((ROOT / "governor_core").rglob("*.py"))
    files += sorted(ROOT.glob("plugins/*/src/**/*.py"))
    return files


def _literal(node: ast.expr | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def code_reads() -> dict[str, list[EnvRead]]:
    """Every environment variable read, per service. Fails on a read that bypasses
    ``EnvReader`` or whose name is not a literal (it could not be checked here)."""
    reads: dict[str, list[EnvRead]] = {service: [] for service in SERVICES}
    problems = []
    for path in _source_files():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        classes = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for child in ast.walk(node):
                    classes.setdefault(id(child), node.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Call)
                    and ast.unparse(node.value.func) == "setting"):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                call = node.value
                name = _literal(call.args[0]) if call.args else None
                method = SETTING_METHODS.get(ast.unparse(node.annotation))
                if not (isinstance(name, str) and ENV_NAME.fullmatch(name)) or method is None:
                    problems.append(f"{where}: setting(...) needs a literal name and a type "
                                    f"of {sorted(SETTING_METHODS)}")
                    continue
                default = _literal(call.args[1]) if len(call.args) > 1 else None
                for service in _service_of(path, classes.get(id(node))):
                    reads[service].append(EnvRead(name, method, default, where))
                continue
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            text = ast.unparse(node.func)
            if text in ("os.getenv", "os.environ.get", "os.environ.__getitem__"):
                problems.append(f"{where}: {text}(...) bypasses EnvReader")
            if not (isinstance(node.func, ast.Attribute) and node.func.attr in READ_METHODS
                    and node.args):
                continue
            name = _literal(node.args[0])
            if not (isinstance(name, str) and ENV_NAME.fullmatch(name)):
                receiver = ast.unparse(node.func.value)
                generic = classes.get(id(node)) == "Setting"  # reads the setting() fields
                if not generic and (receiver == "env" or receiver.endswith("EnvReader()")):
                    problems.append(f"{where}: env.{node.func.attr} with a non-literal name")
                continue
            default = _literal(node.args[1]) if len(node.args) > 1 else None
            for service in _service_of(path, classes.get(id(node))):
                reads[service].append(EnvRead(name, node.func.attr, default, where))
    for path in _source_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"os\.environ\[\s*[\"']", line):
                problems.append(f"{path.relative_to(ROOT)}:{lineno}: os.environ[...] "
                                "bypasses EnvReader")
    assert not problems, "\n".join(problems)
    return reads


def test_the_scan_finds_the_reads_it_must() -> None:
    reads = code_reads()
    names = {service: {r.name for r in found} for service, found in reads.items()}
    assert {"REDIS_URL", "METRICS_ADDR", "LOG_FORMAT", "QUANTUM_DISABLE_PLUGINS",
            "GOVERNOR_METRICS_PORT", "GOVERNOR_PERMIT_TTL_SEC", "P31_DOWNSIZE_THRESHOLD",
            } <= names["governor"]
    assert {"REDIS_URL", "METRICS_ADDR", "P29_MODE", "P29_METRICS_PORT"} <= names["allocation"]
    assert "GOVERNOR_METRICS_PORT" not in names["allocation"]
    assert "P31_DOWNSIZE_THRESHOLD" not in names["allocation"]


# -- the env files ----------------------------------------------------------------------

ENV_FILES = {"governor": DEPLOY / "env" / "governor.env",
             "allocation": DEPLOY / "env" / "capital-allocation.env"}
ASSIGNMENT = re.compile(r"(?P<optional>#)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)")


@dataclass(frozen=True)
class EnvEntry:
    name: str
    value: str
    optional: bool  # written as "#NAME=default": documented, not set
    lineno: int


def parse_env_file(path: Path) -> list[EnvEntry]:
    """The file as systemd's EnvironmentFile= reads it, plus the ``#NAME=`` entries.

    Checks the layout on the way: every entry has a comment line right above it, and no
    value carries quotes, blanks or a trailing ``# comment`` (systemd keeps those in the
    value, where they would fail validation or silently change it).
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for index, line in enumerate(lines):
        if not line.strip() or (line.startswith("# ") or line == "#"):
            continue
        match = ASSIGNMENT.fullmatch(line)
        assert match, f"{path.name}:{index + 1}: not NAME=value, #NAME=value or a comment"
        entry = EnvEntry(match["name"], match["value"], bool(match["optional"]), index + 1)
        above = lines[index - 1] if index else ""
        assert above.startswith("# ") and not ASSIGNMENT.fullmatch(above), (
            f"{path.name}:{entry.lineno}: {entry.name} needs a comment on the line above")
        assert not re.search(r"[\s\"'#]", entry.value), (
            f"{path.name}:{entry.lineno}: {entry.name} value {entry.value!r} has quotes, "
            "blanks or an inline comment (systemd would keep them in the value)")
        entries.append(entry)
    return entries


def env_mapping(service: str) -> dict[str, str]:
    return {e.name: e.value for e in parse_env_file(ENV_FILES[service]) if not e.optional}


@pytest.mark.parametrize("service", SERVICES)
def test_env_file_lists_exactly_what_the_code_reads(service: str) -> None:
    entries = parse_env_file(ENV_FILES[service])
    listed = [e.name for e in entries]
    assert len(listed) == len(set(listed)), f"duplicates in {ENV_FILES[service].name}"
    read = {r.name for r in code_reads()[service]}
    missing = sorted(read - set(listed))
    unused = sorted(set(listed) - read)
    assert not missing, f"{ENV_FILES[service].name} lacks variables the code reads: {missing}"
    assert not unused, f"{ENV_FILES[service].name} sets variables nothing reads: {unused}"


@pytest.mark.parametrize("service", SERVICES)
def test_env_file_values_are_the_code_defaults(service: str) -> None:
    entries = {e.name: e for e in parse_env_file(ENV_FILES[service])}
    checked = 0
    for read in code_reads()[service]:
        entry = entries[read.name]
        if read.default is None or (entry.optional and entry.value == ""):
            continue
        if read.method == "names":
            continue
        value: object = entry.value
        if read.method == "int":
            value = int(entry.value)
        elif read.method == "float":
            value = float(entry.value)
        assert value == read.default, (
            f"{ENV_FILES[service].name}: {read.name}={entry.value} but the code's default "
            f"is {read.default!r} ({read.where})")
        checked += 1
    assert checked >= 8


def test_env_file_layout_checks_catch_mistakes(tmp_path: Path) -> None:
    cases = {
        "no_comment": "# header\n\nP29_MODE=shadow\n",
        "inline_comment": "# mode\nP29_MODE=shadow  # shadow | enforce\n",
        "quoted": "# mode\nP29_MODE=\"shadow\"\n",
        "lowercase": "# mode\np29_mode=shadow\n",
    }
    for label, text in cases.items():
        path = tmp_path / f"{label}.env"
        path.write_text(text)
        with pytest.raises(AssertionError):
            parse_env_file(path)


def test_governor_env_file_loads_with_every_plugin_active() -> None:
    env = env_mapping("governor")
    config = GovernorConfig.from_env(EnvReader(env))
    assert (config.metrics_port, config.permit_ttl_sec, config.group) == (8044, 60, "governor")
    assert config.common.redis.url == "redis://localhost:6379/0"
    host = build_plugin_host("governor", env, CollectorRegistry())
    states = {s.name: (s.state, s.why) for s in host.statuses}
    assert states.get("p31_efficiency", ("absent", ""))[0] == "active", states
    assert not [s for s in host.statuses if s.state == "disabled"], states


def test_allocation_env_file_loads_with_every_plugin_active() -> None:
    config_module = pytest.importorskip("governor_core.allocation.config")
    env = env_mapping("allocation")
    config = config_module.AllocationConfig.from_env(EnvReader(env))
    assert (config.mode, config.metrics_port, config.target_ttl_sec) == ("shadow", 8059, 300)
    host = build_plugin_host("allocation", env, CollectorRegistry())
    states = {s.name: (s.state, s.why) for s in host.statuses}
    assert states.get("p29_shadow", ("absent", ""))[0] == "active", states
    assert not [s for s in host.statuses if s.state == "disabled"], states


def test_enforce_promotion_sed_of_the_design_works_on_the_env_file(tmp_path: Path) -> None:
    """README and design: ``sed -i 's/P29_MODE=shadow/P29_MODE=enforce/'`` (and back)."""
    path = tmp_path / "capital-allocation.env"
    shutil.copy(ENV_FILES["allocation"], path)
    subprocess.run(["sed", "-i", "s/P29_MODE=shadow/P29_MODE=enforce/", str(path)],
                   check=True)
    assert {e.name: e.value for e in parse_env_file(path)}["P29_MODE"] == "enforce"
    subprocess.run(["sed", "-i", "s/P29_MODE=enforce/P29_MODE=shadow/", str(path)],
                   check=True)
    assert path.read_bytes() == ENV_FILES["allocation"].read_bytes()


# -- the systemd units ------------------------------------------------------------------

UNITS = {
    "governor": (DEPLOY / "systemd" / "quantum-governor.service",
                 "/etc/quantum/governor.env", "quantum-governor run"),
    "allocation": (DEPLOY / "systemd" / "quantum-capital-allocation.service",
                   "/etc/quantum/capital-allocation.env", "quantum-allocation run"),
}
REQUIRED = {
    "Unit": {"After": "network-online.target redis-server.service"},
    "Service": {
        "User": "quantum", "Group": "quantum", "Restart": "always",
        "RestartPreventExitStatus": str(EXIT_CONFIG), "KillSignal": "SIGTERM",
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "RestrictRealtime": "yes",
        "SystemCallArchitectures": "native", "CapabilityBoundingSet": "",
    },
    "Install": {"WantedBy": "multi-user.target"},
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize("service", SERVICES)
def test_unit_has_the_required_directives(service: str) -> None:
    path, env_file, command = UNITS[service]
    unit = parse_unit(path.read_text(encoding="utf-8"))
    for section, wanted in REQUIRED.items():
        for key, value in wanted.items():
            assert unit[section].get(key) == [value], f"{path.name}: [{section}] {key}"
    svc = unit["Service"]
    assert svc["EnvironmentFile"] == [env_file]
    assert svc["ExecStart"] == [f"/opt/quantum-governor/venv/bin/{command}"]
    assert 0 < float(svc["RestartSec"][0]) <= 10
    assert 5 <= float(svc["TimeoutStopSec"][0]) <= 120
    assert "Environment" not in svc, "settings belong in the env file, not the unit"


def _verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                          capture_output=True, text=True, timeout=60)


def _runnable_copy(service: str, tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's real entry point (same
    arguments), since /opt/quantum-governor is not installed on a test machine."""
    path, _env_file, command = UNITS[service]
    binary = VENV_BIN / command.split()[0]
    assert binary.exists(), f"{binary} missing: run make venv"
    text = path.read_text(encoding="utf-8")
    original = f"ExecStart=/opt/quantum-governor/venv/bin/{command}"
    assert original in text
    copy = tmp_path / path.name
    copy.write_text(text.replace(original, f"ExecStart={binary} {command.split()[1]}"))
    return copy


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None and os.environ.get("CI") != "true",
    reason="systemd-analyze not installed")


@needs_systemd_analyze
@pytest.mark.parametrize("service", SERVICES)
def test_unit_passes_systemd_analyze_verify(service: str, tmp_path: Path) -> None:
    result = _verify(_runnable_copy(service, tmp_path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


@needs_systemd_analyze
def test_systemd_analyze_verify_really_checks(tmp_path: Path) -> None:
    copy = _runnable_copy("governor", tmp_path)
    copy.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    result = _verify(copy)
    assert "ProtectHom" in result.stdout + result.stderr
