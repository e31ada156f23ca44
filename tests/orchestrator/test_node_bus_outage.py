"""A bus outage (or a JetStream failover) longer than the grace period fails no live node.

While NATS is away no node can heartbeat, so when it is back every record is stale. The
first node to regain the sweeper lease must not judge the others lost at once: it first
watches the records for a grace period, in which live nodes heartbeat again. Found by the
scale-out end-to-end drill (a killed stream leader made a healthy node's labs fail "lost").

A real orchestrator node n1 and a real nats-server (stopped, then started on its port and
store); node n2 is the test itself heartbeating through the same KV registry, so it can
stand for a node that gets its first heartbeat through a second after n1 is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from forge.bus import NatsServer
from forge.bus.connection import BusConnection
from forge.bus.nodes import NodeRecord, NodeRegistry
from forge.lifecycle import states
from forge.store.models import Scenario

from ..support.polling import until
from .conftest import MakeOrch
from .test_nodes import GRACE

# A longer grace than the other node tests: n2's heartbeats must come back within it after
# the outage even on a loaded machine (a connect can take a second or two there).
OUTAGE_GRACE = {**GRACE, "FORGE_NODE_GRACE_S": "5"}  # (the same as GRACE now)
GRACE_S = float(OUTAGE_GRACE["FORGE_NODE_GRACE_S"])


def heartbeat_n2(nats: NatsServer, wait: float = 5.0) -> None:
    """One heartbeat of node n2 (registers it, or re-registers after its record lapsed)."""
    async def beat() -> None:
        conn = BusConnection(nats.url, "test-n2", credentials=nats.credentials("orchestrator"))
        assert await conn.start(wait=wait)
        try:
            registry = NodeRegistry(conn.jetstream, replicas=1, grace_s=GRACE_S)
            now = time.time()
            record = NodeRecord(node_id="n2", url="http://127.0.0.1:9", capacity_labs=1,
                                capacity_memory_mb=512, started_at=now, heartbeat_at=now,
                                instance="test-n2")
            await registry.claim(record, heartbeat_s=0.5)
        finally:
            await conn.close()
    asyncio.run(beat())


# The behaviour is the bus's and the lease's, not the SQL engine's: SQLite only.
@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_a_bus_outage_longer_than_the_grace_fails_no_live_node(
        make_orch: MakeOrch, nats: NatsServer) -> None:
    n1 = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600, **OUTAGE_GRACE)
    node = n1.state.node
    assert node is not None
    until(lambda: node.leader, "n1 holds the lease")
    heartbeat_n2(nats)
    # From here n2 heartbeats like a live node: every 0.5 s, failing while the bus is away.
    stop = threading.Event()

    def keep_beating() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(Exception):
                heartbeat_n2(nats, wait=3.0)  # a connect may take a second or two here

    beater = threading.Thread(target=keep_beating, daemon=True)
    try:
        _outage_and_back(n1, node, nats, beater)
    finally:
        stop.set()
        beater.join(timeout=30)


def _outage_and_back(n1: Any, node: Any, nats: NatsServer, beater: threading.Thread) -> None:
    sid = "scn-" + secrets.token_hex(8)
    now = datetime.now(UTC)
    with n1.state.ctx.db.session() as sess:  # a live lab held by n2
        sess.add(Scenario(scenario_id=sid, request_id="r", tenant_id="acme", subject="alice",
                          track="netplus", template_id="lab-netplus", template_sha256="0" * 64,
                          plan="PRO", retention_days=30, state=states.RUNNING,
                          state_reason="x", sat_jti=None, et_jti=None, created_at=now,
                          updated_at=now, expires_at=None, details={}, node_id="n2"))

    nats.stop()
    beater.start()
    time.sleep(GRACE_S + 1)  # the outage outlasts the grace period: every record goes stale
    nats.start()
    until(lambda: node.leader, "n1 back with the lease", timeout_s=30)
    # n1 swept as it took the lease back (the old code failed n2's lab right here); n2's
    # heartbeats resume on their own, well within a grace period of the bus.
    until(node.may_judge_loss, "n1 watched the records for a grace period", timeout_s=30)
    time.sleep(1.0)  # two more sweeps
    assert n1.row(sid).state == states.RUNNING, n1.row(sid).state_reason
