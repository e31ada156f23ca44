"""Attack: exhaust a service's memory with a huge request body (or WebSocket message, or
request head) sent before any authentication.

Before issue 12 a 300 MB body took spawn_service from 136 MB to 1.3 GB RSS: every route read
the whole body before its parser, and the parser before auth. Now every route of every
service refuses a body over FORGE_MAX_BODY_BYTES (default 1 MiB) with 413 in the shared error
shape, declared (Content-Length) or streamed (chunked), before any parsing; a WebSocket
message over FORGE_WS_MAX_MESSAGE_BYTES closes the socket with 1009.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi import WebSocket
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from forge.bus import NatsServer
from forge.config import load_settings
from forge.config.settings import ConfigError
from forge.services.common.app import create_app, make_context
from forge.services.common.request_head import MAX_HEAD_BYTES
from forge.services.common.serving import ServiceName, build_service, uvicorn_config

from ..live_server import free_port, live_server
from ..services.conftest import prod_environ, with_signing_key

MIB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def _chunks(total_mib: int) -> Iterator[bytes]:
    block = b"[" * MIB
    for _ in range(total_mib):
        yield block


def _assert_413(resp: httpx.Response, limit: int) -> None:
    assert resp.status_code == 413, resp.text[:300]
    assert resp.json() == {"error": "payload_too_large",
                           "message": f"body: request body is larger than {limit} bytes",
                           "details": [{"field": "body", "limit_bytes": limit}]}


@pytest.fixture
def spawn_process(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[str, psutil.Process]]:
    """A real `forge serve spawn` (dev, default limits) and its process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FORGE_", "SAT_", "ET_", "RECEIPT_", "OPERATOR_", "BILLING_"))}
    env.update(FORGE_ENV="dev", STORAGE_ROOT=str(tmp_path / "storage"), **nats.client_env())
    with open(tmp_path / "spawn.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, cwd=REPO,
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert proc.poll() is None, (tmp_path / "spawn.log").read_text()
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            psutil.wait_procs([], timeout=0.1)
        yield url, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.usefixtures("sqlite_only_store")
def test_50mb_body_is_413_and_spawn_service_memory_stays_bounded(
        spawn_process: tuple[str, psutil.Process]) -> None:
    url, process = spawn_process
    # Warm up the code paths once so the baseline includes them.
    _assert_413(httpx.post(f"{url}/v1/spawn", content=b"x" * (MIB + 1)), MIB)
    before = process.memory_info().rss
    with httpx.Client(timeout=120) as client:
        declared = client.post(f"{url}/v1/spawn", content=_chunks(50),
                               headers={"content-type": "application/json",
                                        "content-length": str(50 * MIB)})
        _assert_413(declared, MIB)
        streamed = client.post(f"{url}/v1/spawn", content=_chunks(50),
                               headers={"content-type": "application/json"})
        _assert_413(streamed, MIB)
        form = client.post(f"{url}/signin", content=_chunks(50),
                           headers={"content-type": "application/x-www-form-urlencoded",
                                    "origin": url})
        _assert_413(form, MIB)
    grown = process.memory_info().rss - before
    assert grown < 20 * MIB, f"spawn_service RSS grew by {grown / MIB:.1f} MiB"
    # The service still answers normally afterwards.
    assert httpx.get(f"{url}/healthz").status_code == 200


SCN = "scn-0000000000000000"
READERS = {
    ServiceName.spawn: {("POST", "/v1/spawn"), ("POST", "/v1/billing/checkout"),
                        ("POST", "/signin")},
    ServiceName.orchestrator: {("POST", f"/v1/scenarios/{SCN}/extend")},
    ServiceName.scoreboard: {("POST", "/v1/admin/failed-events/reprocess")},
}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", SCN, path)


def _http_routes(routes: list[Any]) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route, including those of included routers."""
    found: list[tuple[str, str]] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found += _http_routes(list(inner.routes))
        elif isinstance(route, APIRoute):
            found += [(m, _concrete(route.path)) for m in sorted(route.methods)]
    return found


@pytest.mark.parametrize("service", list(ServiceName), ids=lambda s: s.value)
@pytest.mark.usefixtures("sqlite_only_store")
def test_every_route_refuses_an_oversized_body_before_parsing(
        tmp_path: Path, nats: NatsServer, service: ServiceName) -> None:
    storage = with_signing_key(tmp_path / "storage")
    settings = load_settings(prod_environ(storage, **nats.client_env()))
    app = build_service(service, settings)
    routes = _http_routes(list(app.routes))
    assert len(routes) > 5
    with TestClient(app) as client:
        for method, path in routes:
            declared = client.request(method, path, content=b"{" * (MIB + 1),
                                      headers={"content-type": "application/json"})
            _assert_413(declared, MIB)
            kind = "application/json" if path.startswith("/v1/") else \
                "application/x-www-form-urlencoded"  # the web pages' forms
            streamed = client.request(method, path, content=_chunks(2),
                                      headers={"content-type": kind,
                                               "origin": str(client.base_url)})
            # A route that reads its body is cut off at the cap; one that never reads it
            # answers without reading it (nothing is buffered).
            if (method, path) in READERS[service]:
                _assert_413(streamed, MIB)


@pytest.mark.usefixtures("sqlite_only_store")
def test_limit_is_configurable_and_small_bodies_still_parse(tmp_path: Path) -> None:
    settings = load_settings(prod_environ(tmp_path / "s", FORGE_MAX_BODY_BYTES="2048"))
    assert settings.max_body_bytes == 2048
    ctx = make_context("test", settings)
    app = create_app(ctx)

    @app.post("/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    with TestClient(app) as client:
        assert client.post("/echo", json={"a": "b"}).json() == {"a": "b"}
        _assert_413(client.post("/echo", json={"a": "b" * 3000}), 2048)
        chunked = client.post("/echo", content=iter([b'{"a": "', b"b" * 3000, b'"}']),
                              headers={"content-type": "application/json"})
        _assert_413(chunked, 2048)


@pytest.mark.parametrize("value", ["0", "-5", "1e9", "lots", str(10**12)])
def test_bad_limit_setting_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(prod_environ(tmp_path / "s", FORGE_MAX_BODY_BYTES=value))
    assert any(p.startswith("FORGE_MAX_BODY_BYTES must be") for p in err.value.problems)


@pytest.mark.usefixtures("sqlite_only_store")
def test_websocket_message_over_the_limit_closes_1009(tmp_path: Path) -> None:
    settings = load_settings(prod_environ(tmp_path / "s"))
    app = create_app(make_context("test", settings))
    seen: list[int] = []

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            data = await websocket.receive_bytes()
            seen.append(len(data))
            await websocket.send_bytes(data)

    limit = settings.ws_max_message_bytes
    with live_server(app) as url, connect(url.replace("http", "ws", 1) + "/ws") as ws:
        ws.send(b"k" * 16)
        assert ws.recv(timeout=10) == b"k" * 16
        ws.send(b"k" * (limit + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert seen == [16]  # the oversized message never reached the route


@pytest.mark.usefixtures("sqlite_only_store")
def test_served_process_caps_websocket_frames_in_the_server(tmp_path: Path) -> None:
    # `forge serve` also tells uvicorn, so an oversized frame is refused before it is
    # assembled for the app at all.
    settings = load_settings(prod_environ(tmp_path / "s", FORGE_WS_MAX_MESSAGE_BYTES="4096"))
    config = uvicorn_config(create_app(make_context("test", settings)), settings,
                            "127.0.0.1", 1)
    assert config.ws_max_size == 4096


def _send_head(url: str, lines: Iterator[bytes]) -> tuple[bytes, int]:
    """Send a request head line by line (never finished) until the server answers or closes
    the connection: (its reply, the bytes it took before that)."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        while chunk := b"".join(itertools.islice(lines, 64)):  # about 8 KiB at a time
            try:
                sock.sendall(chunk)
            except OSError:  # closed by the server: what it said is still readable
                break
            sent += len(chunk)
            if select.select([sock], [], [], 0.05)[0]:  # answered: stop sending
                break
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                reply += chunk
    return reply, sent


def _send_whole(url: str, data: bytes) -> bytes:
    """Send `data` in one write; everything the server answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    reply = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                reply += chunk
    return reply


def _stream_until_closed(url: str, lines: Iterator[bytes]) -> int:
    """Send `lines` (about 8 KiB at a time), reading whatever the server answers, until it
    closes the connection; the bytes sent by then (all of them if it never closed)."""
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        while chunk := b"".join(itertools.islice(lines, 64)):
            try:
                sock.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
            if select.select([sock], [], [], 0.01)[0]:
                try:
                    if not sock.recv(65536):
                        break  # closed by the server
                except OSError:
                    break
    return sent


def _heads() -> dict[str, Iterator[bytes]]:
    start = b"POST /v1/spawn HTTP/1.1\r\nHost: x\r\n"
    return {
        "one 20 MB header": itertools.chain([start, b"X-Junk: "],
                                            itertools.repeat(b"a" * 128, 160_000)),
        "20000 headers of 110 bytes": itertools.chain(
            [start], (b"X-H%05d: %s\r\n" % (i, b"a" * 100) for i in range(20000))),
        "a 20 MB URL": itertools.chain([b"GET /"], itertools.repeat(b"a" * 128, 160_000)),
    }


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_huge_request_head_is_431_and_the_connection_closed(
        spawn_process: tuple[str, psutil.Process]) -> None:
    # Attack: the body cap runs after the server has parsed the head, and uvicorn keeps a
    # header of any size: a 20 MB header (or 20,000 headers) was parsed, held in memory and
    # handed to the app. Now the server refuses a head over 64 KiB and closes the connection
    # before it has taken a megabyte of it.
    url, process = spawn_process
    for name, lines in _heads().items():
        reply, sent = _send_head(url, lines)
        assert reply.startswith(b"HTTP/1.1 431 "), (name, reply[:200])
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {
            "error": "request_head_too_large",
            "message": f"headers: the request line and headers are larger than "
                       f"{MAX_HEAD_BYTES} bytes",
            "details": [{"field": "headers", "limit_bytes": MAX_HEAD_BYTES}]}, name
        assert sent < MIB, (name, sent)
    # A finished head over the cap sent in one write is refused too (the parser has taken
    # it whole before a read-by-read count could judge it), before the app sees it.
    whole = (b"POST /v1/spawn HTTP/1.1\r\nHost: x\r\n"
             + b"".join(b"X-H%04d: %s\r\n" % (i, b"a" * 1000) for i in range(100))
             + b"content-length: 2\r\n\r\n{}")
    reply = _send_whole(url, whole)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1, reply[:400]  # the request itself never ran
    # Trailers after a chunked body are head bytes as well: an endless one is cut off.
    trailer = itertools.chain(
        [b"POST /v1/spawn HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n"
         b"2\r\n{}\r\n0\r\nX-T: "], itertools.repeat(b"a" * 128, 160_000))
    assert _stream_until_closed(url, trailer) < MIB
    # Ordinary requests are untouched: cookies of tens of KiB, and bodies near the body cap
    # on one kept-alive connection (body bytes never count toward the head).
    with httpx.Client(base_url=url, timeout=30) as client:
        cookie = {"cookie": "forge_session=" + "c" * 40_000}
        assert client.get("/healthz", headers=cookie).status_code == 200
        for _ in range(3):
            answer = client.post("/v1/spawn", content=b"{" + b" " * (MIB - 100) + b"}",
                                 headers={"content-type": "application/json"})
            assert answer.status_code == 422, answer.text[:200]
        assert client.get("/healthz").status_code == 200
    assert process.is_running()
