"""The sweeper lease: taken on any heartbeat while free, renewed while held every quarter
of the grace period (its time to live in the KV bucket), never taken from its holder.

A real nats-server and KV buckets; the node is driven beat by beat (no background loop),
and the renewal clock is moved by hand instead of waiting for it.
"""

from __future__ import annotations

from pathlib import Path

from forge.bus import NatsServer
from forge.bus.connection import BusConnection
from forge.bus.nodes import NodeRegistry
from forge.config import load_settings
from forge.services.orchestrator.node import LabNode
from forge.templates import TemplateRegistry

from ..services.conftest import prod_environ


async def test_a_held_lease_is_renewed_each_quarter_grace_and_kept_from_others(
        nats: NatsServer, tmp_path: Path) -> None:
    settings = load_settings(prod_environ(
        tmp_path / "storage", **nats.client_env(), FORGE_NODE_ID="n1",
        FORGE_NODE_HEARTBEAT_S="0.5", FORGE_NODE_GRACE_S="8"))
    conn = BusConnection(nats.url, "lease-test", credentials=nats.credentials("orchestrator"))
    assert await conn.start(wait=10)
    try:
        kv = NodeRegistry(conn.jetstream, replicas=1, grace_s=settings.node_grace_s)
        node = LabNode(settings=settings, registry=TemplateRegistry.load(settings.templates_dir),
                       kv=kv)
        await node.register()
        await node.beat()
        taken = node.lease_revision
        assert taken is not None and node.leader and await kv.lease_holder() == "n1"
        await node.beat()  # a heartbeat later: not due, no request
        assert node.lease_revision == taken
        assert node.lease_renewed_at is not None
        node.lease_renewed_at -= settings.node_grace_s / 4  # a quarter grace has passed
        await node.beat()
        assert node.lease_revision is not None and node.lease_revision > taken
        # Another node asking on its own heartbeat does not get a held lease.
        assert await kv.lease("n2", None) is None
        assert await kv.lease_holder() == "n1"
        # A node that lost the lease (an outage) asks again on its very next heartbeat.
        node.lease_revision = None
        await node.beat()
        assert node.lease_revision is None and not node.leader  # its old lease still stands
        assert node.lease_renewed_at is None
    finally:
        await conn.close()
