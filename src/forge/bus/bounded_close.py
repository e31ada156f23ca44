"""Ending asyncio tasks and NATS clients within a bounded time, whatever they swallow.

nats-py's connect and close can run on past one cancellation (Python 3.11's
`asyncio.wait_for`, its own reconnect loop), and a close on a connection whose peer went
away can wait for ever: a service stopping, or a test's teardown, must not hang on them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from nats.aio.client import Client

log = logging.getLogger(__name__)


async def stop_task(task: asyncio.Task[Any], timeout: float = 5.0) -> bool:
    """Cancel `task` and wait at most `timeout` s for it to end; True if it ended.

    One `cancel()` is not enough on Python 3.11: `asyncio.wait_for` drops a cancellation
    that arrives as its inner future completes, and nats-py's close catches the
    CancelledError while it waits for its reconnect task. So the task is cancelled again
    every 50 ms until it ends or the time is up, and the caller never waits longer.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.05, remaining))
    retrieve(task)
    return True


async def run_to_end(step: Awaitable[None]) -> None:
    """Run a bounded clean-up `step` to its end even if this task is cancelled meanwhile
    (`stop_task` cancels every 50 ms), then raise that cancellation, if any."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    retrieve(task)
    if cancelled:
        raise asyncio.CancelledError


def retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback: read a finished task's outcome, so asyncio never reports it unread."""
    if not task.cancelled():
        task.exception()


async def close_client(nc: Client, timeout: float) -> None:
    """Close `nc`, waiting at most about `timeout` s; past that, drop its socket.

    nats-py's close flushes and waits for the socket to close; on a connection whose
    peer went away that wait can last for ever, and the cancellation `asyncio.wait_for`
    sends it can be swallowed (see `stop_task`). A service stopping, or a test's teardown,
    must not hang on it.
    """
    closing = asyncio.ensure_future(nc.close())
    closing.add_done_callback(retrieve)  # also when this call is cancelled meanwhile
    done, _ = await asyncio.wait({closing}, timeout=timeout)
    if closing in done:
        return
    transport = getattr(nc, "_transport", None)
    writer = getattr(transport, "_io_writer", None)
    if writer is not None:
        writer.transport.abort()  # wakes any drain/wait_closed on that socket
    # Let the woken close finish its clean-up (subscriptions, callbacks) before cancelling.
    done, _ = await asyncio.wait({closing}, timeout=0.5)
    if closing not in done and not await stop_task(closing, 1.0):
        log.warning("NATS client %s did not close within %.1f s; left behind",
                    getattr(nc, "_client_name", "?"), timeout + 1.5)
