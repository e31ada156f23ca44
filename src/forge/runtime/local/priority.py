"""Scheduling priority of lab processes: every lab runs at nice 0.

The warm pool's refill thread runs at nice 10 so a refill yields to claims and fresh
builds; a thread and a process inherit the nice value of the thread that started them, so
what the refill starts must be put back to 0 where it outlives the build.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable


def unnice(pids: Iterable[int]) -> None:
    """Back to nice 0 (each pid is one thread; a gone pid is skipped)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 0)


def thread_unniced() -> None:
    """A worker thread's initializer: nice 0, whichever thread happened to start it (one
    started by the niced refill thread would otherwise build every later lab, fresh ones
    too, at nice 10)."""
    unnice([threading.get_native_id()])
