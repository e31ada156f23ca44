"""The services' uvicorn loop: idle, it waits a second at a time, and a stop signal ends
that wait at once (issue 19 item 5: uvicorn's own loop woke ten times a second); the WAL
check's one-second timer wakes on the same instants (`forge.second_grid`)."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from forge.services.common import serving
from forge.services.common.serving import DrainingServer
from forge.store.db import Database
from forge.store.wal_checkpoints import checkpoint_periodically


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


class _TimerLog(asyncio.SelectorEventLoop):
    """An event loop noting when each timer it is given falls due."""

    def __init__(self) -> None:
        super().__init__()
        self.whens: list[float] = []
        self.enough: asyncio.Future[None] | None = None

    def call_at(self, when: float, callback: Any, *args: Any,
                context: Any = None) -> asyncio.TimerHandle:
        self.whens.append(when)
        if self.enough is not None and len(self.whens) >= 8 and not self.enough.done():
            self.enough.set_result(None)
        return super().call_at(when, callback, *args, context=context)


@pytest.mark.usefixtures("sqlite_only_store")  # the WAL check runs on SQLite alone
def test_the_date_tick_and_the_wal_check_share_one_wake_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's Date-header tick and the WAL-change check (each once a period) fall due
    at the same instants, so the idle loop wakes once a period for both, where each woke
    it on its own phase. Counted from the timers the loop is given, not timed."""
    monkeypatch.setattr(serving, "TICK_S", 0.05)
    monkeypatch.setattr(serving, "DRAIN_S", 0.0)
    sock = socket.create_server(("127.0.0.1", 0))
    server = _server(sock)
    db = Database(f"sqlite:///{tmp_path / 'forge.db'}")
    loop = _TimerLog()

    async def scenario() -> list[float]:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        checks = asyncio.create_task(checkpoint_periodically(db, every_s=0.05))
        await asyncio.sleep(0.02)  # the check's first wait starts mid-period
        loop.whens.clear()
        loop.enough = loop.create_future()
        started = loop.time()
        await asyncio.wait_for(loop.enough, 60)  # hang guard
        whens = [w for w in loop.whens if w < started + 30]  # not the guard's own
        checks.cancel()
        server.handle_exit(signal.SIGTERM, None)
        await asyncio.gather(checks, return_exceptions=True)
        await asyncio.wait_for(task, 60)
        return whens

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        whens = loop.run_until_complete(scenario())
    finally:
        signal.signal(signal.SIGTERM, previous)
        loop.close()
        db.dispose()
    assert len(whens) >= 7
    assert len(set(whens)) <= len(whens) // 2 + 1, whens  # two timers to each instant
