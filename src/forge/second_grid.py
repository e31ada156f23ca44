"""A grid of instants per process that a service's periodic timers wake on, so timers of
one period share one loop wake-up instead of each waking the process on its own phase.

An idle service woke twice a second for two one-second timers (uvicorn's Date-header tick
in `forge.services.common.serving`, the WAL-change check in
`forge.store.wal_checkpoints`), started at unrelated moments. Each now sleeps until the
next point of the grid: both land on the same instant, and asyncio runs every callback due
in the same pass of its loop. The grid's phase is drawn from the process id, so the
services of one machine do not all wake at the same instant.
"""

from __future__ import annotations

import asyncio
import math
import os

MIN_GAP_S = 0.001  # a tick that fired a hair early does not fire again at once


def phase() -> float:
    """This process's offset of the grid, as a share of the period (asked each time: a
    forked worker has a pid of its own)."""
    return (os.getpid() % 997) / 997


def next_tick(now: float, every_s: float, offset: float) -> float:
    """The first grid point of period `every_s` (offset `offset` of it) later than `now`
    by more than MIN_GAP_S: the same float for every caller of one period and offset."""
    return (math.floor((now + MIN_GAP_S) / every_s - offset) + 1 + offset) * every_s


async def sleep_to_tick(every_s: float, stop: asyncio.Future[None] | None = None) -> None:
    """Sleep until the next grid point of period `every_s` (loop time), or until `stop`
    is done, whichever is first."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_at(next_tick(loop.time(), every_s, phase()), _settle, woken)
    try:
        if stop is None:
            await woken
        else:
            await asyncio.wait({woken, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()


def _settle(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
