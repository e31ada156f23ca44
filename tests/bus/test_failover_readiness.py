"""Readiness after a NATS failover.

A publish lost while its stream had no leader counts against readiness only until the
stream answers again: it used to count until the same subject was published again or 60 s
had passed, so a service that published during a failover's election stayed "not ready"
for about a minute on a whole bus (and a load balancer sends a replica it sees not ready
nothing to publish).

A publisher on a server that hangs (stopped, cut off) leaves it when the readiness probe
gets no answer: with nothing to publish it stayed there, and the service not ready, until
its pings gave up.
"""

from __future__ import annotations

import asyncio

import pytest

from forge.bus import BusUnavailable, Publisher
from forge.bus.cluster import NatsCluster
from forge.bus.replication import forge_streams
from forge.bus.subjects import (
    NODE_STREAM,
    SPAWN_REQUESTED,
    STREAM,
    node_submit_subject,
    stream_of,
    subject_matches,
)

from ..support.bus_readiness import nats_readiness, until_ready
from ..support.paused import paused
from .test_hung_server import server_pid


def test_each_subject_belongs_to_its_stream() -> None:
    assert stream_of(SPAWN_REQUESTED) == STREAM
    assert stream_of("forge.scenario.launching") == STREAM
    assert stream_of(node_submit_subject("node-2")) == NODE_STREAM
    assert stream_of("other.subject") is None
    assert subject_matches("forge.>", "forge.a.b") and not subject_matches("forge.>", "forge")
    assert not subject_matches("forge.scenario.*", "forge.scenario.submit.node-1")


async def test_publish_lost_to_a_failover_is_forgotten_once_a_new_leader_answers() -> None:
    with NatsCluster(3) as cluster:
        old = await asyncio.to_thread(cluster.wait_stream_leader)
        stays, other = (i for i in range(3) if i != old)
        # On a server that stays up, so no reconnect forgets anything by itself.
        publisher = Publisher(cluster.nodes[stays].url,
                              credentials=cluster.credentials("spawn"), timeout=1.0,
                              reconnect_wait=0.2)
        # Not the forget window either: only the stream answering again may clear it.
        publisher.forget_unconfirmed_s = 3600.0
        try:
            assert await publisher.start(wait=10.0)
            ok, body = await nats_readiness(publisher, 10.0)  # (and learns who leads FORGE)
            assert ok, body
            cluster.kill(old)
            cluster.kill(other)  # quorum lost: nothing can be stored
            with pytest.raises(BusUnavailable):
                await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="lost-1")
            ok, body = await nats_readiness(publisher, 10.0)
            assert not ok and body["failed"] == ["nats"], body
            assert "JetStream" in body["checks"]["nats"]["detail"]

            # Quorum again without the old leader: a new one is elected.
            await asyncio.to_thread(cluster.restart, other)
            await asyncio.to_thread(cluster.wait_stream_leader, not_on=old)
            body = await until_ready(publisher, 30.0, 10.0)
            assert body["status"] == "ready", body
            assert publisher.connection.state.reconnects == 0  # nothing reset it but that
            ack = await publisher.publish(SPAWN_REQUESTED, {"n": 2}, msg_id="after-1")
            assert ack.stream == STREAM
        finally:
            await publisher.close()


async def test_readiness_leaves_a_hung_server_for_a_live_one() -> None:
    with NatsCluster(3) as cluster:
        # The default pings (10 s apart) are what used to notice, half a minute later.
        publisher = Publisher(cluster.url, credentials=cluster.credentials("spawn"),
                              streams=forge_streams(3), timeout=1.0, reconnect_wait=0.2)
        try:
            assert await publisher.start(wait=30.0)
            await publisher.connection.client().flush(timeout=10)  # no answer in flight
            hung = publisher.connection.server
            with paused(server_pid(cluster, hung)):
                ok, body = await nats_readiness(publisher, 10.0)  # its server answers nothing
                assert not ok and "JetStream did not answer" in body["checks"]["nats"]["detail"]
                assert await publisher.connection.wait_ready(20)
                assert publisher.connection.server not in (None, hung)
                body = await until_ready(publisher, 30.0, 10.0)
                assert body["status"] == "ready", body
        finally:
            await publisher.close()
