"""A client leaves a hung NATS server quickly also over TLS (what `forge up` runs).

Rehearsal finding: with `forge up --nats-cluster 3` (TLS only), SIGSTOP of the server
spawn_service's publisher was on refused every spawn and submit with 503 for about 65 s:
publishes timed out until three pings went unanswered (30-40 s), then the reconnect waited
for the hung peer's TLS close_notify (asyncio's 30 s SSL shutdown timeout) before dialling
the next server. `tests/bus/test_hung_server.py` runs without TLS, so it never saw the 30 s.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.bus.cluster import NatsCluster
from forge.bus.connection import BusConnection
from forge.bus.consumer import DurableConsumer
from forge.bus.errors import BusUnavailable
from forge.bus.events import Event
from forge.bus.publisher import Publisher
from forge.bus.replication import forge_streams
from forge.bus.subjects import DURABLE_ORCHESTRATOR_SUBMIT, SCENARIO_SUBMIT
from forge.bus.tls import BusTls

from ..support.paused import paused
from .test_hung_server import server_pid


@pytest.fixture
def tls_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(3, tmp_path / "c", tls=BusTls.generate(tmp_path / "tls")) as made:
        yield made


async def _connected(cluster: NatsCluster, *, ping_interval: float) -> BusConnection:
    """A node's bus connection to `cluster`, over TLS, connected and flushed."""
    conn = BusConnection(cluster.url, "test-node", streams=forge_streams(3),
                         credentials=cluster.credentials("orchestrator"),
                         ping_interval=ping_interval)
    assert await conn.start(wait=30)
    await conn.client().flush(timeout=10)
    return conn


async def _off(conn: BusConnection, hung: str | None, started: float) -> None:
    """Wait until `conn` is on a live server other than `hung` again, and flush there."""
    while conn.server in (None, hung):
        assert time.monotonic() - started < 10, "was ~30 s: the TLS shutdown timeout"
        await asyncio.sleep(0.05)
    await conn.client().flush(timeout=5)


async def test_move_on_over_tls_does_not_wait_for_the_hung_peer(
        tls_cluster: NatsCluster) -> None:
    conn = await _connected(tls_cluster, ping_interval=60)
    hung = conn.server
    try:
        with paused(server_pid(tls_cluster, hung)):
            started = time.monotonic()
            assert await conn.move_on()
            await _off(conn, hung, started)
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


async def test_a_consumer_leaves_a_hung_server_and_still_gets_the_next_message(
        tls_cluster: NatsCluster) -> None:
    """The scoreboard's side (rehearsal CL): its consumer stayed on a hung server until
    the pings gave up and the TLS close timed out, so a verdict came about 62 s late.
    After an empty fetch it now pings the server and leaves one that does not answer
    (within seconds); the next message then arrives once the cluster has a leader for the
    stream and the consumer again (bounded here, not timed)."""
    got: list[bytes] = []

    async def handle(event: Event) -> None:
        got.append(json.dumps(event.data).encode())

    async def dead(event: Event, error: str) -> None:
        raise AssertionError(error)

    consumer = DurableConsumer(tls_cluster.url, durable=DURABLE_ORCHESTRATOR_SUBMIT,
                               subjects=[SCENARIO_SUBMIT], handler=handle,
                               on_dead_letter=dead, fetch_timeout=1.0,
                               streams=forge_streams(3),
                               credentials=tls_cluster.credentials("orchestrator"))
    pub = Publisher(tls_cluster.url, name="forge-spawn", streams=forge_streams(3),
                    credentials=tls_cluster.credentials("spawn"))
    assert await consumer.start(wait=30) and await pub.start(wait=30)
    conn = consumer.connection
    assert conn is not None
    await conn.client().flush(timeout=10)
    hung = conn.server
    if pub.connection.server == hung:  # the message must reach a live server
        assert await pub.connection.move_on()
        assert await pub.connection.wait_ready(20)
    try:
        with paused(server_pid(tls_cluster, hung)):
            started = time.monotonic()
            while conn.server in (None, hung):  # left after an empty fetch and a ping
                assert time.monotonic() - started < 15, "still on the hung server"
                await asyncio.sleep(0.1)
            while True:  # the stream's leader may have been the hung server: re-elected
                try:
                    await pub.publish(SCENARIO_SUBMIT, {"n": 1}, msg_id="hung-consumer-1")
                    break
                except BusUnavailable:
                    assert time.monotonic() - started < 60, "no publish reached the cluster"
            while not got:  # bounded: the consumer's own leader may be re-elected first
                assert time.monotonic() - started < 90, "the message never arrived"
                await asyncio.sleep(0.1)
    finally:
        await consumer.stop(grace=2)
        await pub.close()


async def test_short_pings_over_tls_leave_a_hung_server_without_the_shutdown_wait(
        tls_cluster: NatsCluster) -> None:
    """nats-py's own way out (three pings unanswered: its reconnect) closed the old TLS
    socket gracefully and waited for the hung peer's close_notify, asyncio's 30 s SSL
    shutdown timeout, before dialling a live server: a lab node whose heartbeat connection
    noticed the hang that way was away for ~30 s, longer than the node grace period, and
    its live labs were failed as `lab node … lost` (probe: nft drop of one server of
    `forge up --nats-cluster 3`). `move_on` aborted the socket, but only when it won the
    race against the pings."""
    conn = await _connected(tls_cluster, ping_interval=0.5)
    hung = conn.server
    try:
        with paused(server_pid(tls_cluster, hung)):
            await _off(conn, hung, time.monotonic())  # the pings give up after ~2 s
    finally:
        await conn.close()
