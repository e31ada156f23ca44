"""The orchestrator's `node` readiness check fails once its heartbeats have failed for
more than three intervals, naming the last error, and passes again once they succeed (a
connected client said nothing of that: the drill's node showed `lost` to every other one
while this check said ok). Real orchestrator and nats-server."""

from __future__ import annotations

from typing import Any

import pytest

from forge.bus import NatsServer

from ..support.polling import until
from .conftest import OPERATOR, MakeOrch, Orch

BEATS = {"FORGE_NODE_GRACE_S": "5", "FORGE_NODE_HEARTBEAT_S": "0.5"}


def node_check(orch: Orch) -> dict[str, Any]:
    with orch.client() as client:
        body = client.get("/readyz", headers=OPERATOR).json()
    return dict(body["checks"]["node"])


@pytest.mark.sqlite_only
@pytest.mark.parametrize("db_url", [pytest.param("sqlite", id="sqlite_only")], indirect=True)
def test_node_check_fails_while_heartbeats_fail(make_orch: MakeOrch, nats: NatsServer) -> None:
    orch = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600, **BEATS)
    node = orch.state.node
    assert node is not None
    until(lambda: node.last_beat_at is not None, "a heartbeat")
    assert node_check(orch)["ok"]
    nats.stop()
    try:
        until(lambda: not node_check(orch)["ok"], "the node check fails", timeout_s=30)
        detail = node_check(orch)["detail"]
        assert "heartbeats failing" in detail and "last error" in detail, detail
        assert node.beat_error is not None
    finally:
        nats.start()
    until(lambda: node_check(orch)["ok"], "the node check passes again", timeout_s=30)
    assert node.beat_error is None
