"""Starts a stop signal cut short, made again.

A process the runtime starts (a host's bwrap, a grading check's) is in the service's
process group until its ``setsid``, so a stop signal to that group can kill it there
(``forge.detached``). One that cannot be started with the signals blocked, because lab
processes must not inherit a blocked mask, raises ``StartCutShort`` instead, and
``restarted`` starts it again: the service drains after a stop, and a build or a grading
under way must not fail for the signal that began it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import TypeVar

from forge.detached import RESTART_ATTEMPTS
from forge.runtime.base import StoppedMidway

T = TypeVar("T")

log = logging.getLogger("forge.runtime.restarts")


class StartCutShort(StoppedMidway):
    """``what`` died of stop signal ``sig`` before it left the service's process group
    (``times`` starts in a row, when more than one)."""

    def __init__(self, what: str, sig: int, times: int = 1) -> None:
        self.what, self.signal = what, signal.Signals(sig)
        again = f" {times} times" if times > 1 else ""
        super().__init__(f"{what} was killed by {self.signal.name}{again} while starting")


def restarted(start: Callable[[], T]) -> T:
    """``start()``, made again while it raises ``StartCutShort``, up to RESTART_ATTEMPTS
    starts in all; the last one's ``StartCutShort`` then says how many."""
    attempts = 1
    while True:
        try:
            return start()
        except StartCutShort as exc:
            if attempts >= RESTART_ATTEMPTS:
                raise StartCutShort(exc.what, exc.signal, attempts) from exc
            log.info("%s; starting it again", exc)
            attempts += 1
