"""Attack: forging a lab node's heartbeat, drain flag or the sweeper lease from another
service's bus identity.

The node registry lives in JetStream KV (`forge_nodes`, `forge_node_drain`,
`forge_node_lease`). Whoever can write there can keep a dead node "alive" (its labs never
fail), drain every node (no learner gets a lab), or hold the lease (no lost node is ever
swept). Only the orchestrator identity (the lab nodes) may write these buckets; the
spawn_service and scoreboard credentials are refused by the real nats-server. The node's
wildcard grant for its own submit durable does not reach other services' durables either.
"""

from __future__ import annotations

import json

import pytest
from nats import errors as nats_errors
from nats.aio.client import Client

from forge.bus import NatsServer
from forge.bus.dial import connect
from forge.bus.nodes import NodeRegistry
from forge.bus.permissions import DRAIN_BUCKET, LEASE_BUCKET, NODES_BUCKET
from forge.bus.subjects import DURABLE_SCOREBOARD_COMPLETED, STREAM

from .test_bus_auth import Probe, probe_as, probes  # noqa: F401  (fixture)

FORGED = json.dumps({"node_id": "n1", "url": "http://127.0.0.1:1", "capacity_labs": 1,
                     "capacity_memory_mb": 1, "started_at": 0, "heartbeat_at": 4e9,
                     "instance": "forged"}).encode()
TARGETS = (f"$KV.{NODES_BUCKET}.node.n1", f"$KV.{DRAIN_BUCKET}.n1",
           f"$KV.{LEASE_BUCKET}.sweeper")


async def _registry_as_orchestrator(nats: NatsServer) -> tuple[NodeRegistry, Client]:
    nc = await connect(nats.url, "node-test", credentials=nats.credentials("orchestrator"))
    registry = NodeRegistry(nc.jetstream, replicas=1, grace_s=3.0)
    await registry.buckets()
    return registry, nc


@pytest.mark.parametrize("identity", ["spawn", "scoreboard"])
async def test_other_identities_cannot_write_the_node_registry(
        nats: NatsServer, probes: list[Probe], identity: str) -> None:  # noqa: F811
    registry, nc = await _registry_as_orchestrator(nats)
    try:
        probe = await probe_as(probes, nats, identity)
        assert probe.nc is not None
        js = probe.nc.jetstream()
        for subject in TARGETS:
            with pytest.raises(nats_errors.TimeoutError):  # never stored, so never acked
                await js.publish(subject, FORGED, timeout=1)
        await probe.settle()
        for subject in TARGETS:
            assert probe.refused("publish", subject), probe.errors
        assert await registry.get("n1") is None
        assert not await registry.draining("n1")
        assert await registry.lease_holder() is None
        # The orchestrator identity (a lab node) may: the control.
        await registry.set_draining("n1", True)
        assert await registry.draining("n1")
        assert await registry.lease("n2", None) is not None
        assert await registry.lease_holder() == "n2"
    finally:
        await nc.close()


async def test_a_node_cannot_read_another_services_durable(
        nats: NatsServer, probes: list[Probe]) -> None:  # noqa: F811
    probe = await probe_as(probes, nats, "orchestrator")
    assert probe.nc is not None
    subject = f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{DURABLE_SCOREBOARD_COMPLETED}"
    await probe.nc.publish(subject, b'{"batch":1}', reply="_INBOX_orchestrator.x")
    await probe.settle()
    assert probe.refused("publish", subject), probe.errors
