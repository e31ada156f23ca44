"""A readiness check that asks a peer service, paced: one ask at a time, shared by every
run waiting for it; an agreement trusted for a while, any other outcome for a moment.

Anyone may run `/readyz` and its checks. A check that asked a peer on every run let anyone
make this service ask the orchestrator as often as they liked, each time with a new
one-use proof (`forge.services.common.peer_proof`): a flood of anonymous readiness runs
became a flood at the orchestrator. Keys change only when a service restarts, so an
agreement found stands for ``agreed_for_s``; a disagreement, an unreadable answer or a
peer out of reach stands for ``retry_s``. The ask runs on its own: a readiness run that
gives up waiting (its timeout) neither cancels it nor loses its outcome. A run made with
an operator credential (`readiness.FRESH`) asks again unless the last ask is younger than
``retry_s``: after a rotation the operator sees the peers as they are now.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import suppress
from time import monotonic
from typing import Any

from forge.services.common.readiness import FRESH, CheckFailed


class PacedCheck:
    """``ask()`` as a readiness check, run at most once per ``retry_s`` and one at a time."""

    def __init__(self, ask: Callable[[], Coroutine[Any, Any, str]], agreed: Callable[[str], bool],
                 agreed_for_s: float, retry_s: float) -> None:
        self._ask = ask
        self._agreed = agreed
        self._agreed_for_s = agreed_for_s
        self._retry_s = retry_s
        self._task: asyncio.Task[str] | None = None
        self._asked_at = -float("inf")
        self._failed: tuple[float, CheckFailed] | None = None  # the last ask's, if it failed

    async def check(self) -> str:
        """The standing outcome (a detail, or the exception it raised), else a new ask's."""
        return await asyncio.shield(self._current())

    def _current(self) -> asyncio.Task[str]:
        task, loop = self._task, asyncio.get_running_loop()
        if task is not None and task.get_loop() is loop:
            age = monotonic() - self._asked_at
            if not task.done() or age < self._retry_s:
                return task
            if not FRESH.get() and age < self._held_for(task):
                return task
        self._asked_at = monotonic()
        self._task = loop.create_task(self._ask())
        self._task.add_done_callback(_retrieved)
        self._task.add_done_callback(self._outcome)
        return self._task

    def _outcome(self, task: asyncio.Task[str]) -> None:
        if not task.cancelled():
            exc = task.exception()
            self._failed = (monotonic(), exc) if isinstance(exc, CheckFailed) else None

    async def standing_failure(self, max_age_s: float) -> CheckFailed | None:
        """The check's failure when its last finished ask failed (CheckFailed) at most
        ``max_age_s`` ago, else None. A stale outcome is asked again (paced as readiness
        runs are): in the background when the last one was no failure (nothing waits while
        the peers agree), awaited when it was one, so a failure found before the peers
        agreed again (a service restarted with the right keys) refuses nobody after that;
        the ask is bounded by its own deadline."""
        task = self._current()
        failed = self._failed
        if failed is None:
            return None
        if not task.done() or monotonic() - failed[0] > max_age_s:
            # Asked again just now (a stale failure always is), or still asking: that
            # ask's outcome decides.
            with suppress(Exception):
                await asyncio.shield(task)
            failed = self._failed
            if failed is None or monotonic() - failed[0] > max_age_s:
                return None
        return failed[1]

    def _held_for(self, task: asyncio.Task[str]) -> float:
        if task.cancelled() or task.exception() is not None:
            return self._retry_s
        return self._agreed_for_s if self._agreed(task.result()) else self._retry_s


def _retrieved(task: asyncio.Task[str]) -> None:
    """Mark a failed ask's exception as seen (the runs waiting for it may all have gone)."""
    if not task.cancelled():
        task.exception()
