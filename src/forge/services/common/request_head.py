"""A cap on the request head (request line and headers) every Forge service reads.

The body cap (forge.services.common.limits) runs inside the app, after the server has
parsed the head; uvicorn's httptools parser keeps a header of any size, so one request
carrying a 20 MB header (or thousands of headers, or a chunked body's endless trailer)
held that much memory in a worker, bypassing the 1 MiB body cap. This protocol refuses a
request whose head is larger than `MAX_HEAD_BYTES` with 431 in the API's error shape and
closes the connection; what it held is then freed. Two measures:

* the head itself, exactly (request line and header lines, from the parser's callbacks),
  judged when it is complete, before the app sees the request;
* every byte a connection sends that is not body (an unfinished head, chunk framing,
  trailers), judged after each read: past the cap the connection is refused before the
  parser is handed another read, so it never holds more than the cap and one read
  (asyncio reads up to 256 KiB).

A refusal while an earlier request of the connection is still being answered only closes
the connection: a 431 written then would read as that request's answer.

It also bounds the time a client takes to send a request and to read the answers. uvicorn
times out a connection only while it is idle after an answer: one that never sends a
request, sends its head or body a byte at a time, or never reads what it asked for, was
held for ever, so a few thousand such connections (a slowloris) used up the service's
file descriptors and nobody else got in. Now a connection's first request must arrive
whole (line, headers and body) within `REQUEST_TIMEOUT_S` of connecting, and each later
one within that time of its first byte; otherwise the connection is answered 408
`request_timeout` (unless an answer is under way, which it would corrupt) and closed. The
clock waits on while the service is the one working (a request received whole and not
yet answered; a body the handler has not read yet; a `100 Continue` not yet sent, then one
more period for the body), and stops once a connection becomes a WebSocket. Answers the
client does not read are watched too: when a whole period passes with its unsent answer
not shrinking, the connection is aborted (a close would wait for ever to flush it).
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# nginx's default large_client_header_buffers allow 32 KiB; cookies, a bearer token and a
# receipt together stay far below this.
MAX_HEAD_BYTES = 64 * 1024
_BODY = json.dumps({
    "error": "request_head_too_large",
    "message": f"headers: the request line and headers are larger than {MAX_HEAD_BYTES} bytes",
    "details": [{"field": "headers", "limit_bytes": MAX_HEAD_BYTES}],
}).encode()
_REFUSAL = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _BODY)
# For the whole request, not per read: a byte now and then would otherwise do. Forge's
# bodies are small JSON documents; the largest allowed (FORGE_MAX_BODY_BYTES, 1 MiB) needs
# about 35 KB/s.
REQUEST_TIMEOUT_S = 30.0
_NOTHING_UNSENT = 1 << 62
_SLOW_BODY = json.dumps({
    "error": "request_timeout",
    "message": "request: the request line, headers and body did not arrive within "
               f"{REQUEST_TIMEOUT_S:g} s",
    "details": [{"field": "request", "limit_seconds": REQUEST_TIMEOUT_S}],
}).encode()
_SLOW = (b"HTTP/1.1 408 Request Timeout\r\n"
         b"content-type: application/json\r\n"
         b"content-length: " + str(len(_SLOW_BODY)).encode() + b"\r\n"
         b"connection: close\r\n\r\n" + _SLOW_BODY)
# "METHOD SP url SP HTTP/1.1 CRLF" around the url, and ": " plus CRLF around each header.
_LINE_BYTES = len(b"OPTIONS  HTTP/1.1\r\n")
_HEADER_BYTES = len(b": \r\n")


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head capped at MAX_HEAD_BYTES and a
    request's arrival at REQUEST_TIMEOUT_S."""

    _wire = 0  # bytes read on this connection
    _body = 0  # body bytes the parser delivered on this connection
    _mark = 0  # _wire - _body when the last message ended: what is not body since
    _head = 0  # the open message's head so far, counted from the parser's callbacks
    _refused = False
    _clock: asyncio.TimerHandle | None = None  # runs while the client is waited on
    _unsent = _NOTHING_UNSENT  # unsent answer bytes at the last tick
    _continuing = False  # a 100 Continue was owed at the last tick

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._stop_clock()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade()

    def _start_clock(self) -> None:
        if self._clock is None:
            self._clock = self.loop.call_later(REQUEST_TIMEOUT_S, self._time_up)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def pause_writing(self) -> None:
        super().pause_writing()
        self._start_clock()  # the client must read what it asked for

    def _time_up(self) -> None:
        """A period passed while the client was waited on: abort a connection whose answers
        it stopped reading; 408 and close one whose request did not arrive in time; wait
        on while the service owes the work."""
        self._clock = None
        unsent = self.transport.get_write_buffer_size()
        stalled = 0 < self._unsent <= unsent
        self._unsent = unsent or _NOTHING_UNSENT
        if stalled:
            self._refused = True
            self.transport.abort()
            return
        if self.transport.is_closing():
            if unsent:
                self._start_clock()  # closing flushes first: it must keep draining
            return
        cycle = getattr(self, "cycle", None)
        owed = cycle is not None and not cycle.response_complete and not cycle.more_body
        continuing = (cycle is not None and cycle.waiting_for_100_continue
                      and not cycle.response_started)
        continued, self._continuing = self._continuing and not continuing, continuing
        if owed or continuing or continued or unsent or self.flow.read_paused:
            self._start_clock()
            return
        self._refused = True
        answered = cycle is not None and cycle.response_complete
        if cycle is None or (answered and not cycle.more_body) or (
                not answered and not cycle.response_started and not self.pipeline):
            if cycle is not None and not answered:
                cycle.disconnected = True  # the handler's own answer is dropped
                cycle.message_event.set()
            self.transport.write(_SLOW)
        # Otherwise an answer is under way (or was given early, before the body): a 408
        # would read as part of it, or as the answer to a next request.
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        """Hand the parser one read unless the connection is refused; refuse it once more
        than the cap of bytes that are not body arrived since the last message ended."""
        if self._refused:
            return
        self._start_clock()  # bytes of a request: it must now arrive whole in time
        self._wire += len(data)
        super().data_received(data)
        if self._wire - self._body - self._mark > MAX_HEAD_BYTES:
            self._refused = True
        if self._refused:
            self._refuse()

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is None or cycle.response_complete:
            self.transport.write(_REFUSAL)
        self.transport.close()

    def on_message_begin(self) -> None:
        self._start_clock()  # a pipelined request begins in the read that ended the last
        self._head = _LINE_BYTES
        if not self._refused:
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + _HEADER_BYTES
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head > MAX_HEAD_BYTES:
            self._refused = True  # before the app ever sees the request
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_clock()
        self._mark = self._wire - self._body
        if not self._refused:
            super().on_message_complete()
