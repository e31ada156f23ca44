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
is released with the waiter's duplicate. A wait not begun when its writer gives up is
closed by the writer (a holder stopped for hours must not pile up descriptors), and a
forked child closes its copies of the pending ones (a copy would hold a late grant for the
child's whole life). Forge starts its processes with fork and exec (every descriptor here
is close-on-exec); a fork without exec while a writer of the parent waits or writes is
not supported: the child's copy of that writer's descriptor and in-process lock would
keep the lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import sqlite3
import threading
import weakref

from sqlalchemy.exc import OperationalError

log = logging.getLogger("forge.store")


class _Wait:
    """One contended acquisition: the waiter's descriptor and how it ended."""

    def __init__(self, fd: int) -> None:
        self.fd = fd  # -1 once closed
        self.granted = threading.Event()
        self.error: OSError | None = None
        self.gave_up = False
        self.started = False
        self.done = False  # the wait ended (granted or failed), set under `guard`
        self.guard = threading.Lock()

    def close_fd(self) -> None:
        """Close the waiter's descriptor once (the caller holds `guard`, or is alone)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def run(self) -> None:
        """On the waiter thread: block until the lock is ours (unless the writer left)."""
        with self.guard:
            if self.gave_up:  # its writer closed the descriptor already
                return
            self.started = True
            fd = self.fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the GIL
        except OSError as exc:
            self.error = exc
        finally:
            # Closed before the writer is told: the lock stays with the open file while the
            # writer's own descriptor is open, and goes with this one if the writer left.
            with self.guard:
                self.close_fd()
                self.done = True
            self.granted.set()

    def fail(self, error: OSError) -> None:
        """End the wait as failed (the waiter thread hit an unexpected error)."""
        with self.guard:
            if not self.done:
                self.error = error
                self.close_fd()
                self.done = True
        self.granted.set()

    def give_up(self) -> bool:
        """The writer's timeout ran out: True if the lock was granted meanwhile after all
        (the writer holds it), else the wait is abandoned (its descriptor closed here when
        the waiter has not begun it)."""
        with self.guard:
            if self.done and self.error is None:
                return True
            self.gave_up = True
            if not self.started:
                self.close_fd()
            return False


_WAITERS: weakref.WeakSet[FlockWaiter] = weakref.WeakSet()


class FlockWaiter:
    """One thread (per database file, in each process: `forge.store.db` keeps one waiter
    per URL) that waits for contended locks in turn, started on demand (again in a forked
    child, which has none of its parent's threads)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Wait | None] | None = None
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: set[_Wait] = set()
        _WAITERS.add(self)

    def _submit(self, wait: _Wait) -> None:
        with self._guard:
            if self._queue is None:  # first use, or after close()
                self._queue = queue.SimpleQueue()
            if self._thread is None or not self._thread.is_alive():
                # (a replacement serves the waits queued for the one that died)
                thread = threading.Thread(target=self._serve, args=(self._queue,),
                                          name="db-writelock", daemon=True)
                thread.start()  # daemon: one blocked by a stopped holder never holds up exit
                self._thread = thread
            self._pending.add(wait)
            self._queue.put(wait)

    def _serve(self, waits: queue.SimpleQueue[_Wait | None]) -> None:
        while (wait := waits.get()) is not None:
            try:
                wait.run()
            except Exception as exc:  # the thread goes on serving the writers behind it
                log.exception("waiting for the SQLite write lock failed")
                wait.fail(OSError(f"waiting for the write lock failed: {exc!r}"))
            finally:
                with self._guard:
                    self._pending.discard(wait)

    def acquire(self, fd: int, timeout_s: float) -> None:
        """Take an exclusive flock on `fd` within `timeout_s`, else raise SQLite's
        "database is locked" (an OperationalError, as SQLite's own busy timeout would)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        wait = _Wait(os.dup(fd))
        try:
            self._submit(wait)
        except BaseException:
            wait.give_up()
            raise
        if wait.granted.wait(timeout_s) and wait.error is None:
            return
        if wait.error is not None:
            raise wait.error
        if wait.give_up():
            return
        raise OperationalError("flock(writelock)", None,
                               sqlite3.OperationalError("database is locked")) from None

    def close(self) -> None:
        """End the thread once the waits queued before this are done (or given up)."""
        with self._guard:
            if self._queue is not None:
                self._queue.put(None)
            self._queue = None
            self._thread = None

    def _after_fork_in_child(self) -> None:
        """In a forked child: none of the parent's threads, and the pending waits'
        descriptors are copies that must not hold a late grant for the child's life."""
        self._guard = threading.Lock()
        for wait in self._pending:
            wait.guard = threading.Lock()
            wait.gave_up = True
            wait.close_fd()
        self._pending = set()
        self._thread = None
        self._queue = None


def _after_fork_in_child() -> None:
    for waiter in list(_WAITERS):
        waiter._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
