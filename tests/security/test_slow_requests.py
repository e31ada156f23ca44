"""Attack: hold a service's connections for ever by sending requests too slowly (slowloris).

uvicorn times out a connection only while it is idle after an answer. One that never sends
a request, or sends its head or body a byte at a time, was held for ever: a few thousand of
them use up the service's file descriptors and no learner gets in. Now every Forge service
(the protocol `forge serve` runs, `uvicorn_config`) gives a request REQUEST_TIMEOUT_S to
arrive whole, then answers 408 `request_timeout` and closes the connection. What the
service itself takes (a slow handler, a WebSocket terminal) is never cut short.

A real uvicorn server with Forge's protocol and app, on loopback; the timeout is lowered
to a second here (30 s as served) so the suite does not wait half a minute per case.
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import Request, Response, WebSocket
from websockets.sync.client import connect

from forge.config import load_settings
from forge.services.common import request_clock
from forge.services.common.app import create_app, make_context
from forge.services.common.serving import DrainingServer

from ..live_server import forge_served
from ..services.conftest import prod_environ

TIMEOUT_S = 1.0
READ_S = 15.0  # how long a test waits for the server's answer before failing


@contextmanager
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           bodies: list[bytes] | None = None) -> Iterator[tuple[int, DrainingServer]]:
    """(port, server) of a Forge app with a slow route, a route that reads its body (into
    `bodies`) and a WebSocket echo, served by `forge serve`'s uvicorn configuration in a
    thread."""
    monkeypatch.setattr(request_clock, "REQUEST_TIMEOUT_S", TIMEOUT_S)
    settings = load_settings(prod_environ(tmp_path / "s"))
    app = create_app(make_context("test", settings))

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(3 * TIMEOUT_S)
        return {"done": "yes"}

    @app.get("/big")
    async def big(mib: int = 4) -> Response:
        return Response(b"b" * (min(mib, 8) << 20), media_type="application/octet-stream")

    @app.post("/read")
    async def read(request: Request) -> dict[str, int]:
        if request.query_params.get("late"):
            await asyncio.sleep(3 * TIMEOUT_S)  # the handler's own time before reading
        body = await request.body()
        if bodies is not None:
            bodies.append(body)
        return {"read": len(body)}

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())

    with forge_served(app, settings) as served_at:
        yield served_at


def _drip(port: int, first: bytes, drops: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `first`, then one of `drops` every 0.2 s until the server answers or closes:
    (all it answered, how many drops it took). Bounded by the drops given."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
        sock.sendall(first)
        taken = 0
        for drop in drops:
            if select.select([sock], [], [], 0.2)[0]:
                break
            try:
                sock.sendall(drop)
            except OSError:
                break
            taken += 1
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except OSError:
            pass
    return reply, taken


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (READ_S at most)."""
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def _one_answer(sock: socket.socket) -> bytes:
    """One whole answer (its head, then the content-length bytes of its body): under load
    the body can come in a later segment than the head, and a test reading on after it
    must not take it for what comes next. Bounded by READ_S per read."""
    reply = b""
    while b"\r\n\r\n" not in reply and (chunk := sock.recv(65536)):
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := sock.recv(length - len(body))):
        body += chunk
    return head + b"\r\n\r\n" + body


