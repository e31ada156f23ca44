"""WebSocket opening handshakes the server refuses, answered in the API's error shape.

uvicorn's WebSocket protocol (websockets' sans-I/O server) answered a malformed opening
handshake (a missing or invalid Sec-WebSocket-Key or -Version, no Upgrade, a head it could
not parse) with plain text, "Failed to open a WebSocket connection: invalid
Sec-WebSocket-Key header: <the client's value>", where every other refusal of a Forge
service is a JSON document with an error code and the field at fault. Here the same
status (and headers such as `Upgrade` or `Allow`) carries that document, naming the header
and never echoing its value. An app's own refusal before accepting (uvicorn's empty 403)
is left as it is: the app chose it.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidHeader, InvalidMethod
from websockets.http11 import Response
from websockets.typing import StatusLike


def refusal_document(status: int, exc: BaseException | None) -> dict[str, Any]:
    """The error document of a refused opening handshake whose cause is `exc`."""
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        return {"error": "internal_error", "message": "internal error; see the service log",
                "details": []}
    if isinstance(exc, InvalidHeader):
        field = exc.name.lower()
        problem = "missing" if exc.value is None else "not valid for a WebSocket opening handshake"
    elif isinstance(exc, InvalidMethod):
        field, problem = "method", "a WebSocket opening handshake is a GET"
    else:
        field, problem = "request", "not a valid WebSocket opening handshake"
    return {"error": "invalid_websocket_handshake", "message": f"{field}: {problem}",
            "details": [{"field": field, "problem": problem}]}


class JsonRefusalWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, its handshake refusals in the API's error shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conn = self.conn
        plain = conn.reject

        def reject(status: StatusLike, text: str) -> Response:
            response = plain(status, text)
            if not text:  # the app closed before accepting: its own refusal
                return response
            body = json.dumps(refusal_document(response.status_code,
                                               conn.handshake_exc)).encode()
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
            response.headers["Content-Type"] = "application/json"
            response.headers["Content-Length"] = str(len(body))
            response.body = body
            return response

        conn.reject = reject  # type: ignore[method-assign]
