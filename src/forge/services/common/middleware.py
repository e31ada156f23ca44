"""Pure-ASGI request context: correlation id in and out, one access-log line, metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forge.services.common.logging import request_id_var
from forge.services.common.metrics import ServiceMetrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
access_log = logging.getLogger("forge.access")


def _route_label(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def api_answer_headers(headers: list[Any]) -> None:
    """A JSON answer is never stored by a browser or proxy (receipts, access links and
    tokens travel in them) nor sniffed as another type: `no-store` and `nosniff` unless
    the route set its own. Pages set theirs (``web.security``); static files stay
    cacheable."""
    names = {bytes(k).lower(): bytes(v) for k, v in headers}
    if not names.get(b"content-type", b"").startswith(b"application/json"):
        return
    if b"cache-control" not in names:
        headers.append((b"cache-control", b"no-store"))
    if b"x-content-type-options" not in names:
        headers.append((b"x-content-type-options", b"nosniff"))


def relative_slash_redirect(scope: Scope, headers: list[Any]) -> None:
    """The router's trailing-slash redirect (`/healthz/` to `/healthz`, the only 307/308
    answered without a route) names the same site by its path alone. Starlette built an
    absolute Location from the request's Host header, so `Host: evil.example` was sent back
    as `Location: http://evil.example/healthz`: a cache or proxy in front that keys on
    another Host (or none) could hand that redirect to every client of the real site."""
    if "route" in scope:
        return
    for i, (key, value) in enumerate(headers):
        if bytes(key).lower() == b"location":
            parts = urlsplit(bytes(value).decode("latin-1"))
            if parts.path.startswith("/") and not parts.path.startswith("//"):
                relative = parts.path + (f"?{parts.query}" if parts.query else "")
                headers[i] = (b"location", relative.encode("latin-1"))


class RequestContextMiddleware:
    """Takes `x-request-id` (or makes one), echoes it, logs and measures every request."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                api_answer_headers(headers)
                if status in (307, 308):
                    relative_slash_redirect(scope, headers)
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(scope)
            if route not in ("/metrics", "/healthz"):
                access_log.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
            self.metrics.observe(scope["method"], route, status, elapsed)
            request_id_var.reset(token)
