"""The services' uvicorn loop: idle, it waits a second at a time, and a stop signal ends
that wait at once (issue 19 item 5: uvicorn's own loop woke ten times a second)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading

import httpx
import pytest
from fastapi import FastAPI

from forge.services.common import serving
from forge.services.common.serving import DrainingServer


def _server(sock: socket.socket) -> DrainingServer:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    host, port = sock.getsockname()[:2]
    return DrainingServer(serving.uvicorn.Config(app, host=host, port=port, log_config=None,
                                                 lifespan="off"))


def test_a_stop_signal_ends_an_idle_wait_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the idle wait made an hour long, only the signal's wake-up can end the loop
    before the test's bound (the bound is a hang guard, not a timing)."""
    monkeypatch.setattr(serving, "TICK_S", 3600.0)
    monkeypatch.setattr(serving, "DRAIN_S", 0.0)
    sock = socket.create_server(("127.0.0.1", 0))
    server = _server(sock)
    host, port = sock.getsockname()[:2]

    async def scenario() -> list[str]:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            reply = await client.get(f"http://{host}:{port}/ping")
        seen = [reply.headers.get("date", "")]
        # the signal handler runs on the loop's thread; another thread's signal is the same
        threading.Thread(target=server.handle_exit, args=(signal.SIGTERM, None)).start()
        await asyncio.wait_for(task, 60)  # hang guard: without the wake-up, an hour
        return seen

    # uvicorn re-raises the stop signal once it has shut down (serve() ignores it)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        dates = asyncio.run(scenario())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert dates[0].endswith(" GMT"), "the Date header is still sent"
    assert server.should_exit