def _assert_408(reply: bytes) -> None:
    assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
    body = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == "request_timeout"
    assert body["details"][0]["field"] == "request"


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_request_dripped_byte_by_byte_is_cut_off_with_408(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bodies: list[bytes] = []
    with served(tmp_path, monkeypatch, bodies) as (port, server):
        # A connection that never sends a request.
        with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
            reply = _until_closed(sock)
        _assert_408(reply)
        # A head sent one header every 0.2 s, for ever (the drops run out after 30 s).
        headers = (b"x-h%d: a\r\n" % i for i in range(150))
        reply, taken = _drip(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n", headers)
        _assert_408(reply)
        assert taken < 150
        # A body sent one byte every 0.2 s: the connection is closed under the handler,
        # which never gets the body.
        body = (b" " for _ in range(150))
        reply, taken = _drip(port, b"POST /read HTTP/1.1\r\nhost: x\r\n"
                                   b"content-type: application/octet-stream\r\n"
                                   b"content-length: 150\r\n\r\n", body)
        _assert_408(reply)
        assert taken < 150
        assert bodies == []
        # A head dripped behind a request still being answered: the answer is given whole
        # (the service's time is not the client's), then the dripping head gets its 408.
        reply, taken = _drip(port, b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n"
                                   b"GET /healthz HTTP/1.1\r\n",
                             (b"x-h%d: a\r\n" % i for i in range(150)))
        first, _, rest = reply.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200 ") and rest.startswith(b'{"done":"yes"}'), reply
        _assert_408(rest[len(b'{"done":"yes"}'):])
        # A client that asks for large answers and never reads them is let go once its
        # unsent answers stop shrinking for a whole period. (Pipelined: the second answer
        # waits for the first to drain, so uvicorn's own keep-alive close never comes.)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n" * 4)

            def unsent() -> list[int]:
                return [c.transport.get_write_buffer_size()
                        for c in list(server.server_state.connections)]

            for _ in range(300):  # bounded: 15 s for the answers to back up
                if any(unsent()):
                    break
                time.sleep(0.05)
            assert any(unsent())  # the server holds answers the client does not read
            for _ in range(300):  # bounded: 15 s
                if not unsent():
                    break
                time.sleep(0.05)
            assert not unsent()
        # The same with one answer and `Connection: close`: uvicorn closes after the answer,
        # and the close waited for ever to flush what the client never takes.
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big?mib=8 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            for _ in range(300):  # bounded: 15 s
                if any(unsent()):
                    break
                time.sleep(0.05)
            assert any(unsent())
            for _ in range(300):  # bounded: 15 s
                if not server.server_state.connections:
                    break
                time.sleep(0.05)
            assert not server.server_state.connections
        # A body sent after an early answer (404: the route does not exist, the body is
        # never read), then silence: uvicorn's keep-alive close was cancelled by those
        # bytes, so the clock closes the idle connection.
        with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
            sock.sendall(b"POST /nope HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")
            assert _one_answer(sock).startswith(b"HTTP/1.1 404 ")
            sock.sendall(b"0123456789")
            assert _until_closed(sock) == b""
        # After such an early answer, a next request that stalls still gets its 408.
        with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
            sock.sendall(b"POST /nope HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n")
            assert _one_answer(sock).startswith(b"HTTP/1.1 404 ")
            sock.sendall(b"abcGET /healthz HTTP/1.1\r\n")
            _assert_408(_until_closed(sock))
        # A stray line end after an answer (to be ignored, RFC 9112 2.2) is not a request:
        # no 408 for it, and the connection still closes.
        with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            assert _one_answer(sock).startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"\r\n")
            assert _until_closed(sock) == b""
        # Two hundred idle connections are all let go: none is held by the server.
        socks = [socket.create_connection(("127.0.0.1", port), timeout=READ_S)
                 for _ in range(200)]
        try:
            for sock in socks:
                assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
        finally:
            for sock in socks:
                sock.close()
        for _ in range(100):  # bounded: the server drops its side as the clients close
            if not server.server_state.connections:
                break
            time.sleep(0.05)
        assert not server.server_state.connections


@pytest.mark.usefixtures("sqlite_only_store")
def test_the_service_own_time_and_websockets_are_never_cut_short(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with served(tmp_path, monkeypatch) as (port, _server):
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=READ_S) as client:
            # A handler that takes three timeouts answers; the connection stays usable.
            assert client.get("/slow").json() == {"done": "yes"}
            assert client.get("/healthz").status_code == 200
            # Kept alive across pauses shorter than the timeout.
            time.sleep(TIMEOUT_S / 2)
            assert client.get("/healthz").status_code == 200
        # A terminal's WebSocket, silent for longer than the timeout, stays open.
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            ws.send(b"ls")
            assert ws.recv(timeout=READ_S) == b"ls"
            time.sleep(2.5 * TIMEOUT_S)
            ws.send(b"pwd")
            assert ws.recv(timeout=READ_S) == b"pwd"
        # A client taking pipelined answers slowly but steadily (about 20 times the least
        # allowed) gets all of them, however the server's buffer refills between them.
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.connect(("127.0.0.1", port))
            sock.sendall(b"GET /big?mib=1 HTTP/1.1\r\nhost: x\r\n\r\n" * 3)
            got = 0
            steady = request_clock.MIN_DRAIN_BYTES * 20 / TIMEOUT_S  # bytes per second
            for _ in range(2000):  # bounded: the answers are about 3 MiB
                time.sleep(0.05)
                chunk = sock.recv(int(steady * 0.05))
                got += len(chunk)
                if not chunk or got >= 3 << 20:
                    break
            assert got >= 3 << 20, got
        # Expect: 100-continue, with a handler that takes three periods before it reads
        # the body (and so before uvicorn sends 100 Continue): the body then gets its time.
        with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
            sock.sendall(b"POST /read?late=1 HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\n"
                         b"content-type: application/octet-stream\r\ncontent-length: 5\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
            time.sleep(TIMEOUT_S / 5)  # a pause well inside the body's own period
            sock.sendall(b"hello")
            reply = _one_answer(sock)
            assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"read":5}'), reply
        # A request sent whole in pieces faster than the timeout goes through, body too.
        with httpx.Client(base_url=url, timeout=READ_S) as client:
            assert client.post("/read", content=b"x" * 1000).json() == {"read": 1000}
        with socket.create_connection(("127.0.0.1", port), timeout=READ_S) as sock:
            for part in (b"GET /healthz HTTP/1.1\r\n", b"host: x\r\n", b"\r\n"):
                sock.sendall(part)
                time.sleep(TIMEOUT_S / 5)
            assert _one_answer(sock).startswith(b"HTTP/1.1 200 ")
            # A later request on the kept-alive connection gets a whole period from its
            # first byte, even when it begins just before a period since connecting ends.
            time.sleep(TIMEOUT_S * 0.2)
            for part in (b"GET /healthz HTTP/1.1\r\n", b"host: x\r\n", b"\r\n"):
                sock.sendall(part)
                time.sleep(TIMEOUT_S * 0.3)
            assert _one_answer(sock).startswith(b"HTTP/1.1 200 ")
