"""A connection leaves a NATS server that hangs for a live one of the cluster.

A server that hangs (SIGSTOP here; a wedged process, a stalled VM) keeps its client sockets
open and answers nothing, unlike one that dies. Before, a client noticed only after 3
unanswered pings 10 s apart, and every lab node on such a server was judged lost (its labs
failed) while it was alive (probe AZ). Now `BusConnection.move_on` leaves the server at
once, and a connection with a short ping interval leaves it by itself. A real 3-server
cluster on loopback; the server this connection is on is stopped for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import nats.errors
import pytest

from forge.bus.cluster import NatsCluster
from forge.bus.connection import BusConnection
from forge.bus.dial import ping_due
from forge.bus.replication import forge_streams

from ..support.paused import paused


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with NatsCluster(3) as made:
        yield made


def server_pid(cluster: NatsCluster, server: str | None) -> int:
    """The pid of the cluster's server at ``server`` (a URL as `BusConnection.server`)."""
    assert server is not None
    for node in cluster.nodes:
        if server.endswith(f":{node.port}") and node.pid is not None:
            return node.pid
    raise AssertionError(f"{server} is none of the cluster's servers")


async def _connected(cluster: NatsCluster, ping_interval: float) -> BusConnection:
    conn = BusConnection(cluster.url, "test-node", streams=forge_streams(3),
                         credentials=cluster.credentials("orchestrator"),
                         ping_interval=ping_interval)
    assert await conn.start(wait=30)
    return conn


async def test_move_on_leaves_a_hung_server_for_a_live_one(cluster: NatsCluster) -> None:
    conn = await _connected(cluster, ping_interval=60)  # the pings stay out of it
    # Every answer the server owes arrives first: a PONG still on its way when it stops
    # would answer the flush below (seen under load).
    await conn.client().flush(timeout=10)
    hung = conn.server
    pid = server_pid(cluster, hung)
    try:
        with paused(pid):
            with pytest.raises(nats.errors.TimeoutError):  # open socket, no answer
                await conn.client().flush(timeout=1)
            assert await conn.move_on()
            assert await conn.wait_ready(20)
            assert conn.server not in (None, hung)
            await conn.client().flush(timeout=5)  # a live server answers
    finally:
        await conn.close()


async def test_short_pings_leave_a_hung_server_by_themselves(cluster: NatsCluster) -> None:
    conn = await _connected(cluster, ping_interval=0.5)
    hung = conn.server
    pid = server_pid(cluster, hung)
    try:
        with paused(pid):
            deadline = time.monotonic() + 30  # bounded; a hung server is left after 4 pings
            while conn.server in (None, hung):
                assert time.monotonic() < deadline, "still on the hung server"
                await asyncio.sleep(0.1)
            await conn.client().flush(timeout=5)
    finally:
        await conn.close()


def test_a_client_pings_only_a_server_silent_for_an_interval() -> None:
    """Issue 19: a lab node's heartbeat connection pinged every 1.9 s while its heartbeat
    was answered every 2 s, idle consumers while their fetches were answered. A server
    that sent a message since the last tick is alive: no ping. One silent for an interval
    (hung, or an idle connection) is pinged, and unanswered pings count on to stale."""
    assert not ping_due(received=7, received_at_last_tick=5, outstanding=0)
    assert ping_due(received=7, received_at_last_tick=7, outstanding=0)  # silent: ping
    assert ping_due(received=7, received_at_last_tick=None, outstanding=0)  # first tick
    assert ping_due(received=9, received_at_last_tick=7, outstanding=1)  # one unanswered
