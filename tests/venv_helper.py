"""A fresh virtualenv holding the host and one plugin, for the real install/uninstall tests.

The host and the plugin are pip-installed from a clean copy of the tree, so stale build/
directories in the working tree cannot leak in; commands run with an environment cleared of
the project's settings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JUNK = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".*")
#: Settings of the services and plugins, never inherited from the caller's environment.
SETTING_PREFIXES = ("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_", "PROPOSE_", "LOOP_")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without Python path settings or project settings, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
           and not k.startswith(SETTING_PREFIXES)}
    env.update(extra)
    return env


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a command in the clean environment; it must exit 0."""
    result = subprocess.run([str(a) for a in args], env=clean_env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


def venv_with_plugin(tmp_path: Path, plugin: str) -> Path:
    """Create tmp_path/venv (no system site-packages) with the host and plugins/<plugin>
    installed from a copy of the tree in tmp_path/src; return the venv's directory."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "governor_core", source / "governor_core", ignore=JUNK)
    shutil.copytree(ROOT / "plugins" / plugin, source / plugin, ignore=JUNK)

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    run(venv / "bin/python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
        source, source / plugin, timeout=180)
    return venv
