"""Moving terminal bytes between a lab's PTY and a WebSocket without ever blocking the loop.

Neither direction buffers without bound or blocks: output is read from the PTY only after
the previous chunk was sent (a client that stops reading stalls the lab's program, not the
orchestrator's memory), and input is written without blocking from a bounded queue (a
program that stops reading its terminal, e.g. after ``stty raw; sleep``, loses the excess
input as on a real terminal, instead of freezing the event loop every lab and request
shares).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os

from fastapi import WebSocket

from forge.runtime.base import TtySession


def make_nonblocking(session: TtySession) -> None:
    """Put the PTY's descriptor in non-blocking mode (writes then return short or EAGAIN)."""
    fd = session.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


class Activity:
    """When the learner last typed (loop time); resizes and output do not count."""

    def __init__(self) -> None:
        self.last = asyncio.get_running_loop().time()

    def touch(self) -> None:
        """Record input now."""
        self.last = asyncio.get_running_loop().time()


async def _ready(fd: int, *, write: bool) -> None:
    """Wait until `fd` is readable (or writable)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def pump_out(ws: WebSocket, session: TtySession) -> None:
    """PTY → client, one chunk at a time; returns when the session ends."""
    while True:
        await _ready(session.fileno(), write=False)
        try:
            data = session.read()
        except BlockingIOError:  # woken without data after all; wait again
            continue
        if not data:
            return
        await ws.send_bytes(data)


class Keystrokes:
    """Input waiting for the PTY: at most `limit` bytes, the rest is dropped.

    A real terminal drops input its program does not read, too; keeping the receive side
    always reading means a disconnect or a resize is seen even while input waits.
    """

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.limit = limit
        self.pending = bytearray()
        self.dropped = 0
        self._wake = asyncio.Event()

    def add(self, data: bytes) -> None:
        """Queue `data` (as much as fits under the limit)."""
        room = max(0, self.limit - len(self.pending))
        self.pending += data[:room]
        self.dropped += max(0, len(data) - room)
        self._wake.set()

    async def drain(self, session: TtySession) -> None:
        """Write queued input to the PTY as it accepts it; ends if the PTY is gone."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                with contextlib.suppress(BlockingIOError):  # the PTY's input queue is full
                    del self.pending[:session.write(bytes(self.pending))]
                if self.pending:
                    await _ready(session.fileno(), write=True)


async def pump_in(ws: WebSocket, session: TtySession, activity: Activity,
                  keys: Keystrokes) -> None:
    """Client → PTY: binary frames are keystrokes (queued for `keys.drain`); a text frame may
    resize the terminal."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            activity.touch()
            keys.add(message["bytes"])
        elif message.get("text"):
            try:
                control = json.loads(message["text"])
                if control.get("type") == "resize":
                    rows, cols = int(control["rows"]), int(control["cols"])
                    if 1 <= rows <= 500 and 1 <= cols <= 1000:
                        session.resize(rows, cols)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
