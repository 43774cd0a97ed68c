"""``quantum-governor demo``: the whole stack on a scripted market, watched as it decides.

:func:`run_demo` builds the real governor and allocation services with the installed plugins
(:mod:`.stack`), drives them through four simulated minutes of market (:mod:`.market`,
:mod:`.runner`), shows a per-symbol table as it goes and a summary at the end
(:mod:`.display`, :mod:`.report`), then the readiness report of its own run and one
what-if (:mod:`.trust`, which says how the simulated clock meets their windows).

Callers may rely on:

* the same run prints the same tables and summary (the clock is simulated, the market is
  scripted); only the pacing and the explain section's remaining TTL depend on real time;
* exit status 0 when the script completes or is interrupted (Ctrl-C, SIGTERM: the summary is
  still printed); 2 with one line on stderr when it cannot start (a bad ``--duration``, an
  unreachable Redis, a database already holding ``quantum:*`` keys without ``--force``);
* with ``--redis-url`` and ``--force``, every ``quantum:*`` key of that database, and no
  other key, is deleted before the run; the URL's password is never printed;
* log records of the services and plugins (warnings and errors) are held back while the
  table is drawn and printed after the summary, so a plugin error is never lost.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from governor_core.demo.display import legend, render_summary
from governor_core.demo.market import EFF_STALE_SEC, SCRIPT_NOTES, SCRIPT_SEC
from governor_core.demo.report import (
    collect_totals,
    plan_to_explain,
    plugin_lines,
    where_next,
)
from governor_core.demo.runner import DemoLoop, make_table, stop_on_signals
from governor_core.demo.stack import PROG, build_stack
from governor_core.demo.trust import (
    demo_readiness,
    demo_what_if,
    render_readiness,
    render_what_if,
    server_time,
)
from governor_core.explain import explain
from governor_core.logs import CONTEXT_FIELDS, redact
from governor_core.redis_settings import redact_url
from governor_core.runtime import StartupError

__all__ = ["run_demo"]

#: At most this many held-back log lines are printed (the rest are counted).
MAX_LOG_LINES = 40


class _HeldLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        context = " ".join(f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS
                           if getattr(record, name, None) is not None)
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if context:
            line += f" [{context}]"
        if record.exc_info and record.exc_info[1] is not None:
            line += f" ({type(record.exc_info[1]).__name__} raised)"
        self.lines.append(redact(line))


@contextmanager
def held_logs() -> Iterator[_HeldLogs]:
    """Route the ``quantum`` loggers' warnings and errors into a list while inside."""
    root = logging.getLogger("quantum")
    saved = (root.handlers[:], root.level, root.propagate)
    handler = _HeldLogs()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    root.propagate = False
    try:
        yield handler
    finally:
        root.handlers[:], level, root.propagate = saved
        root.setLevel(level)


def run_demo(*, duration: float = 30.0, redis_url: str | None = None, force: bool = False,
             out: TextIO | None = None) -> int:
    """Run the demo; see the module docstring for what callers may rely on."""
    out = out or sys.stdout
    if not (math.isfinite(duration) and duration >= 0):
        raise StartupError(f"{PROG}: --duration {duration!r} is invalid: expected seconds >= 0")
    with held_logs() as logs, stop_on_signals() as stop:
        stack = build_stack(redis_url, force=force)
        where = "an embedded Redis (fakeredis, in this process)" if stack.embedded else (
            redact_url(redis_url or ""))
        print(f"Quantum Governor demo: {SCRIPT_SEC // 60} simulated minutes of a scripted "
              f"market, played in {duration:g} s\non {where}.", file=out)
        if stack.deleted_keys:
            print(f"--force: deleted {stack.deleted_keys} quantum:* key(s) first.", file=out)
        print("The real governor and P2.9 allocation services run with the installed plugins:",
              file=out)
        print(*plugin_lines(stack), sep="\n", file=out)
        print("P29_MODE=enforce: P2.9 writes live targets and the governor caps each plan\n"
              "at its symbol's target (cap_source=allocation). In the default shadow mode\n"
              "the cap would be the budget instead.\n", file=out)
        print(*SCRIPT_NOTES, "", *legend(EFF_STALE_SEC), "", sep="\n", file=out)
        table = make_table(out)
        loop = DemoLoop(stack, table, stop)
        started, started_ts = time.monotonic(), server_time(stack.client)
        finished = loop.run(duration)
        elapsed = time.monotonic() - started
        print(file=out)
        if finished:
            print(f"Done: the whole script ran in {elapsed:.1f} s.\n", file=out)
        else:
            print(f"Interrupted after {loop.seconds_run} of {SCRIPT_SEC} simulated seconds "
                  f"({elapsed:.1f} s).\n", file=out)
        print(*render_summary(collect_totals(stack, loop.allocation_cycles)), sep="\n",
              file=out)
        plan_id = plan_to_explain(stack.client, loop.plan_ids)
        if plan_id:
            declared = stack.governor_plugins.declared_fields
            print(f"\nEXPLAIN {plan_id}  (what `quantum-governor explain {plan_id}` prints)",
                  file=out)
            print(explain(stack.client, plan_id, declared) or "(permit not found)", file=out)
        print("", *render_readiness(*demo_readiness(stack, loop.seconds_run)), sep="\n",
              file=out)
        print("", *render_what_if(demo_what_if(stack.client, started_ts)), sep="\n", file=out)
        print("", *where_next(stack, plan_id), sep="\n", file=out)
    shown = logs.lines[:MAX_LOG_LINES]
    more = len(logs.lines) - len(shown)
    print(f"\nSERVICE LOG (warnings and errors, held back while the table ran): "
          f"{len(logs.lines)} line(s)", file=out)
    print(*shown, sep="\n", file=out)
    if more:
        print(f"... and {more} more", file=out)
    return 0
