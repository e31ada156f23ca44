"""Keystrokes into a lab's terminal stream without ever blocking the loop, and the clock of
the learner's last input.

Only the engine-neutral stream API of `TtySession` is used (async `write`), never a file
descriptor, so any runtime engine's terminal works here. Input waits in a bounded queue
while the terminal takes it (a program that stops reading its terminal, e.g. after
``stty raw; sleep``, loses the excess input as on a real terminal, instead of freezing the
event loop every lab and request shares). Output is bounded by terminal_sessions.
"""

from __future__ import annotations

import asyncio

from forge.runtime.base import TerminalClosed, TtySession

CHUNK_BYTES = 65536  # most terminal output read (and sent as one frame) at a time


class Activity:
    """When the learner last typed (loop time); resizes and output do not count."""

    def __init__(self) -> None:
        self.last = asyncio.get_running_loop().time()

    def touch(self) -> None:
        """Record input now."""
        self.last = asyncio.get_running_loop().time()


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

    @property
    def room(self) -> int:
        """How many more bytes `add` would queue now (the page paces a long paste by it)."""
        return max(0, self.limit - len(self.pending) - self.in_flight)

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
