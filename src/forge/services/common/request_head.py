"""A cap on the request head (request line and headers) every Forge service reads.

The body cap (forge.services.common.limits) runs inside the app, after the server has
parsed the head; uvicorn's httptools parser keeps a header of any size, so one request
carrying a 20 MB header (or thousands of headers) held that much memory in a worker,
bypassing the 1 MiB body cap. This protocol counts the bytes a connection sends while a
request head is still open and, past `MAX_HEAD_BYTES`, answers 431 in the API's error
shape and closes the connection; what it held is then freed. The parser is handed at most
one read (asyncio reads up to 256 KiB) beyond the cap, so memory stays bounded.
"""

from __future__ import annotations

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


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the request head capped at MAX_HEAD_BYTES."""

    _head_bytes = 0
    _in_body = False

    def data_received(self, data: bytes) -> None:
        """Count the bytes of an open head before the parser keeps them; refuse past the
        cap (431, connection closed)."""
        if not self._in_body:
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._in_body and self._head_bytes > MAX_HEAD_BYTES \
                and not self.transport.is_closing():
            self.transport.write(_REFUSAL)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_body, self._head_bytes = True, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body, self._head_bytes = False, 0
        super().on_message_complete()
