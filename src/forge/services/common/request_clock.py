"""How long a client may take to send a request and to take its answers (anti-slowloris).

uvicorn times out a connection only while it is idle after an answer: one that never
sends a request, sends its head or body a byte at a time, or never reads what it asked
for, was held for ever, so a few thousand such connections (a slowloris) used up the
service's file descriptors and nobody else got in. `ClockedProtocol` (uvicorn's httptools
protocol; `request_head.BoundedHeadProtocol` builds on it) runs a clock of
`REQUEST_TIMEOUT_S` periods while the client is the one waited on:

* a request: the connection's first must arrive whole (line, headers and body) within a
  period of connecting, each later one within a period of its first byte; otherwise 408
  `request_timeout` (unless an answer is under way, which it would corrupt) and close;
* answers: while any of the connection's output is undelivered (in the server's buffer
  or the kernel's), the client must take at least `MIN_DRAIN_BYTES` of it (or all that was
  owed) per period (the kernel's count of bytes the client acknowledged); otherwise the
  connection is aborted (a close would wait for ever to flush it);
* idle: a connection with nothing owed either way and no keep-alive close armed (bytes
  after an early answer cancel uvicorn's) is closed.

The clock waits on while the service is the one working: a request received whole and not
yet answered, a body the handler has not read yet (reading paused), a `100 Continue` not
yet sent; the client then gets one more whole period. It stops once the connection
becomes a WebSocket.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import socket
import struct
import termios
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# For the whole request, not per read: a byte now and then would otherwise do. Forge's
# bodies are small JSON documents; the largest allowed (FORGE_MAX_BODY_BYTES, 1 MiB) needs
# about 35 KB/s.
REQUEST_TIMEOUT_S = 30.0
# What a client must take of its undelivered answers per period: about 550 B/s, far below
# any real link, but a client holding connections by reading a window now and then must
# really receive this much on each.
MIN_DRAIN_BYTES = 16 * 1024
_TCP_INFO_BYTES_ACKED = 120  # offset of tcpi_bytes_acked (u64) in Linux's struct tcp_info
_TCP_INFO_LEN = _TCP_INFO_BYTES_ACKED + 8



def closing_answer(status: bytes, error: dict[str, Any]) -> bytes:
    """A whole HTTP/1.1 answer written by the protocol itself, outside the app: `status`
    (e.g. b"408 Request Timeout") with the API's error document, closing the connection."""
    body = json.dumps(error).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body)


_SLOW = closing_answer(b"408 Request Timeout", {
    "error": "request_timeout",
    "message": "request: the request line, headers and body did not arrive within "
               f"{REQUEST_TIMEOUT_S:g} s",
    "details": [{"field": "request", "limit_seconds": REQUEST_TIMEOUT_S}],
})


class ClockedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request clock (see the module docstring)."""

    _clock: asyncio.TimerHandle | None = None
    _refused = False  # nothing more the connection sends is parsed
    _due: float | None = None  # when the request awaited must have arrived (loop time)
    _serving = False  # the service was the one working at the last tick
    _ended: object = None  # the request cycle whose message (head and body) last ended
    # (bytes the client had taken, when, bytes then undelivered): the drain's baseline
    _drain: tuple[int, float, int] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._due = self.loop.time() + REQUEST_TIMEOUT_S  # its first request
        self.start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._stop_clock()  # the WebSocket protocol takes the connection over
        self._due = None
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._due is None and not data.strip(b"\r\n"):
            # Line ends between requests (ignored, RFC 9112 2.2) are not a request; but they
            # cancel uvicorn's keep-alive close, so the clock's idle close takes over.
            self.start_clock()
        else:
            self._await_request()  # bytes of a request: it must now arrive whole in time
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._await_request()  # a pipelined request begins in the read that ended the last
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._due = None
        # uvicorn leaves `more_body` set on a request answered before its body ended.
        self._ended = getattr(self, "cycle", None)
        super().on_message_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        self.start_clock()  # the client must take what it asked for

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.start_clock()  # an answer may be left undelivered, also behind a close

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self.start_clock()  # the close waits for undelivered output

    def _await_request(self) -> None:
        if self._due is None:
            self._due = self.loop.time() + REQUEST_TIMEOUT_S
        self.start_clock()

    def start_clock(self) -> None:
        """Run the clock (a no-op while it runs: it never runs more than a period ahead,
        and each tick reschedules for the nearest deadline)."""
        if self._clock is None:
            self._clock = self.loop.call_later(REQUEST_TIMEOUT_S, self._time_up)

    def _arm_at(self, when: float) -> None:
        if self._clock is None:
            self._clock = self.loop.call_at(when, self._time_up)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _undelivered(self) -> int:
        """Output bytes not yet taken by the client: the transport's buffer and the
        kernel's send queue."""
        pending = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4)
                pending += struct.unpack("i", queued)[0]
            except (OSError, ValueError):
                pass
        return pending

    def _taken(self) -> int | None:
        """Bytes the client has acknowledged on this connection (None: not known)."""
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return None
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except (OSError, ValueError, AttributeError):  # AttributeError: not Linux
            return None
        if len(info) < _TCP_INFO_LEN:
            return None
        return int(struct.unpack_from("Q", info, _TCP_INFO_BYTES_ACKED)[0])

    def _drained_too_little(self, now: float, undelivered: int) -> tuple[bool, float]:
        """(whether the client took too little of its output over the last whole period,
        when the drain is next judged); the first call only takes the baseline."""
        taken = self._taken()
        if taken is None:
            return False, now + REQUEST_TIMEOUT_S
        if self._drain is None:
            self._drain = (taken, now, undelivered)
            return False, now + REQUEST_TIMEOUT_S
        before, since, owed = self._drain
        if now - since < REQUEST_TIMEOUT_S:
            return False, since + REQUEST_TIMEOUT_S
        if taken - before < min(MIN_DRAIN_BYTES, owed):
            return True, now
        self._drain = (taken, now, undelivered)
        return False, now + REQUEST_TIMEOUT_S

    def _time_up(self) -> None:
        """A tick: abort a connection whose client stopped taking its answers; 408 and
        close one whose request did not arrive in time; wait on for the service's work;
        close an idle one nothing else will close."""
        self._clock = None
        now = self.loop.time()
        next_at = now + REQUEST_TIMEOUT_S
        undelivered = self._undelivered()
        if undelivered:
            stalled, judged_at = self._drained_too_little(now, undelivered)
            if stalled:
                self._refused = True
                self.transport.abort()
                return
            next_at = min(next_at, judged_at)
        else:
            self._drain = None
        if self.transport.is_closing():
            if undelivered:
                self._arm_at(next_at)  # the close flushes first: the client must take it
            return
        cycle = getattr(self, "cycle", None)
        owed = cycle is not None and not cycle.response_complete and not cycle.more_body
        continuing = (cycle is not None and cycle.waiting_for_100_continue
                      and not cycle.response_started)
        if owed or continuing or self.flow.read_paused:
            self._serving = True  # the service's time is not the client's
            self._arm_at(next_at)
            return
        if self._serving:  # the service is done: the client gets a whole period again
            self._serving = False
            if self._due is not None:
                self._due = max(self._due, now + REQUEST_TIMEOUT_S)
        if self._due is not None:
            if now < self._due:
                self._arm_at(min(next_at, self._due))
                return
            self._request_too_slow(cycle)
            return
        if undelivered:
            self._arm_at(next_at)
        elif (self.timeout_keep_alive_task is None and not self.pipeline
              and (cycle is None or cycle.response_complete)):
            # Idle, and uvicorn's keep-alive close is not armed (bytes after an early
            # answer cancelled it): nothing else would ever close this connection.
            self.transport.close()

    def _request_too_slow(self, cycle: Any) -> None:
        """408 (unless an answer is under way, which it would corrupt) and close."""
        self._refused = True
        self._due = None
        answered = cycle is not None and cycle.response_complete
        ended = cycle is not None and (not cycle.more_body or self._ended is cycle)
        if cycle is None or (answered and ended) or (
                not answered and not cycle.response_started and not self.pipeline):
            if cycle is not None and not answered:
                cycle.disconnected = True  # the handler's own answer is dropped
                cycle.message_event.set()
            self.transport.write(_SLOW)
        # Otherwise an answer is under way (or was given early, before the body): a 408
        # would read as part of it, or as the answer to a next request.
        self.transport.close()
        self.start_clock()  # the close flushes first: the client must take it
