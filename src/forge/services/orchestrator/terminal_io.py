"""Moving terminal bytes between a lab's terminal stream and a WebSocket without ever
blocking the loop.

Only the engine-neutral stream API of `TtySession` is used (async `read`/`write`,
`resize`), never a file descriptor, so any runtime engine's terminal works here. Neither
direction buffers without bound or blocks: output is read from the terminal only after the
previous chunk was sent (a client that stops reading stalls the lab's program, not the
orchestrator's memory), and input waits in a bounded queue while the terminal takes it (a
program that stops reading its terminal, e.g. after ``stty raw; sleep``, loses the excess
input as on a real terminal, instead of freezing the event loop every lab and request
shares).
"""

from __future__ import annotations

import asyncio
import json

from fastapi import WebSocket

from forge.runtime.base import TerminalClosed, TtySession

CHUNK_BYTES = 65536  # most terminal output read (and sent as one frame) at a time


class Activity:
    """When the learner last typed (loop time); resizes and output do not count."""

    def __init__(self) -> None:
        self.last = asyncio.get_running_loop().time()

    def touch(self) -> None:
        """Record input now."""
        self.last = asyncio.get_running_loop().time()


async def pump_out(ws: WebSocket, session: TtySession) -> None:
    """Terminal → client, one chunk at a time; returns when the session ends."""
    while data := await session.read(CHUNK_BYTES):
        await ws.send_bytes(data)


class Keystrokes:
    """Input waiting for the PTY: at most `limit` bytes, the rest is dropped.

    A real terminal drops input its program does not read, too; keeping the receive side
    always reading means a disconnect or a resize is seen even while input waits.
    """

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.limit = limit
        self.pending = bytearray()
        self.in_flight = 0  # bytes handed to the terminal that it has not taken yet
        self.dropped = 0
        self._wake = asyncio.Event()

    def add(self, data: bytes) -> None:
        """Queue `data` (as much as fits under the limit, counting input in flight)."""
        room = max(0, self.limit - len(self.pending) - self.in_flight)
        self.pending += data[:room]
        self.dropped += max(0, len(data) - room)
        self._wake.set()

    async def drain(self, session: TtySession) -> None:
        """Write queued input to the terminal as it accepts it; ends if it is gone."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                chunk = bytes(self.pending)
                self.pending.clear()
                self.in_flight = len(chunk)
                try:
                    await session.write(chunk)
                except TerminalClosed:
                    return
                finally:
                    self.in_flight = 0


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
