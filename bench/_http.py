"""A small keep-alive HTTP/1.1 client for the API benches, on plain asyncio streams.

httpx costs about as much CPU per request as the service under test; on a 2-core machine
the client would then measure itself. This client writes one request and reads one
response per call over a persistent connection and parses only what a bench needs (status,
body). It is a bench helper, not a general client (no chunked bodies, no redirects).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class BenchConnection:
    """One keep-alive connection to `host:port`; `request` sends one and reads the answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # A connection the server closed while it sat idle (uvicorn's keep-alive timeout,
        # 5 s) has its end of stream already: open a new one rather than send into it and
        # count a request the server never saw as failed.
        if (self._reader is None or self._writer is None or self._writer.is_closing()
                or self._reader.at_eof()):
            if self._writer is not None:
                self._writer.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: Any = None) -> tuple[int, bytes]:
        """(status, body bytes) of one request; `body` is sent as JSON when given."""
        reader, writer = await self._open()
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(data)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        status_line = await reader.readline()
        if not status_line:
            self.close()
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        payload = await reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, payload

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
