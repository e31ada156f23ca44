"""Named crash points, for chaos tests: `FORGE_CRASH_POINT=NAME` kills the process there.

Code calls ``crash_point("orchestrator.grading.stored")`` at places where a crash must be
survivable. In normal runs the variable is unset, the armed name is None and the call is
one comparison. When the name matches, the process sends itself SIGKILL (exactly what
``kill -9`` does: no cleanup, no atexit, no flush), so a test can restart the service and
check that nothing was lost, duplicated or leaked. ``NAME@N`` fires on the N-th hit.

The names in use are listed in :data:`POINTS` so a test matrix can run every one.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "FORGE_CRASH_POINT"

POINTS: tuple[str, ...] = (
    "spawn.recorded",                  # spawn_service: request recorded, event not published
    "spawn.published",                 # spawn_service: event published, answer not stored
    "orchestrator.launching",          # launching recorded and announced, lab being built
    "orchestrator.create.switch",      # inside lab create: switch wired, hosts not started
    "orchestrator.create.hosts",       # inside lab create: hosts up, not yet ready
    "orchestrator.running",            # lifecycle moved to running
    "orchestrator.grading",            # lifecycle moved to grading, no check run
    "orchestrator.grading.stored",     # results stored, lab not torn down, not published
    "orchestrator.published",          # completion published, state not yet completed
    "scoreboard.written",              # artifacts written, event not acknowledged
    "scoreboard.audited",              # verdict in the chain, its store marker not committed
    "scoreboard.marked",               # store marker committed, chain entry not yet sealed
)


def _parse(value: str | None) -> tuple[str | None, int]:
    if not value:
        return None, 0
    name, _, count = value.partition("@")
    return name, int(count) if count.isdigit() and int(count) > 0 else 1


_ARMED, _AT = _parse(os.environ.get(ENV))
_hits = 0
_lock = threading.Lock()


def crash_point(name: str) -> None:
    """Die here, as by ``kill -9``, when ``FORGE_CRASH_POINT`` names this point."""
    global _hits
    if _ARMED is None or name != _ARMED:
        return
    with _lock:
        _hits += 1
        if _hits < _AT:
            return
    os.kill(os.getpid(), signal.SIGKILL)
