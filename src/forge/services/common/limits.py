"""Pure-ASGI input bounds: a request-body cap on every HTTP route and a message cap on every
WebSocket, enforced before any route, form or JSON parser sees a byte.

A body announced larger than the cap (Content-Length) is answered 413 without reading it; a
body without a length (chunked) is counted as it streams and cut off at the cap, so memory
held per request never exceeds the cap however much a client sends. A WebSocket message
over the cap closes the socket with 1009 (message too big) instead of reaching the app.

A body the services cannot read as sent is refused the same way, before the route: a
Transfer-Encoding naming a coding besides `chunked` (`gzip, chunked`: the server undid the
chunking alone and the route read compressed bytes, refused as "not UTF-8 text") is 501
`unsupported_transfer_encoding` (RFC 9112 6.1), and a body with a Content-Encoding other
than `identity` is 415 `unsupported_content_encoding` (RFC 9110 8.4.1), each naming the
header.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forge.services.common.errors import error_response

WS_TOO_BIG = 1009


class BodyTooLarge(Exception):
    """Raised into the app's receive() once the body passes the cap (the app never sees it)."""


def _content_length(scope: Scope) -> int | None:
    """The declared Content-Length, or None when absent or unreadable (then we count)."""
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            raw = value.decode("latin-1").strip()
            return int(raw) if raw.isascii() and raw.isdigit() else None
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    """All values of the header `name`, joined with commas (None when absent)."""
    values = [v.decode("latin-1") for k, v in scope.get("headers", []) if k == name]
    return ",".join(values) if values else None


def _codings(value: str) -> list[str]:
    return [c.strip().lower() for c in value.split(",") if c.strip()]


def unreadable_body(scope: Scope) -> tuple[int, str, str, str] | None:
    """(status, code, field, message) when the request's body is framed or encoded in a way
    no Forge route reads, else None."""
    framing = _header(scope, b"transfer-encoding")
    if framing is not None and _codings(framing) != ["chunked"]:
        return (501, "unsupported_transfer_encoding", "transfer-encoding",
                "transfer-encoding: only chunked is supported (send the body without "
                "another transfer coding)")
    encoding = _header(scope, b"content-encoding")
    has_body = framing is not None or (_content_length(scope) or 0) > 0
    if encoding is not None and has_body and any(c != "identity" for c in _codings(encoding)):
        return (415, "unsupported_content_encoding", "content-encoding",
                "content-encoding: send the body uncompressed (no content coding)")
    return None


class InputLimitMiddleware:
    """Caps every HTTP request body at `max_body` bytes and every WebSocket message at
    `ws_max` bytes; refusals use the shared error shape (413) or close code 1009."""

    def __init__(self, app: ASGIApp, max_body: int, ws_max: int) -> None:
        self.app = app
        self.max_body = max_body
        self.ws_max = ws_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "payload_too_large",
            f"body: request body is larger than {self.max_body} bytes",
            [{"field": "body", "limit_bytes": self.max_body}],
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        unreadable = unreadable_body(scope)
        if unreadable is not None:
            status, code, field, message = unreadable
            await error_response(status, code, message, [{"field": field}],
                                 headers={"Connection": "close"})(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        tripped = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal seen, tripped
            if tripped:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    tripped = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if tripped and not started:
                return  # whatever the app answers to the cut-off body, the answer is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await self._refuse(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def bounded_receive() -> Message:
            nonlocal closed
            if closed:
                return {"type": "websocket.disconnect", "code": WS_TOO_BIG}
            message = await receive()
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                size = len(data) if data is not None else len(
                    (message.get("text") or "").encode("utf-8", "surrogatepass"))
                if size > self.ws_max:
                    closed = True
                    await send({"type": "websocket.close", "code": WS_TOO_BIG,
                                "reason": f"message larger than {self.ws_max} bytes"})
                    return {"type": "websocket.disconnect", "code": WS_TOO_BIG}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:
                await send(message)

        await self.app(scope, bounded_receive, guarded_send)
