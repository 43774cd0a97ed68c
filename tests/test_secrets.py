"""A Redis password is never printed, whatever the URL's shape, by any command: each one
is run as an operator would run it, with malformed and well-formed URLs carrying a
password, and its stdout, stderr and logs are searched for the secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SECRET = "hunter2-Zq9"

#: URLs with the secret: malformed ones (refused at start, naming REDIS_URL) and
#: well-formed ones (the commands run, and fail or retry against a dead port).
MALFORMED = [
    f"redis//:{SECRET}@127.0.0.1:1",                 # "redis//": no scheme
    f"redis://:{SECRET}@127.0.0.1:639200",           # impossible port
    f"redis://:{SECRET}@127.0.0.1:port/0",           # port not a number
    f"redis://:{SECRET}@[::1",                       # unparseable
    f"http://:{SECRET}@127.0.0.1:1/0",               # wrong scheme
]
WELL_FORMED = [
    f"redis://{SECRET}@127.0.0.1:1/0",               # password where the user goes
    f"redis://:{SECRET[:4]}@{SECRET[4:]}@127.0.0.1:1/0",  # an unencoded @ in it
    f"redis://127.0.0.1:1/0?password={SECRET}",      # password in the query, dead port
    f"redis://user:{SECRET}@127.0.0.1:1/0",
]
COMMANDS = [
    ("quantum-governor", "run"),
    ("quantum-allocation", "run"),
    ("quantum-governor", "check-config"),
    ("quantum-allocation", "check-config"),
    ("quantum-governor", "explain", "x"),
    ("quantum-governor", "plugins"),
    ("quantum-governor", "demo", "--duration", "1", "--redis-url", "{url}"),
]


def run_briefly(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, str]:
    """Run the command; one still running after 3 s (a service waiting out the dead port)
    is stopped with SIGTERM. Returns its exit status and everything it printed."""
    with log.open("w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            status = process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=15)
    return status, log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("url", MALFORMED + WELL_FORMED)
def test_the_password_is_never_printed(command: tuple[str, ...], url: str,
                                       tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_", "LOG_"))}
    env.update(REDIS_URL=url, LOG_LEVEL="debug", GOVERNOR_METRICS_PORT="0",
               P29_METRICS_PORT="0")
    argv = [str(BIN / command[0]), *(part.format(url=url) for part in command[1:])]
    status, output = run_briefly(argv, env, tmp_path / "out.log")
    for secret in (SECRET, SECRET[4:]):
        assert secret not in output, output
    assert "Traceback" not in output, output
    if command[1] == "run" and url in MALFORMED:
        assert status == 2 and "REDIS_URL" in output  # malformed: refused at start
