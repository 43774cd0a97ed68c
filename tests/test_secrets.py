"""A Redis password is never printed, whatever the URL's shape, by any command: each one
is run as an operator would run it, with malformed and well-formed URLs carrying a
password, and its stdout, stderr and logs are searched for the secret."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SECRET = "hunter2-Zq9"

#: Options redis-py accepts when it reads the URL and refuses at the first connection.
UNKNOWN_OPTION = f"redis://127.0.0.1:1/0?password={SECRET}&PASSWORD=x"
TLS_OPTION_ON_PLAIN = f"redis://127.0.0.1:1/0?password={SECRET}&ssl_cert_reqs=required"

#: URLs with the secret: malformed ones (refused at start, naming REDIS_URL) and
#: well-formed ones (the commands run, and fail or retry against a dead port).
MALFORMED = [
    f"redis//:{SECRET}@127.0.0.1:1",                 # "redis//": no scheme
    f"redis://:{SECRET}@127.0.0.1:639200",           # impossible port
    f"redis://:{SECRET}@127.0.0.1:port/0",           # port not a number
    f"redis://:{SECRET}@[::1",                       # unparseable
    f"http://:{SECRET}@127.0.0.1:1/0",               # wrong scheme
    # a password in the query, with an option redis-py refuses (once a traceback, exit 1)
    UNKNOWN_OPTION,
    f"redis://127.0.0.1:1/0?username=ops&password={SECRET}&db=x",  # bad value
    TLS_OPTION_ON_PLAIN,
    f"rediss://127.0.0.1:1/0?password={SECRET}&ssl_ca_certs=/nonexistent/ca.pem",
    f"redis://127.0.0.1:1/0?password={SECRET}&protocol=3",      # RESP3: the hot path is RESP2
]
WELL_FORMED = [
    f"redis://{SECRET}@127.0.0.1:1/0",               # password where the user goes
    f"redis://:{SECRET[:4]}@{SECRET[4:]}@127.0.0.1:1/0",  # an unencoded @ in it
    f"redis://127.0.0.1:1/0?password={SECRET}",      # password in the query, dead port
    f"redis://user:{SECRET}@127.0.0.1:1/0",
    f"redis://127.0.0.1:1/0?username=ops&password={SECRET}",   # user and password in the query
    f"redis://127.0.0.1:1/0?%70assword={SECRET}",   # the option's name percent-encoded
    f"redis://127.0.0.1:1/0?password=ab;{SECRET}",  # a ';' belongs to the value (parse_qs)
    f"redis://127.0.0.1:1/0?password=ab#{SECRET}",  # an unencoded '#' starts a fragment
]
COMMANDS = [
    ("quantum-governor", "run"),
    ("quantum-allocation", "run"),
    ("quantum-governor", "check-config"),
    ("quantum-allocation", "check-config"),
    ("quantum-governor", "explain", "x"),
    ("quantum-governor", "plugins"),
    ("quantum-governor", "demo", "--duration", "1", "--redis-url", "{url}"),
    ("quantum-governor", "feed", "--duration", "0.2"),
    ("quantum-governor", "proof", "step1", "--redis-url", "{url}"),
    ("quantum-allocation", "clear-targets"),
]


#: Where a malformed URL is refused at start: one line naming what gave it, exit status 2.
REFUSED_AT_START = {"run": "REDIS_URL", "explain": "REDIS_URL", "feed": "REDIS_URL",
                    "clear-targets": "REDIS_URL", "demo": "--redis-url", "proof": "--redis-url"}


def run_briefly(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, str]:
    """Run the command; a service (waiting out the dead port) is stopped with SIGTERM half a
    second after its "started" line, anything else after 10 s (the machine may be busy).
    Returns its exit status and everything it printed."""
    with log.open("w") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if " started" in log.read_text():
                time.sleep(0.5)  # its first retries are logged with Redis's error
                break
            time.sleep(0.05)
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=15)
    return status, log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize("url", MALFORMED + WELL_FORMED)
def test_the_password_is_never_printed(command: tuple[str, ...], url: str, tmp_path: Path,
                                       request: pytest.FixtureRequest) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOVERNOR_", "P31_", "P29_", "REDIS_", "QUANTUM_", "LOG_"))}
    env.update(REDIS_URL=url, LOG_LEVEL="debug", GOVERNOR_METRICS_PORT="0",
               P29_METRICS_PORT="0")
    argv = [str(BIN / command[0]), *(part.format(url=url) for part in command[1:])]
    status, output = run_briefly(argv, env, tmp_path / "out.log")
    for secret in (SECRET, SECRET[4:]):
        assert secret not in output, output
    assert "Traceback" not in output, output
    name = REFUSED_AT_START.get(command[1])
    if url in MALFORMED and name is not None:
        assert status == 2 and name in output, output
        assert len(output.strip().splitlines()) == 1, output
    if url in MALFORMED and command[1] == "check-config":
        assert status == 1 and "ERROR" in output and "REDIS_URL" in output, output
    if url in WELL_FORMED and command[1] == "run":
        assert " started" in output, output  # the "… started" line (with the URL) was seen


@pytest.mark.parametrize(("url", "safe"), [
    ("redis://h/0?password=pw", "redis://h/0?password=***"),
    ("redis://h/0?username=ops&password=pw", "redis://h/0?username=ops&password=***"),
    ("redis://h/0?%70assword=pw&db=1", "redis://h/0?%70assword=***&db=1"),
    ("redis://h/0?pass+word=pw", "redis://h/0?pass+word=***"),
    ("redis://h/0?password=ab;pw&db=1", "redis://h/0?password=***&db=1"),
    ("redis://h/0?password=ab#pw", "redis://h/0?password=***#***"),
    ("redis://:ab#pw@h/0", "redis://:***@h/0"),
    ("redis://u:ab@h/0?client_token=pw&db=2", "redis://u:***@h/0?client_token=***&db=2"),
    ("rediss://h/0?ssl_ca_certs=/etc/ca.pem&password=pw",
     "rediss://h/0?ssl_ca_certs=/etc/ca.pem&password=***"),
])
def test_query_secrets_are_redacted_as_redis_py_reads_them(url: str, safe: str) -> None:
    """redis-py splits the query with ``parse_qs`` (on ``&`` only, names percent-decoded),
    so a ``;`` is part of the password, and ``%70assword`` is ``password``."""
    from governor_core.redis_settings import redact_text, redact_url

    assert redact_url(url) == safe
    assert redact_text(f"AUTH failed for {url}", url) == f"AUTH failed for {safe}"
