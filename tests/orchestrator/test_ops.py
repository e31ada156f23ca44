"""The runbook's "restart NATS subscriber", as an endpoint and as `forge nats restart-subscriber`."""

from __future__ import annotations

import os
import subprocess
import sys

from ..services.conftest import prod_environ
from .conftest import OPERATOR, Orch


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
