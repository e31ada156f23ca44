"""A readiness check that asks a peer service, paced: one ask at a time, an agreement
trusted for a while, any other outcome for a moment.

Anyone may run `/readyz` and its checks. A check that asked a peer on every run let anyone
make this service ask the orchestrator as often as they liked, each time with a new
one-use proof (`forge.services.common.peer_proof`): a flood of anonymous readiness runs
became a flood at the orchestrator. Keys change only when a service restarts, so an
agreement found stands for ``agreed_for_s``; a disagreement, or a peer out of reach, is
asked again after ``retry_s``, so a fix shows within a second or two.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from forge.services.common.readiness import CheckFailed


class PacedCheck:
    """``ask()`` as a readiness check, its last outcome (detail or ``CheckFailed``) reused
    while young enough; concurrent runs wait for the one ask under way."""

    def __init__(self, ask: Callable[[], Awaitable[str]], agreed: Callable[[str], bool],
                 agreed_for_s: float, retry_s: float) -> None:
        self._ask = ask
        self._agreed = agreed
        self._agreed_for_s = agreed_for_s
        self._retry_s = retry_s
        self._outcome: str | CheckFailed | None = None
        self._until = -float("inf")
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def check(self) -> str:
        """The last outcome while it stands, else a new ask's (raises ``CheckFailed``)."""
        async with self._lock_here():
            if self._outcome is None or time.monotonic() >= self._until:
                try:
                    detail = await self._ask()
                except CheckFailed as exc:
                    self._outcome, hold = exc, self._retry_s
                else:
                    self._outcome = detail
                    hold = self._agreed_for_s if self._agreed(detail) else self._retry_s
                self._until = time.monotonic() + hold
            if isinstance(self._outcome, CheckFailed):
                raise CheckFailed(str(self._outcome))
            return self._outcome

    def _lock_here(self) -> asyncio.Lock:
        """This event loop's lock (an app started again in a test runs on a new loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock
