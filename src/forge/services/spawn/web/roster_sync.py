"""At most one LMS roster sync of a cohort at a time in this process, held until its
storing has finished.

A sync may read 50 pages and enrol 10,000 people, so a second one of the same cohort
meanwhile is 409 `lti_roster_busy`. The storing runs in a worker thread; a request cancelled
while it runs (the client gone) must not free the cohort while the thread keeps writing, so
once the worker has started, the worker releases the guard, not the request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from forge.errors import ForgeError

T = TypeVar("T")

_SYNCING: set[str] = set()  # cohorts whose roster this process is syncing now
_SYNCING_GUARD = threading.Lock()


class RosterSync:
    """One cohort's guard, released once: by the request, or by the worker storing."""

    def __init__(self, cohort_id: str) -> None:
        self.cohort_id = cohort_id
        self._lock = threading.Lock()
        self._worker = self._released = False

    def _release(self) -> None:
        with _SYNCING_GUARD:
            _SYNCING.discard(self.cohort_id)

    def release(self) -> None:
        """Free the cohort (once)."""
        with self._lock:
            if not self._released:
                self._released = True
                self._release()

    def take_over(self) -> bool:
        """The worker takes the guard over; False if the request already let it go."""
        with self._lock:
            self._worker = not self._released
            return self._worker

    def abandon(self) -> None:
        """The request ends: free the cohort unless a worker holds it."""
        with self._lock:
            if self._worker or self._released:
                return
            self._released = True
            self._release()

    async def store(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a worker thread that releases the cohort when `fn` has finished,
        even if the awaiting request is cancelled meanwhile."""
        def run() -> T:
            if not self.take_over():
                raise ForgeError("lti_roster_busy", 409, "cohort_id: the sync was cancelled "
                                 "before its roster was stored", [{"field": "cohort_id"}])
            try:
                return fn()
            finally:
                self.release()
        return await run_in_threadpool(run)


@contextmanager
def one_sync(cohort_id: str) -> Iterator[RosterSync]:
    """Claim the cohort's sync (ForgeError 409 `lti_roster_busy` if one runs)."""
    with _SYNCING_GUARD:
        if cohort_id in _SYNCING:
            raise ForgeError("lti_roster_busy", 409, "cohort_id: this cohort's LMS roster is "
                             "being read now; try again when that sync has finished",
                             [{"field": "cohort_id"}])
        _SYNCING.add(cohort_id)
    sync = RosterSync(cohort_id)
    try:
        yield sync
    finally:
        sync.abandon()


def syncing(cohort_id: str) -> bool:
    """Whether a sync of the cohort holds its guard now."""
    with _SYNCING_GUARD:
        return cohort_id in _SYNCING


__all__ = ["RosterSync", "one_sync", "syncing"]
