"""Closing a bus connection is bounded even when a cancellation is swallowed.

On Python 3.11 `asyncio.wait_for` can drop a cancellation that arrives as its inner future
completes, and nats-py's close catches CancelledError while it waits for its reconnect
task. A service stopping (and a test's teardown, where this once hung CI for 300 s) must
not wait for ever on either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from forge.bus import NatsServer
from forge.bus.bounded_close import close_client, stop_task
from forge.bus.connection import BusConnection
from forge.bus.dial import connect
from forge.bus.ports import free_port

T = TypeVar("T")

GUARD_S = 20.0  # far above the bounds under test; only there so a regression fails, not hangs


async def finishes(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` in a task and fail if it is still running after GUARD_S. Unlike
    `asyncio.wait_for`, this never cancels it: a cancellation from the guard must not be
    what makes a stuck close end."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=GUARD_S)
    if task not in done:
        task.cancel()
        raise AssertionError(f"still running after {GUARD_S:g} s")
    return task.result()


async def _swallows_one_cancel(ended: list[str]) -> None:
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        ended.append("first cancel swallowed")
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("second cancel taken")


async def test_stop_task_ends_a_task_that_swallows_a_cancellation() -> None:
    ended: list[str] = []
    task = asyncio.create_task(_swallows_one_cancel(ended))
    await asyncio.sleep(0)
    assert await finishes(stop_task(task, 5.0))
    assert task.cancelled()
    assert ended == ["first cancel swallowed", "second cancel taken"]


async def test_stop_task_gives_up_at_its_bound_on_a_task_that_never_ends() -> None:
    stubborn = [True]

    async def immortal() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not stubborn[0]:
                    raise

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    assert not await finishes(stop_task(task, 0.3))
    assert not task.done()  # left behind, and the caller was not held past the bound
    stubborn[0] = False
    assert await stop_task(task, 5.0)


async def test_close_client_drops_the_socket_of_a_close_that_hangs(
    nats: NatsServer,
) -> None:
    nc = await connect(nats.admin_url, "close-test", timeout=5.0, max_reconnect_attempts=0)
    real_close = nc.close
    attempts: list[str] = []

    async def close_that_hangs() -> None:
        # What nats-py's close did in the hung teardown: the cancellation is caught, then
        # it waits on a socket that never closes.
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            attempts.append("cancel caught")
        await asyncio.Event().wait()

    nc.close = close_that_hangs  # type: ignore[method-assign]
    writer: Any = nc._transport._io_writer  # type: ignore[attr-defined,union-attr]
    await finishes(close_client(nc, 0.3))
    assert writer.transport.is_closing()  # the socket itself was dropped
    assert attempts == ["cancel caught"]  # and the close was cancelled again, and ended
    nc.close = real_close  # type: ignore[method-assign]
    await close_client(nc, 2.0)


async def test_bus_connection_close_is_bounded_when_its_task_swallows_a_cancel(
    nats: NatsServer,
) -> None:
    conn = BusConnection(nats.admin_url, "close-test", max_reconnect_attempts=0)
    assert await conn.start(wait=5.0)
    ended: list[str] = []
    # Stand in for the connection loop at the moment a wait_for dropped the cancellation.
    assert conn._task is not None
    conn._task.cancel()
    await asyncio.gather(conn._task, return_exceptions=True)
    conn._task = asyncio.create_task(_swallows_one_cancel(ended))
    await asyncio.sleep(0)
    await finishes(conn.close())
    assert ended == ["first cancel swallowed", "second cancel taken"]
    assert not conn.ready and not conn.state.connected


async def test_a_close_during_the_first_connect_drops_its_socket() -> None:
    """A server that accepts and never speaks (a hung NATS, not a down one): closing the
    connection while its first connect waits there closes that socket, and nothing
    connects again afterwards (nats-py's own connect loop is stopped, not only its
    socket closed)."""
    connections: list[str] = []
    accepted = asyncio.Event()
    dropped = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("accepted")
        accepted.set()
        await reader.read()  # until the client closes its side
        dropped.set()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(silent, "127.0.0.1", port)
    try:
        conn = BusConnection(f"nats://127.0.0.1:{port}", "close-test", connect_timeout=30.0,
                             reconnect_wait=0.1)
        await conn.start()
        await finishes(accepted.wait())
        await finishes(conn.close())
        await finishes(dropped.wait())
        await asyncio.sleep(1.0)  # ten reconnect waits: a loop left running would be back
        assert connections == ["accepted"]
    finally:
        server.close()
        await server.wait_closed()
