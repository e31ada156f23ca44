"""A lab node whose NATS server hangs is not judged lost: its heartbeat moves on.

Probe AZ stopped (SIGSTOP) the server most nodes were connected to, for 40 s, on a
3-server cluster: the nodes on it went on asking it, their heartbeats timed out, the lease
holder judged them lost and failed every learner's lab on them, while they were alive and
two servers were healthy. Now a node's heartbeat connection leaves such a server well
within the grace period. A real orchestrator node on a real 3-server cluster; an
observer on the two other servers judges its record as the lease holder does
(`NodeRegistry.alive`) for longer than two grace periods while the server is stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from forge.bus.cluster import NatsCluster
from forge.bus.connection import BusConnection
from forge.bus.nodes import NodeRegistry

from ..bus.test_hung_server import server_pid
from ..support.paused import paused
from ..support.polling import until
from .conftest import MakeOrch

GRACE_S = 10.0  # a request timeout, a move to another server and an election, under load


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with NatsCluster(3) as made:
        yield made


async def _watch(cluster: NatsCluster, hung: str, node_id: str, seconds: float) -> list[bool]:
    """What the lease holder would judge of ``node_id`` every 0.25 s for ``seconds``, from
    the servers other than ``hung`` (a read that fails judges nothing)."""
    others = ",".join(u for u in cluster.url.split(",") if not u.endswith(hung.rsplit(":", 1)[1]))
    conn = BusConnection(others, "test-observer", credentials=cluster.credentials("orchestrator"))
    assert await conn.start(wait=30)
    judged: list[bool] = []
    try:
        registry = NodeRegistry(lambda: conn.jetstream(2.0), replicas=3, grace_s=GRACE_S,
                                manage=False)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                judged.append(await registry.alive(node_id))
            except Exception:  # a KV leader moving: no judgement this time
                registry.forget()
            await asyncio.sleep(0.25)
    finally:
        await conn.close()
    return judged


@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_a_node_whose_server_hangs_is_never_judged_lost(make_orch: MakeOrch,
                                                         cluster: NatsCluster) -> None:
    n1 = make_orch(**cluster.client_env(), FORGE_NODE_ID="n1", reaper_interval_s=3600,
                   FORGE_NODE_GRACE_S=str(GRACE_S))
    node = n1.state.node
    assert node is not None and node.bus is not None
    bus = node.bus
    until(lambda: node.revision is not None and bus.server is not None, "n1 registered")
    hung = bus.server
    assert hung is not None
    pid = server_pid(cluster, hung)
    with paused(pid):
        judged = asyncio.run(_watch(cluster, hung, "n1", 2.5 * GRACE_S))
    assert len(judged) > 10 and all(judged), judged  # alive at every look
    assert bus.server != hung
