"""Attack: taking over a live lab node's labs by starting a second process with its
FORGE_NODE_ID.

A node acts on the scenarios whose row names its id (reaper, reconciliation, terminals,
extend, destroy, its own submit subject). A second orchestrator started under a live
node's id would share that node's labs: grade them against its own runtime (where they do
not exist, failing them), or reconcile them away. Decision: the second process refuses to
start (NodeIdInUse: the live node keeps rewriting its KV record, so the newcomer sees it
alive), and a node whose record is overwritten by another instance fails closed: it stops
taking work (fenced) instead of running side by side.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.bus.dial import connect
from forge.bus.nodes import NodeIdInUse, NodeRecord, NodeRegistry
from forge.config import load_settings
from forge.runtime.local import LocalRuntime
from forge.services.orchestrator.app import build_app
from forge.services.orchestrator.node import LabNode

from ..orchestrator.conftest import FAST, MakeOrch, make_orch  # noqa: F401  (fixture)
from ..services.conftest import prod_environ
from ..support.polling import until

pytestmark = pytest.mark.root


def test_second_process_with_a_live_nodes_id_refuses_to_start(
        make_orch: MakeOrch, nats: NatsServer, tmp_path: Path, db_url: str) -> None:  # noqa: F811
    real = make_orch(FORGE_NODE_ID="shared")
    node = real.state.node
    assert node is not None and node.revision is not None
    instance = node.instance
    settings = load_settings(prod_environ(
        tmp_path / "storage", **nats.client_env(), FORGE_DB_URL=db_url,
        # Its own beat of 3 s makes it take a record for dead only after 9 s standing still:
        # the real node beats every 0.5 s, late by a second or two on a loaded machine.
        FORGE_NODE_ID="shared", FORGE_NODE_HEARTBEAT_S="3"))
    runtime = LocalRuntime(str(tmp_path / "runtime-impostor"), "imp" + str(time.time_ns() % 10))
    impostor = build_app(settings, runtime=runtime, consumer_options=FAST)
    try:
        with pytest.raises(NodeIdInUse, match="FORGE_NODE_ID shared is in use by a live node"), \
                TestClient(impostor):
            pass
    finally:
        runtime.close()
    # The real node is untouched: still registered as itself, still taking work.
    assert not node.fenced and node.instance == instance
    until(lambda: node.try_enter() and (node.leave() or True), "the real node open")


def test_a_node_whose_record_is_overwritten_fails_closed(make_orch: MakeOrch,  # noqa: F811
                                                         nats: NatsServer) -> None:
    real = make_orch(FORGE_NODE_ID="victim")
    node = real.state.node
    assert node is not None and node.try_enter()
    node.leave()

    async def overwrite() -> None:
        nc = await connect(nats.url, "rogue", credentials=nats.credentials("orchestrator"))
        try:
            registry = NodeRegistry(nc.jetstream, replicas=1, grace_s=15.0)
            nodes, _, _ = await registry.buckets()
            rogue = NodeRecord(node_id="victim", url="http://127.0.0.1:9", capacity_labs=9,
                               capacity_memory_mb=9, started_at=time.time(),
                               heartbeat_at=time.time(), instance="rogue")
            await nodes.put("node.victim", rogue.model_dump_json().encode())
        finally:
            await nc.close()

    asyncio.run(overwrite())
    until(lambda: node.fenced, "the node fenced itself")
    assert not node.try_enter() and not node.leader
    assert not LabNode.open(node)
