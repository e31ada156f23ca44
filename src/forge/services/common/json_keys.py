"""Refuse a JSON request body that names one key twice, as the route reads it.

JSON parsers keep the last of two values for a key, so `{"track": "a", "track": "b"}`
was read as track "b": a client, a proxy or a validator in front of Forge that keeps the
first would see another request than the one Forge acted on. A body the route would read
as JSON (no Content-Type, `application/json` or `+json`) is checked when the route has
read its last byte, with a hook that stops at the first repeated key: 400 `invalid_body`
naming it, before the route sees the body. Nothing is read that the route does not read
(a 404 route never waits for a body), and a body that is not JSON at all, a form or a CSV
upload passes untouched: the route reports it as before.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from forge.services.common.errors import BodyRefused, read_as_json

_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class RepeatedKey(ValueError):
    """A JSON object of the body names `key` twice."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out


def repeated_key(body: bytes) -> str | None:
    """The first key a JSON object in `body` names twice, or None (also for a body that is
    not JSON: the route's own parsing reports that)."""
    try:
        json.loads(body, object_pairs_hook=_no_repeats)
    except RepeatedKey as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None
    return None


def _content_type(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            return str(value.decode("latin-1"))  # (scope headers are untyped)
    return None


class RepeatedKeyMiddleware:
    """Refuses a JSON body with a repeated key as it is read (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in _NO_BODY
                or not read_as_json(_content_type(scope))):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []  # bounded: the size limit outside cuts a large body off

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    body = b"".join(chunks)
                    chunks.clear()
                    key = repeated_key(body) if body else None
                    if key is not None:
                        shown = key[:40]
                        raise BodyRefused("invalid_body",
                                          f"body: key {shown!r} is given more than once",
                                          [{"field": shown}])
            return message

        await self.app(scope, checked_receive, send)
