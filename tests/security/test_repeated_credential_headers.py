"""Attack: present two credentials, one for the gateway in front and one for Forge.

`Authorization: Bearer <alice's key>` and `Authorization: Bearer <mallory's key>` in one
request were served as alice (Starlette reads the first header), while a gateway, a rate
limiter or an audit proxy that keeps the last attributes the request to mallory. The
header is no list (RFC 9110 5.3): the sender means one. A request giving a credential
header (`Authorization`, `X-API-Key`, `X-Receipt-Token`, `X-Forge-Terminal`) or `Origin`
twice is now answered 400 `repeated_header` naming it, before the app sees anything, and
the connection is closed; a WebSocket handshake too, never upgraded. One of each is
served as before, and so are headers that are lists (`Accept`, `X-Custom` twice).

A real uvicorn server with `forge serve`'s configuration and a Forge app, on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.services.common.request_head import SINGLE_HEADERS

from .test_malformed_http import _exchange, served
from .test_two_host_headers import UPGRADE

pytestmark = pytest.mark.usefixtures("sqlite_only_store")


def _refused(reply: bytes, name: str) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply[:300]
    assert b"connection: close" in head.lower(), reply[:300]
    assert json.loads(body) == {
        "error": "repeated_header",
        "message": f"{name}: the header is given more than once",
        "details": [{"field": name, "problem": "given more than once"}]}


def test_a_credential_or_origin_header_given_twice_is_refused(tmp_path: Path) -> None:
    assert {"authorization", "x-api-key", "x-receipt-token", "x-forge-terminal",
            "origin"} == {n.decode() for n in SINGLE_HEADERS}
    with served(tmp_path) as port:
        for name in ("Authorization", "X-API-Key", "X-Receipt-Token", "X-Forge-Terminal",
                     "Origin"):
            one = f"{name}: a\r\n".encode()
            other = f"{name.upper()}: b\r\n".encode()
            reply = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + one + other
                              + b"\r\n")
            _refused(reply, name.lower())
            # A WebSocket handshake is refused the same way, never upgraded.
            reply = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: x\r\n" + one + UPGRADE
                              + one + b"\r\n")
            _refused(reply, name.lower())
            ok = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + one
                           + b"Connection: close\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 "), ok[:300]
        # Headers that are lists may repeat.
        ok = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: a/b\r\n"
                       b"Accept: c/d\r\nX-Custom: 1\r\nX-Custom: 2\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 "), ok[:300]
