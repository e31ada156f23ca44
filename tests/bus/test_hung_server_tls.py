"""A client leaves a hung NATS server quickly also over TLS (what `forge up` runs).

Rehearsal finding: with `forge up --nats-cluster 3` (TLS only), SIGSTOP of the server
spawn_service's publisher was on refused every spawn and submit with 503 for about 65 s:
publishes timed out until three pings went unanswered (30-40 s), then the reconnect waited
for the hung peer's TLS close_notify (asyncio's 30 s SSL shutdown timeout) before dialling
the next server. `tests/bus/test_hung_server.py` runs without TLS, so it never saw the 30 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.bus.cluster import NatsCluster
from forge.bus.connection import BusConnection
from forge.bus.errors import BusUnavailable
from forge.bus.publisher import Publisher
from forge.bus.replication import forge_streams
from forge.bus.tls import BusTls

from ..support.paused import paused
from .test_hung_server import server_pid


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(3, tmp_path / "c", tls=BusTls.generate(tmp_path / "tls")) as made:
        yield made


async def test_move_on_over_tls_does_not_wait_for_the_hung_peer(
        tls_cluster: NatsCluster) -> None:
    conn = BusConnection(tls_cluster.url, "test-node", streams=forge_streams(3),
                         credentials=tls_cluster.credentials("orchestrator"),
                         ping_interval=60)
    assert await conn.start(wait=30)
    await conn.client().flush(timeout=10)
    hung = conn.server
    try:
        with paused(server_pid(tls_cluster, hung)):
            started = time.monotonic()
            assert await conn.move_on()
            while conn.server in (None, hung):  # on a live server again
                assert time.monotonic() - started < 10, "was ~30 s: the TLS shutdown timeout"
                await asyncio.sleep(0.05)
            await conn.client().flush(timeout=5)
    finally:
        await conn.close()


async def test_a_publisher_on_a_hung_server_recovers_by_the_next_publish(
        tls_cluster: NatsCluster) -> None:
    pub = Publisher(tls_cluster.url, name="forge-spawn", streams=forge_streams(3),
                    credentials=tls_cluster.credentials("spawn"))
    assert await pub.start(wait=30)
    await pub.connection.client().flush(timeout=10)
    hung = pub.connection.server
    try:
        with paused(server_pid(tls_cluster, hung)):
            started = time.monotonic()
            ok = False
            while time.monotonic() - started < 15:
                try:
                    await pub.publish("forge.scenario.submit", {"n": 1}, msg_id="hung-1")
                    ok = True
                    break
                except BusUnavailable:
                    pass
            assert ok, "no publish succeeded within 15 s of the server hanging"
            assert pub.connection.server != hung
    finally:
        await pub.close()
