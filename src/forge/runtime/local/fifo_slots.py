"""A counting limit whose waiters are served in arrival order: the runtime's build slots.

``threading.Semaphore`` is not fair: a released slot wakes the first waiter, but a thread
arriving meanwhile may take it first, and the woken waiter then waits again at the back.
Under a class's steady stream of spawns a lab could be passed over by ever newer ones.
Here a release hands its slot straight to the longest waiter, and a newcomer waits
behind everyone already waiting.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FifoSlots:
    """At most ``count`` holders at once; ``with slots:`` holds one."""

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"slots must be at least 1, not {count}")
        self._lock = threading.Lock()
        self._free = count
        self._waiting: deque[threading.Lock] = deque()

    def acquire(self) -> None:
        """Take a slot, waiting behind every earlier waiter."""
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        try:
            turn.acquire()  # released by the release() that hands this waiter its slot
        except BaseException:  # interrupted: leave the line, or pass on a slot handed over
            with self._lock:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                    raise
            self.release()
            raise

    def release(self) -> None:
        """Give the slot to the longest waiter, or back to the pool."""
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._free += 1

    def waiting(self) -> int:
        """How many threads wait for a slot."""
        with self._lock:
            return len(self._waiting)

    def __enter__(self) -> FifoSlots:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
