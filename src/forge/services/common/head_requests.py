"""HEAD wherever GET is (RFC 9110 §9.3.2): a monitor's `curl -I /healthz`, a link checker
or a proxy's probe got 405 from FastAPI's routes, which list GET alone. The request is
routed as GET and the answer's body is dropped; its status and headers (Content-Length
too) are GET's. Logs and metrics still say HEAD, and so does the scope the server reads
once the answer starts (it then expects no body, and keeps the connection)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Serves HEAD as the route's GET, without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The server shares this scope: told GET, it waits for Content-Length bytes
                # of body, fails the answer ("shorter than Content-Length", an unhandled
                # error in the log) and drops the kept-alive connection.
                scope["method"] = "HEAD"
            elif message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        scope["method"] = "GET"  # in place: the router's match lands in this scope
        try:
            await self.app(scope, receive, headers_only)
        finally:
            scope["method"] = "HEAD"
