"""The runbook's "restart NATS subscriber", as an endpoint and as `forge nats restart-subscriber`."""

from __future__ import annotations

import os
import subprocess
import sys

from ..services.conftest import prod_environ
from .conftest import OPERATOR, MakeOrch, Orch


def test_restart_subscriber_endpoint(orch: Orch) -> None:
    with orch.client() as client:
        assert client.post("/v1/admin/nats/restart-subscriber").status_code == 401
        resp = client.post("/v1/admin/nats/restart-subscriber", headers=OPERATOR)
    assert resp.status_code == 200
    assert resp.json()["restarted"] == {"orchestrator-spawn": True, "orchestrator-submit": True,
                                        "orchestrator-submit-node-1": True}
    assert all(c.status()["restarts"] == 1 for c in orch.state.consumers)


def test_restart_subscriber_cli(orch: Orch) -> None:
    env = {**os.environ, **prod_environ(orch.settings.storage_root, FORGE_DB_URL=orch.settings.db_url),
           "ORCHESTRATOR_URL": orch.url}
    ok = subprocess.run([sys.executable, "-m", "forge", "nats", "restart-subscriber",
                         "--service", "orchestrator"], env=env, capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "orchestrator-spawn connected" in ok.stdout
    env["SCOREBOARD_URL"] = "http://127.0.0.1:9"  # nothing listens there
    down = subprocess.run([sys.executable, "-m", "forge", "nats", "restart-subscriber",
                           "--service", "scoreboard"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert down.returncode == 1 and "unreachable" in down.stderr


def test_restart_subscriber_skips_a_node_that_stopped(make_orch: MakeOrch) -> None:
    # A node stopped cleanly keeps its record, marked "stopped", for the grace period: it
    # runs no subscriber to restart. The command restarts the live nodes only (`forge nodes
    # list` "alive"), sends nothing to the stopped one's URL and succeeds.
    grace = {"FORGE_NODE_GRACE_S": "600"}
    n1 = make_orch(FORGE_NODE_ID="n1", **grace)
    n2 = make_orch(FORGE_NODE_ID="n2", **grace)
    n2.stop()
    with n1.client() as client:
        listed = client.get("/v1/admin/nodes", headers=OPERATOR).json()["items"]
    assert {i["node_id"]: i["state"] for i in listed} == {"n1": "alive", "n2": "stopped"}
    env = {**os.environ, **prod_environ(n1.settings.storage_root,
                                        FORGE_DB_URL=n1.settings.db_url),
           "ORCHESTRATOR_URL": n1.url}
    done = subprocess.run([sys.executable, "-m", "forge", "nats", "restart-subscriber",
                           "--service", "orchestrator"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "orchestrator-submit-n1 connected" in done.stdout, done.stdout
    assert "n2" not in done.stdout + done.stderr, done.stdout + done.stderr
