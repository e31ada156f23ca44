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

A request the parser refuses (an unknown method, a malformed request line, header or
chunk, a bad Content-Length) is answered 400 `malformed_request` in the same error shape,
where uvicorn wrote a plain-text "Invalid HTTP request received." that no API client can
read as an error document; the connection is then closed, as uvicorn closes it, after the
answers of the requests before it on the connection.

A request with more than one Host header, or an HTTP/1.1 request with none, is answered
400 `invalid_host` naming `host` (RFC 9112 3.2 requires both): with two, the app reads the
first while a proxy in front of Forge may route or judge by another, so the two would
disagree about which site was asked (the terminal's same-origin check compares Origin with
Host); with none, that check compared Origin with an empty string. Nothing of it reaches
the app, and the connection is closed as for a malformed request.

The same holds for the other headers Forge reads one value of, where the sender means one
(RFC 9110 5.3: no list-based field): the credentials (`Authorization`, `X-API-Key`,
`X-Receipt-Token`, the terminal's `X-Forge-Terminal`) and `Origin`. Two `Authorization`
headers naming two accounts were served as the first, while a gateway or an audit proxy
may attribute the request to the second. Such a request is answered 400
`repeated_header` naming the header, the same way.

The time a request may take to arrive, and its answers to be taken, is bounded by
`request_clock.ClockedProtocol`, which this protocol builds on.
"""

from __future__ import annotations

from forge.services.common.request_clock import ClockedProtocol, closing_answer

# nginx's default large_client_header_buffers allow 32 KiB; cookies, a bearer token and a
# receipt together stay far below this.
MAX_HEAD_BYTES = 64 * 1024
_REFUSAL = closing_answer(b"431 Request Header Fields Too Large", {
    "error": "request_head_too_large",
    "message": f"headers: the request line and headers are larger than {MAX_HEAD_BYTES} bytes",
    "details": [{"field": "headers", "limit_bytes": MAX_HEAD_BYTES}],
})
_MALFORMED = closing_answer(b"400 Bad Request", {
    "error": "malformed_request",
    "message": "request: the request line, headers or body framing are not valid HTTP/1.1",
    "details": [{"field": "request"}],
})
_TWO_HOSTS = closing_answer(b"400 Bad Request", {
    "error": "invalid_host",
    "message": "host: the Host header is given more than once",
    "details": [{"field": "host", "problem": "given more than once"}],
})
_NO_HOST = closing_answer(b"400 Bad Request", {
    "error": "invalid_host",
    "message": "host: an HTTP/1.1 request must send a Host header",
    "details": [{"field": "host", "problem": "missing"}],
})
# Headers read as one value (besides Host): a second one is refused, not ignored.
SINGLE_HEADERS = frozenset({b"authorization", b"x-api-key", b"x-receipt-token",
                            b"x-forge-terminal", b"origin"})


def repeated_header_answer(name: str) -> bytes:
    """The 400 of a request that gives the header `name` more than once."""
    return closing_answer(b"400 Bad Request", {
        "error": "repeated_header",
        "message": f"{name}: the header is given more than once",
        "details": [{"field": name, "problem": "given more than once"}],
    })


# "METHOD SP url SP HTTP/1.1 CRLF" around the url, and ": " plus CRLF around each header.
_LINE_BYTES = len(b"OPTIONS  HTTP/1.1\r\n")
_HEADER_BYTES = len(b": \r\n")


class BoundedHeadProtocol(ClockedProtocol):
    """uvicorn's httptools protocol with the request clock and the request head capped
    at MAX_HEAD_BYTES."""

    _wire = 0  # bytes read on this connection
    _body = 0  # body bytes the parser delivered on this connection
    _mark = 0  # _wire - _body when the last message ended: what is not body since
    _head = 0  # the open message's head so far, counted from the parser's callbacks
    _unparsable = False  # the parser refused what the connection sent (400, not 431)
    _malformed = False  # that 400 is owed once the answers before it are delivered
    _malformed_answer = _MALFORMED  # which 400 that is
    _hosts = 0  # Host headers of the open message
    _seen: frozenset[bytes] = frozenset()  # the SINGLE_HEADERS the open message gave
    _repeated: bytes | None = None  # the first of them it gave twice

    def data_received(self, data: bytes) -> None:
        """Hand the parser one read unless the connection is refused; refuse it once more
        than the cap of bytes that are not body arrived since the last message ended."""
        if self._refused:
            return
        self._wire += len(data)
        super().data_received(data)
        if self._wire - self._body - self._mark > MAX_HEAD_BYTES:
            self._refused = True
        if self._refused and not self._unparsable:
            self._refuse()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refuses: the API's error shape, not its
        plain text; nothing more the connection sends is parsed. When the fault is in the
        body of a request whose answer has not begun (a malformed chunk), this answer
        replaces it: the handler sees the client gone and anything it sends is dropped;
        one still waiting behind an earlier request (pipelined) is never started, as it
        would never complete and the answer owed after it would never be written.
        Answers of earlier requests still under way are delivered first."""
        self._refused = self._unparsable = True
        cycle = getattr(self, "cycle", None)
        behind = False  # it waits for an earlier request's answer, still under way
        if cycle is not None and cycle.more_body and not cycle.response_started:
            cycle.disconnected = True
            cycle.message_event.set()
            for waiting in [entry for entry in self.pipeline if entry[0] is cycle]:
                self.pipeline.remove(waiting)
                behind = True
            cycle = None
        if not behind and (cycle is None or cycle.response_complete) and not self.pipeline:
            self._answer_malformed()
        else:
            self._malformed = True

    def on_response_complete(self) -> None:
        last = not self.pipeline
        super().on_response_complete()
        if self._malformed and last:
            self._answer_malformed()

    def _answer_malformed(self) -> None:
        self._malformed = False
        if not self.transport.is_closing():
            self.transport.write(self._malformed_answer)
            self.transport.close()
        self.start_clock()  # the close flushes first: the client must take it

    def _refuse(self) -> None:
        if self.transport.is_closing():
            return
        cycle = getattr(self, "cycle", None)
        if cycle is None or cycle.response_complete:
            self.transport.write(_REFUSAL)
        self.transport.close()
        self.start_clock()  # the close flushes first: the client must take it

    def handle_websocket_upgrade(self) -> None:
        """uvicorn hands an Upgrade request to the WebSocket protocol once its head is
        parsed, refused or not: a refused one is not handed over."""
        if not self._refused:
            super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        self._head = _LINE_BYTES
        self._hosts = 0
        self._seen, self._repeated = frozenset(), None
        if not self._refused:
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head += len(url)
        if not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head += len(name) + len(value) + _HEADER_BYTES
        lowered = name.lower()
        if lowered == b"host":
            self._hosts += 1
        elif lowered in SINGLE_HEADERS:
            if lowered in self._seen and self._repeated is None:
                self._repeated = lowered
            self._seen |= {lowered}
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head > MAX_HEAD_BYTES:
            self._refused = True  # before the app ever sees the request
        elif not self._refused and (self._hosts > 1 or (
                self._hosts == 0 and self.parser.get_http_version() == "1.1")):
            self._malformed_answer = _TWO_HOSTS if self._hosts else _NO_HOST
            self.send_400_response("not exactly one Host header")
        elif not self._refused and self._repeated is not None:
            self._malformed_answer = repeated_header_answer(self._repeated.decode("ascii"))
            self.send_400_response("a header given twice")
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._mark = self._wire - self._body
        if not self._refused:
            super().on_message_complete()
