"""Attack: send bytes that are not HTTP/1.1 and read the answer as an API client would.

Every error of every Forge service is a JSON document naming an error code and the field
at fault, and the 413/431/408 the server itself writes keep that shape; but a request the
parser refused (an unknown method, a header name with a space, a malformed chunk or
Content-Length, an HTTP/2 preface) got uvicorn's plain text "Invalid HTTP request
received.", which a client reading `error` from the body cannot handle. Now it is 400
`malformed_request` naming `request`, and the connection is closed. So is a WebSocket
opening handshake the server refuses (a missing or invalid Sec-WebSocket-Key or -Version,
no Upgrade): it was plain text echoing the client's header value, and is now 4xx
`invalid_websocket_handshake` naming the header, its value not echoed.

A real uvicorn server with `forge serve`'s configuration and a Forge app, on loopback.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import WebSocket
from fastapi.testclient import TestClient
from websockets.sync.client import connect

from forge.config import load_settings
from forge.services.common.app import create_app, make_context

from ..live_server import forge_served
from ..services.conftest import prod_environ

pytestmark = pytest.mark.usefixtures("sqlite_only_store")

MALFORMED = {
    "error": "malformed_request",
    "message": "request: the request line, headers or body framing are not valid HTTP/1.1",
    "details": [{"field": "request"}],
}


@contextmanager
def served(tmp_path: Path) -> Iterator[int]:
    """The port of a Forge app served by `forge serve`'s uvicorn configuration, in a thread."""
    settings = load_settings(prod_environ(tmp_path / "s"))
    app = create_app(make_context("test", settings))

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    with forge_served(app, settings) as (port, _):
        yield port


def _exchange(port: int, data: bytes) -> bytes:
    """Send `data` in one write; everything the server answers until it closes."""
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


REQUESTS = {
    "unknown method": b"FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in a header name": b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n",
    "space in the url": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in a header value": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "malformed chunk": b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"ZZ\r\n",
    "Content-Length not a number": b"POST /healthz HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: abc\r\n\r\n",
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_a_request_the_parser_refuses_is_answered_in_the_error_shape(
        tmp_path: Path, name: str) -> None:
    with served(tmp_path) as port:
        reply = _exchange(port, REQUESTS[name])
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), reply[:300]
        assert b"content-type: application/json" in head.lower(), reply[:300]
        assert b"connection: close" in head.lower(), reply[:300]
        assert json.loads(body) == MALFORMED
        # The server goes on serving: a well-formed request after it is answered.
        ok = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 "), ok[:300]


def test_a_refusal_after_a_good_request_is_never_read_as_its_answer(tmp_path: Path) -> None:
    # A good request, then garbage in the same write: an error document written while the
    # first answer is under way would be read as that answer (uvicorn wrote its plain 400
    # there, before it). The first answer comes whole, then the error document.
    with served(tmp_path) as port:
        reply = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]
    first, _, rest = reply.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in first.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    assert json.loads(rest[:length])["status"] == "ok"
    after = rest[length:]
    assert after.startswith(b"HTTP/1.1 400 "), reply[:600]
    assert json.loads(after.partition(b"\r\n\r\n")[2]) == MALFORMED


def test_a_malformed_body_behind_a_good_request_is_answered_at_once(tmp_path: Path) -> None:
    # A good request, then one whose chunked body is malformed, in the same write: the
    # second waits behind the first (pipelined). Its 400 waited for it to be answered,
    # which never happened: 30 s later the client got 408 `request_timeout` ("did not
    # arrive"), for a request that had arrived. Now the first answer, then the 400.
    with served(tmp_path) as port:
        reply = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                b"POST /healthz HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n")
    assert reply.startswith(b"HTTP/1.1 200 "), reply[:300]
    first, _, rest = reply.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in first.split(b"\r\n")[1:]
                  if line.lower().startswith(b"content-length:"))
    after = rest[length:]
    assert after.startswith(b"HTTP/1.1 400 "), reply[:600]
    assert json.loads(after.partition(b"\r\n\r\n")[2]) == MALFORMED


