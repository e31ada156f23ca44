"""A 3-node NATS JetStream cluster on loopback: replicated streams and buckets, and no
event lost or doubled when the stream leader is killed -9 under publish/consume traffic."""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.bus import BusError, BusUnavailable, DurableConsumer, Event, NatsServer, Publisher
from forge.bus.cluster import NatsCluster
from forge.bus.dial import connect
from forge.bus.replication import ensure_kv, ensure_object_store, forge_streams
from forge.bus.subjects import SPAWN_REQUESTED, ensure_streams


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    """Three clustered nats-servers, Forge streams with 3 replicas."""
    with NatsCluster(3) as made:
        yield made


async def _stream_replicas(url: str, stream: str) -> tuple[int, int, str | None]:
    """(configured replicas, peers in the raft group, leader) as STREAM.INFO reports them."""
    nc = await connect(url, "probe", max_reconnect_attempts=2)
    try:
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    assert info.cluster is not None
    peers = 1 + len(info.cluster.replicas or [])
    return info.config.num_replicas, peers, info.cluster.leader


async def _wait_replicas(url: str, stream: str, want: int, timeout: float = 30.0) -> None:
    """Scaling is asynchronous: wait (bounded) until the raft group has `want` peers."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (got := (await _stream_replicas(url, stream))[:2]) != (want, want):
        assert asyncio.get_running_loop().time() < deadline, f"{stream}: {got}"
        await asyncio.sleep(0.1)


async def test_streams_and_buckets_have_three_replicas(cluster: NatsCluster) -> None:
    assert await _stream_replicas(cluster.admin_url, "FORGE") == (
        3, 3, cluster.node_name(cluster.wait_stream_leader()))
    nc = await connect(cluster.admin_url, "buckets", max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        await ensure_kv(js, "forge-test-leases", replicas=3, ttl=30.0)
        await ensure_object_store(js, "forge-test-artifacts", replicas=3)
    finally:
        await nc.close()
    assert (await _stream_replicas(cluster.admin_url, "KV_forge-test-leases"))[:2] == (3, 3)
    assert (await _stream_replicas(cluster.admin_url, "OBJ_forge-test-artifacts"))[:2] == (3, 3)


async def test_existing_single_replica_stream_and_bucket_are_scaled_to_three() -> None:
    with NatsCluster(3, replicas=1) as cluster:
        assert (await _stream_replicas(cluster.admin_url, "FORGE"))[:2] == (1, 1)
        nc = await connect(cluster.admin_url, "scale", max_reconnect_attempts=2)
        try:
            js = nc.jetstream()
            assert await ensure_streams(js, forge_streams(3)) == [
                "updated FORGE: num_replicas", "updated FORGE_NODES: num_replicas"]
            await ensure_kv(js, "forge-test-scale", replicas=1)
            await ensure_kv(js, "forge-test-scale", replicas=3)
        finally:
            await nc.close()
        await _wait_replicas(cluster.admin_url, "FORGE", 3)
        await _wait_replicas(cluster.admin_url, "KV_forge-test-scale", 3)


async def test_three_replicas_on_a_single_server_is_refused_naming_the_setting(
    nats: NatsServer,
) -> None:
    nc = await connect(nats.admin_url, "single", max_reconnect_attempts=2)
    try:
        with pytest.raises(BusError, match="FORGE_NATS_REPLICAS") as refused:
            await ensure_streams(nc.jetstream(), forge_streams(3))
        assert "num_replicas" in str(refused.value)
        with pytest.raises(BusError, match="FORGE_NATS_REPLICAS"):
            await ensure_kv(nc.jetstream(), "forge-test-single", replicas=3)
        # The stream is still there, unchanged: nothing lost by the refusal.
        info = await nc.jetstream().stream_info("FORGE")
        assert info.config.num_replicas == 1
    finally:
        await nc.close()


def test_replica_counts_are_validated() -> None:
    with pytest.raises(ValueError, match="replicas"):
        forge_streams(2)
    with pytest.raises(ValueError, match="replicas"):
        NatsCluster(3, replicas=5)
    with pytest.raises(ValueError, match="size"):
        NatsCluster(2)


def test_client_env_lists_every_node_and_the_replica_count(cluster: NatsCluster) -> None:
    env = cluster.client_env()
    assert env["NATS_URL"].split(",") == [node.url for node in cluster.nodes]
    assert env["FORGE_NATS_REPLICAS"] == "3"
    assert "@" not in env["NATS_URL"]  # passwords travel in their own variables
    assert {"NATS_SPAWN_PASSWORD", "NATS_ORCHESTRATOR_PASSWORD",
            "NATS_SCOREBOARD_PASSWORD"} <= set(env)


async def test_publish_retried_on_another_server_is_stored_once(cluster: NatsCluster) -> None:
    """A publisher whose server dies moves to a survivor; the same msg id sent again there
    (a caller retrying an unconfirmed publish) is recognised as a duplicate."""
    publisher = Publisher(cluster.admin_url, name="dedupe-pub", timeout=5.0,
                          streams=forge_streams(3), max_reconnect_attempts=60)
    assert await publisher.start(wait=10.0)
    try:
        first = await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="once-1")
        on = publisher.connection.connected_url
        index = [node.url for node in cluster.nodes].index(on)
        cluster.kill(index)
        deadline = asyncio.get_running_loop().time() + 30
        while publisher.connection.connected_url in (None, on):
            assert asyncio.get_running_loop().time() < deadline, "no failover"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(cluster.wait_stream_leader, not_on=index)
        again = await publisher.publish(SPAWN_REQUESTED, {"n": 1}, msg_id="once-1")
        other = await publisher.publish(SPAWN_REQUESTED, {"n": 2}, msg_id="once-2")
    finally:
        await publisher.close()
    assert (first.duplicate, again.duplicate, again.seq) == (False, True, first.seq)
    assert other.seq == first.seq + 1
    assert publisher.connection.state.reconnects >= 1


async def _move_leader(cluster: NatsCluster, stream: str, to: int) -> None:
    """Make node `to` lead `stream` (a stepdown naming the preferred server), bounded."""
    nc = await connect(cluster.admin_url, "stepdown", max_reconnect_attempts=2)
    try:
        for _ in range(10):
            current = await asyncio.to_thread(cluster.wait_stream_leader, stream)
            if current == to:
                return
            request = {"placement": {"preferred": cluster.node_name(to)}}
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}",
                             json.dumps(request).encode(), timeout=5.0)
            # Wait for the election to finish before looking again.
            await asyncio.to_thread(cluster.wait_stream_leader, stream, not_on=current)
    finally:
        await nc.close()
    raise AssertionError(f"{stream} leader did not move to {cluster.node_name(to)}")


MESSAGES = 300
KILL_AFTER = 100


async def test_leader_killed_under_traffic_loses_and_doubles_nothing(
    cluster: NatsCluster,
) -> None:
    """kill -9 the FORGE stream leader while 300 events are published and consumed.

    Publishing is exactly-once through msg ids: a publish whose confirmation is lost is
    retried with the same id and JetStream's duplicate window (replicated with the stream)
    drops the copy. Consuming is at-least-once: a message whose ack did not reach the
    new leader comes back, and the handler is idempotent by msg id (the effect, `applied`,
    happens once; a repeat only counts as a redelivery).
    """
    applied: dict[str, int] = {}
    deliveries: Counter[str] = Counter()
    reached = asyncio.Event()

    async def handle(event: Event) -> None:
        msg_id = str(event.msg_id)
        deliveries[msg_id] += 1
        if msg_id not in applied:  # idempotent effect, keyed by msg id
            applied[msg_id] = int(event.data["n"])
        if len(applied) >= KILL_AFTER:
            reached.set()

    async def dead_letter(event: Event, error: str) -> None:
        raise AssertionError(f"dead-lettered {event.msg_id}: {error}")

    url = cluster.admin_url
    consumer = DurableConsumer(url, durable="cluster-test", subjects=[SPAWN_REQUESTED],
                               handler=handle, on_dead_letter=dead_letter, ack_wait=3.0,
                               fetch_timeout=0.5, backoff=(0.2,), max_deliver=50,
                               streams=forge_streams(3), max_reconnect_attempts=60)
    publisher = Publisher(url, name="cluster-pub", timeout=2.0, streams=forge_streams(3),
                          max_reconnect_attempts=60)
    retries = duplicates = 0

    async def publish_all() -> None:
        nonlocal retries, duplicates
        for n in range(MESSAGES):
            for _attempt in range(60):
                try:
                    ack = await publisher.publish(SPAWN_REQUESTED, {"n": n}, msg_id=f"m-{n}")
                except BusUnavailable:
                    retries += 1
                    await asyncio.sleep(0.2)  # back off, then retry with the same msg id
                    continue
                duplicates += ack.duplicate
                break
            else:
                raise AssertionError(f"m-{n} never confirmed")

    assert await publisher.start(wait=10.0)
    assert await consumer.start(wait=10.0)
    try:
        # The leader to kill is the node the consumer's client is on, so that both the
        # stream and the client must fail over.
        assert consumer.connection is not None and consumer.connection.connected_url
        leader = [node.url for node in cluster.nodes].index(consumer.connection.connected_url)
        await _move_leader(cluster, "FORGE", leader)
        sender = asyncio.create_task(publish_all())
        await asyncio.wait_for(reached.wait(), 60)
        cluster.kill(leader)
        new_leader = await asyncio.to_thread(cluster.wait_stream_leader, not_on=leader)
        await asyncio.wait_for(sender, 120)
        deadline = asyncio.get_running_loop().time() + 120
        while len(applied) < MESSAGES or (await consumer.refresh_pending()) != 0 \
                or consumer.status()["ack_pending"]:
            assert asyncio.get_running_loop().time() < deadline, (
                f"{len(applied)}/{MESSAGES} applied, status {consumer.status()}")
            await asyncio.sleep(0.1)
    finally:
        await consumer.stop(grace=2.0)
        await publisher.close()

    assert new_leader != leader and not cluster.running(leader)
    assert consumer.status()["reconnects"] >= 1
    # 0 lost: every event reached the handler; 0 doubled: the stream holds each once.
    assert sorted(applied) == sorted(f"m-{n}" for n in range(MESSAGES))
    assert sorted(applied.values()) == list(range(MESSAGES))
    nc = await connect(url, "probe", max_reconnect_attempts=2)
    try:
        info = await nc.jetstream().stream_info("FORGE")
    finally:
        await nc.close()
    assert info.state.messages == MESSAGES
    redelivered = sum(count - 1 for count in deliveries.values())
    status = consumer.status()
    assert status["dead_lettered"] == 0
    # Each confirmed ack settled one distinct message; unconfirmed ones were redelivered.
    assert status["acked"] <= MESSAGES
    print(f"leader {cluster.node_name(leader)} killed -> {cluster.node_name(new_leader)}; "
          f"publish retries {retries}, dedup hits {duplicates}, redeliveries {redelivered}, "
          f"consumer reconnects {status['reconnects']}")

    # The killed node comes back, catches up, and the cluster is whole again.
    await asyncio.to_thread(cluster.restart, leader)
    assert cluster.running(leader)


def _free_run(count: int) -> int:
    """The first of ``count`` consecutive loopback ports none of which is bound now."""

    for _ in range(200):
        base = random.randrange(20000, 30000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no run of free ports")


def test_a_cluster_can_be_confined_to_a_port_range(tmp_path: Path) -> None:
    """`forge up --nats-cluster 3 --nats-port P`: the servers take P..P+8 (client,
    monitoring and route port of each), so an operator can keep them inside a range
    (rehearsal CL: they were always picked free, anywhere from 10000 up)."""
    base = _free_run(9)
    with NatsCluster(3, tmp_path / "c", base_port=base) as made:
        assert [node.port for node in made.nodes] == [base, base + 3, base + 6]
        monitors = [int(node.monitor_url.rsplit(":", 1)[1]) for node in made.nodes]
        assert monitors == [base + 1, base + 4, base + 7]
