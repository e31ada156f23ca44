"""Run an ASGI app under a real uvicorn server on a loopback port, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from forge.bus.ports import free_port
from forge.config.settings import Settings
from forge.services.common.serving import DrainingServer, uvicorn_config

__all__ = ["distinct_ports", "forge_served", "free_port", "live_server", "reserve_port"]


def distinct_ports(count: int, *avoid: int) -> list[int]:
    """``count`` free ports, none equal to another or to ``avoid``: ``free_port`` picks at
    random and binds nothing, so two picks for one test can be the same port."""
    picked: list[int] = []
    while len(picked) < count:
        port = free_port()
        if port not in picked and port not in avoid:
            picked.append(port)
    return picked


def _listening(port: int | None) -> socket.socket:
    """A loopback socket bound to `port` (any free one when None), held until the server ends.

    Binding before the server starts leaves no window between binding and serving; a free
    port another process takes between `free_port` picking it and this bind is picked anew.
    """
    for attempt in range(1 if port is not None else 16):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port if port is not None else free_port()))
        except OSError:
            sock.close()
            if port is not None or attempt == 15:
                raise
            continue
        return sock
    raise AssertionError("unreachable")


def reserve_port() -> socket.socket:
    """A loopback socket bound to a free port, for a server whose port must be known before
    it is built (its settings name its URL): pass it to `live_server(app, sock=...)`, which
    serves on it and closes it. Picking a port number first and binding it later lost it,
    now and then, to another test's process on the same machine."""
    return _listening(None)


@contextmanager
def _running(server: uvicorn.Server, sock: socket.socket) -> Iterator[None]:
    """Run `server` on `sock` in a thread until the block ends (the socket closed after)."""
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def live_server(app: FastAPI, port: int | None = None,
                sock: socket.socket | None = None) -> Iterator[str]:
    """Serve `app` until the block ends (on `sock` from `reserve_port`, else on `port`, else
    on a free one); yields its base URL."""
    sock = sock if sock is not None else _listening(port)
    bound = int(sock.getsockname()[1])
    with _running(uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on")), sock):
        yield f"http://127.0.0.1:{bound}"


@contextmanager
def forge_served(app: FastAPI, settings: Settings) -> Iterator[tuple[int, DrainingServer]]:
    """(port, server) of `app` served as `forge serve` serves it (its uvicorn configuration:
    bounded heads, JSON refusals, WebSocket caps; DrainingServer) on a loopback port."""
    sock = reserve_port()
    port = int(sock.getsockname()[1])
    server = DrainingServer(uvicorn_config(app, settings, "127.0.0.1", port))
    with _running(server, sock):
        yield port, server