def _upgrade(key: bytes = b"dGhlIHNhbXBsZSBub25jZQ==", version: bytes = b"13") -> bytes:
    return (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket"
            + b"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: " + version + b"\r\n\r\n")


HANDSHAKES = {  # (request, status, field)
    "key not base64": (_upgrade(key=b"<script>x</script>"), 400, "sec-websocket-key"),
    "version 8": (_upgrade(version=b"8"), 400, "sec-websocket-version"),
    "no key": (_upgrade().replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
               400, "sec-websocket-key"),
}


@pytest.mark.parametrize("name", sorted(HANDSHAKES))
def test_a_refused_websocket_handshake_is_answered_in_the_error_shape(
        tmp_path: Path, name: str) -> None:
    request, status, field = HANDSHAKES[name]
    with served(tmp_path) as port:
        reply = _exchange(port, request)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), reply[:300]
        assert b"content-type: application/json" in head.lower(), reply[:300]
        doc = json.loads(body)
        assert doc["error"] == "invalid_websocket_handshake", doc
        assert doc["details"][0]["field"] == field, doc
        assert doc["message"].startswith(field + ": "), doc
        assert b"script" not in body  # the client's value is not echoed
        # A good handshake still opens, and frames still pass.
        with connect(f"ws://127.0.0.1:{port}/echo", open_timeout=15) as ws:
            ws.send("hello")
            assert ws.recv(timeout=15) == "hello"


def test_a_trailing_slash_redirect_never_names_the_host_the_client_sent(
        tmp_path: Path) -> None:
    # `/healthz/` is redirected to `/healthz`; the Location was built from the Host
    # header, so a request naming another host got a redirect to that host (a cache in
    # front would serve it to everyone). It names the path alone, the query kept.
    with served(tmp_path) as port:
        reply = _exchange(port, b"GET /healthz/?a=1 HTTP/1.1\r\nHost: evil.example\r\n"
                                b"Connection: close\r\n\r\n")
    head = reply.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 307 "), reply[:300]
    assert b"\r\nlocation: /healthz?a=1\r\n" in head + b"\r\n", reply[:300]
    assert b"evil" not in reply


def test_a_body_in_a_coding_no_route_reads_is_refused_naming_the_header(
        tmp_path: Path) -> None:
    # `Transfer-Encoding: gzip, chunked` was unchunked and the compressed bytes handed to
    # the route ("body: not readable as JSON … not UTF-8 text"); a gzip Content-Encoding
    # the same. Now 501 / 415 naming the header, before any route reads the body.
    settings = load_settings(prod_environ(tmp_path / "s"))
    app = create_app(make_context("test", settings))

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    zipped = gzip.compress(b'{"a": "b"}')
    with TestClient(app) as client:
        for framing in ("gzip, chunked", "identity, chunked", "chunked, chunked"):
            resp = client.post("/echo", content=zipped, headers={
                "content-type": "application/json", "transfer-encoding": framing})
            assert resp.status_code == 501, (framing, resp.text)
            assert resp.json()["error"] == "unsupported_transfer_encoding"
            assert resp.json()["details"] == [{"field": "transfer-encoding"}]
            assert resp.json()["message"].startswith("transfer-encoding: ")
        resp = client.post("/echo", content=zipped, headers={
            "content-type": "application/json", "content-encoding": "gzip"})
        assert resp.status_code == 415, resp.text
        assert resp.json()["details"] == [{"field": "content-encoding"}]
        assert resp.json()["message"].startswith("content-encoding: ")
        # What is readable still passes: identity, and a coding named without a body.
        resp = client.post("/echo", json={"a": "b"}, headers={"content-encoding": "identity"})
        assert resp.status_code == 200 and resp.json() == {"a": "b"}, resp.text
        assert client.get("/healthz", headers={"content-encoding": "gzip"}).status_code == 200
