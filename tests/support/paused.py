"""Pause a process for real before a test relies on it answering nothing.

`kill(pid, SIGSTOP)` returns once the signal is queued and one thread is woken; the other
threads of a multi-threaded process (a Go nats-server has many) keep running until that
thread takes the signal and stops them all. Under load that takes a while, and a server
"stopped" this way still answered a PING sent just after the kill (CI, stop 52). The
helpers here wait until every thread is in the stopped state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path


def _thread_states(pid: int) -> list[str]:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            stat = (task / "stat").read_text()
            states.append(stat[stat.rindex(")") + 2])  # the field after "(comm)"
    return states


def stop_process(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP `pid` and return once all its threads are stopped (AssertionError if not
    within `timeout` s)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = _thread_states(pid)
        if states and all(state == "T" for state in states):
            return
        assert time.monotonic() < deadline, f"pid {pid} not stopped: thread states {states}"
        time.sleep(0.005)


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """Hold `pid` stopped (all threads) for the block; continued after it."""
    try:
        stop_process(pid)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
