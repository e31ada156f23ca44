"""What a terminal session keeps of its shell's output: the scrollback a new socket is
first shown (the last `SCROLLBACK_BYTES`, replayed after a `RESET` from a clean start), and
each attached socket's outbox, bounded at `OUTBOX_BYTES` so a client that falls behind
makes the session stop reading its shell rather than the node buffer without end.
"""

from __future__ import annotations

import asyncio
from collections import deque

from forge.services.orchestrator.terminal_io import CHUNK_BYTES
from forge.services.orchestrator.terminal_slots import Closing

SCROLLBACK_BYTES = 256 * 1024
OUTBOX_BYTES = 256 * 1024
RESET = b"\x1bc"  # full terminal reset (RIS), sent before a replay so it draws on a clean slate


class Scrollback:
    """The last `limit` bytes of a session's output, replayed from a clean start.

    A ring of the chunks as read (each at most one read, `CHUNK_BYTES`): appending costs the
    chunk, and dropping old output pops whole chunks and slices at most one, so a shell that
    prints without pause never makes the node copy the whole buffer per chunk."""

    def __init__(self, limit: int = SCROLLBACK_BYTES) -> None:
        self.limit = limit
        self._chunks: deque[bytes] = deque()
        self.size = 0
        self._cut = False  # older output was dropped: the buffer may start mid-sequence

    def add(self, data: bytes) -> None:
        """Append output, dropping the oldest bytes past the limit."""
        if len(data) >= self.limit:
            self._cut = self._cut or self.size > 0 or len(data) > self.limit
            self._chunks.clear()
            data = data[len(data) - self.limit:]
            self.size = 0
        if not data:
            return
        self._chunks.append(data)
        self.size += len(data)
        while self.size - len(self._chunks[0]) >= self.limit:
            self.size -= len(self._chunks.popleft())
            self._cut = True
        excess = self.size - self.limit
        if excess > 0:
            self._chunks[0] = self._chunks[0][excess:]
            self.size -= excess
            self._cut = True

    def replay(self) -> bytes:
        """The kept output; once trimmed, from just after its first newline (never inside a
        UTF-8 character or, in practice, an escape sequence), else from a character start."""
        data = b"".join(self._chunks)
        if not self._cut:
            return data
        newline = data.find(b"\n")
        if newline >= 0:
            return data[newline + 1:]
        start = 0
        while start < len(data) and 0x80 <= data[start] <= 0xBF:
            start += 1
        return data[start:]


class Attachment:
    """One socket's view of a session: output queued for it (bounded), and why it ends."""

    def __init__(self) -> None:
        self._queue: deque[bytes] = deque()
        self.pending = 0
        self._ready = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.stop = asyncio.Event()
        self.closing: Closing | None = None

    def push(self, data: bytes) -> None:
        """Queue output for this socket; marks it full at `OUTBOX_BYTES`."""
        if self.stop.is_set():
            return
        self._queue.append(data)
        self.pending += len(data)
        self._ready.set()
        if self.pending >= OUTBOX_BYTES:
            self.room.clear()

    async def take(self) -> bytes:
        """Wait for queued output and return it (at most about one chunk, joined); ``b""``
        once this socket is asked to go and everything queued was taken."""
        while not self._queue:
            if self.stop.is_set():
                return b""
            self._ready.clear()
            await self._ready.wait()
        parts: list[bytes] = []
        size = 0
        while self._queue and size < CHUNK_BYTES:
            part = self._queue.popleft()
            parts.append(part)
            size += len(part)
        self.pending -= size
        if self.pending < OUTBOX_BYTES:
            self.room.set()
        return b"".join(parts)

    def end(self, closing: Closing | None) -> None:
        """Ask this socket to go (`closing`: why; None when the shell simply ended)."""
        if self.closing is None:
            self.closing = closing
        self.stop.set()
        self._ready.set()
        self.room.set()  # never hold the session's output back for a socket that is going

    def discard(self) -> None:
        """The socket is gone: drop the output it never took (nobody will take it)."""
        self._queue.clear()
        self.pending = 0
