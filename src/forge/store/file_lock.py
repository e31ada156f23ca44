"""The cross-process SQLite write lock: an exclusive flock on `<database>-writelock`, waited
for without polling and given up after a timeout.

A blocking flock is handed the lock by the kernel the moment its holder lets go, and waits
without the GIL; but it cannot be timed out in place, and a holder that never lets go (a
stopped process) must give every other writer "database is locked", not a thread blocked
for good. Polling with LOCK_NB every millisecond did that, and cost the spawn API a fifth
of its throughput: each poll woke the writer thread, which took the GIL from the event loop
(measured: 215 → 300 spawns/s with two workers when the wait blocks instead).

So a contended lock is waited for by a `FlockWaiter` thread, blocking, on a duplicate of
the writer's descriptor; the writer waits for it with a timeout. A flock belongs to the open
file, not to a descriptor: the writer holds the lock through its own descriptor once the
waiter has it, and a writer that gave up closes its descriptor, so the waiter's late grant
is released with the waiter's duplicate.
"""

from __future__ import annotations

import fcntl
import os
import queue
import sqlite3
import threading

from sqlalchemy.exc import OperationalError


class _Wait:
    """One contended acquisition: the waiter's descriptor and how it ended."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.granted = threading.Event()
        self.error: OSError | None = None
        self.gave_up = False
        self.guard = threading.Lock()

    def run(self) -> None:
        """On the waiter thread: block until the lock is ours (unless the writer left)."""
        try:
            with self.guard:
                if self.gave_up:
                    return
            fcntl.flock(self.fd, fcntl.LOCK_EX)  # blocks without the GIL
        except OSError as exc:
            self.error = exc
        finally:
            # Closed before the writer is told: the lock stays with the open file while the
            # writer's own descriptor is open, and goes with this one if the writer left.
            os.close(self.fd)
            self.granted.set()


class FlockWaiter:
    """One thread per process that waits for contended locks in turn, started on demand
    (again in a forked child, which has none of its parent's threads)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Wait | None] = queue.SimpleQueue()
        self._guard = threading.Lock()
        self._pid: int | None = None

    def _submit(self, wait: _Wait) -> None:
        with self._guard:
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                thread = threading.Thread(target=self._serve, args=(self._queue,),
                                          name="db-writelock", daemon=True)
                thread.start()  # daemon: one blocked by a stopped holder never holds up exit
                self._pid = os.getpid()
            self._queue.put(wait)

    @staticmethod
    def _serve(waits: queue.SimpleQueue[_Wait | None]) -> None:
        while (wait := waits.get()) is not None:
            wait.run()

    def acquire(self, fd: int, timeout_s: float) -> None:
        """Take an exclusive flock on `fd` within `timeout_s`, else raise SQLite's
        "database is locked" (an OperationalError, as SQLite's own busy timeout would)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        wait = _Wait(os.dup(fd))
        self._submit(wait)
        if wait.granted.wait(timeout_s) and wait.error is None:
            return
        with wait.guard:
            wait.gave_up = True
        if wait.error is not None:
            raise wait.error
        raise OperationalError("flock(writelock)", None,
                               sqlite3.OperationalError("database is locked")) from None

    def close(self) -> None:
        """End the thread once the waits queued before this are done (or given up)."""
        with self._guard:
            if self._pid == os.getpid():
                self._queue.put(None)
            self._pid = None
