"""Attack: name two sites in one request, one for the proxy in front and one for Forge.

A request carrying two Host headers was served (200): the app reads the first, while a
proxy or a cache in front of Forge may route or key by the last, so the two disagree about
which site was asked (the terminal's same-origin check compares Origin with Host). RFC
9112 3.2 says such a request is answered 400; it now is, `invalid_host` naming `host`, in
the API's error shape, before the app sees anything, and the connection is closed. A
WebSocket opening handshake with two Host headers is refused the same way, never upgraded;
so is one whose head is over the cap (431), which uvicorn upgraded anyway.

A real uvicorn server with `forge serve`'s configuration and a Forge app, on loopback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.services.common.request_head import MAX_HEAD_BYTES

from .test_malformed_http import _exchange, served

pytestmark = pytest.mark.usefixtures("sqlite_only_store")

TWO_HOSTS = {
    "error": "invalid_host",
    "message": "host: the Host header is given more than once",
    "details": [{"field": "host", "problem": "given more than once"}],
}
UPGRADE = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def _refused(reply: bytes) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), reply[:300]
    assert b"connection: close" in head.lower(), reply[:300]
    assert json.loads(body) == TWO_HOSTS


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: a.example\r\nX-A: 1\r\nHOST: a.example\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: a\r\nhost: b\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /echo HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n" + UPGRADE + b"\r\n",
], ids=["two", "same-twice-any-case", "with-a-body", "websocket-handshake"])
def test_a_request_with_two_host_headers_is_refused(tmp_path: Path,
                                                    request_bytes: bytes) -> None:
    with served(tmp_path) as port:
        _refused(_exchange(port, request_bytes))
        # One Host is served.
        ok = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 "), ok[:300]


def test_two_hosts_behind_a_good_request_are_refused_after_its_answer(
        tmp_path: Path) -> None:
    with served(tmp_path) as port:
        reply = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
                                b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]
    first, _, rest = reply.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in first.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    assert json.loads(rest[:length])["status"] == "ok"
    _refused(rest[length:])


def test_a_refused_websocket_handshake_is_never_handed_to_the_websocket_protocol(
        tmp_path: Path) -> None:
    # Its head over the cap: uvicorn upgraded it anyway once the parser saw the Upgrade
    # header, the refused request's scope had no method (KeyError in the server's log)
    # and the client got the connection closed with no answer. Now the 431 document.
    with served(tmp_path) as port:
        reply = _exchange(port, b"GET /echo HTTP/1.1\r\nHost: a\r\n" + UPGRADE
                          + b"X-Big: " + b"a" * (MAX_HEAD_BYTES + 1) + b"\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), reply[:300]
    assert json.loads(body)["error"] == "request_head_too_large"


def test_an_http11_request_without_host_is_refused(tmp_path: Path) -> None:
    # RFC 9112 3.2: HTTP/1.1 requires Host. It was served (200), and the terminal's
    # same-origin check compared the Origin's host with "" (an `Origin: null` matched).
    with served(tmp_path) as port:
        for request_bytes in (b"GET /healthz HTTP/1.1\r\n\r\n",
                              b"GET /echo HTTP/1.1\r\nOrigin: null\r\n" + UPGRADE + b"\r\n"):
            head, _, body = _exchange(port, request_bytes).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 "), head
            assert json.loads(body) == {
                "error": "invalid_host",
                "message": "host: an HTTP/1.1 request must send a Host header",
                "details": [{"field": "host", "problem": "missing"}]}
        # HTTP/1.0 has no Host requirement: still served.
        assert _exchange(port, b"GET /healthz HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
