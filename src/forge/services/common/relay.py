"""Run the two directions of a relay (terminal bytes in and out) until either one ends."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

SIGNED_OUT_CODE = 4401
"""WebSocket close code of a terminal whose browser session signed out: spawn_service's
relay and the node's terminal both send it, so the page tells the learner the same."""


async def until_first_ends(*pumps: Coroutine[Any, Any, None]) -> None:
    """Run `pumps` concurrently; when one returns or fails, cancel the others.

    A closed socket ends a pump with an exception; that is the normal way a relay stops,
    so the exceptions are collected here and not reported as unhandled. The cancelled pumps
    are awaited, so their cleanup (e.g. unregistering a descriptor from the loop) is done
    before the caller closes what they were pumping.
    """
    tasks = [asyncio.create_task(p) for p in pumps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        for task in tasks:
            if not task.cancelled():
                task.exception()
