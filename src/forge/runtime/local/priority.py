"""Scheduling priority of lab processes: every lab runs at nice 0.

The warm pool's refill thread runs at nice 10 so a refill yields to claims and fresh
builds. A thread inherits the nice value of the thread that starts it, and a process that
of the thread that forks it: a lab worker thread started by the refill thread would build
every later lab (fresh ones too, and a pool lab whose waiting inits start a claimed
scenario's services) at nice 10. Worker threads therefore start at nice 0; every sandbox
is forked from one of them.
"""

from __future__ import annotations

import contextlib
import os
import threading


def thread_unniced() -> None:
    """A lab worker thread's initializer: nice 0, whichever thread happened to start it."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 0)
