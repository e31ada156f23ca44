"""A scenario failed by someone else while this node graded it publishes no verdict.

The lease holder fails every live lab of a node it judges lost (cut off from the bus for
longer than the grace period), `grading` ones included, and the learner is told so. That
node, back, finished its grading and published the signed verdict anyway: the learner
held a PASS for a scenario shown as failed, and the node's raw evidence stayed behind (the
scenario, final, is never resumed). Now the node reads the scenario before publishing:
failed meanwhile, its result is discarded unpublished. Real orchestrator, runtime and
nats-server; the lease holder's move is made as the sweeper makes it (`expected=grading`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest

from forge.lifecycle import states
from forge.lifecycle.store import move
from forge.services.orchestrator.node import lost_reason

from .conftest import OPERATOR, Orch, collect, spawn_event


@pytest.mark.parametrize("then", ["graded", "grading-fails"])
def test_a_scenario_failed_as_lost_while_graded_gets_no_verdict(
        orch: Orch, monkeypatch: pytest.MonkeyPatch, then: str) -> None:
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    orch.wait_state(sid, "running")
    secret = orch.row(sid).details["variables"]["secret"]
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > /workspace/answer.txt")
    real_seal = orch.runtime.seal

    def seal_while_judged_lost(lab_id: str) -> Any:
        # The lease holder's sweep, mid-grading (sweeper.fail_lost_nodes).
        move(orch.state.ctx.db, orch.settings.storage_root, sid, states.FAILED,
             lost_reason("node-gone"), expected=states.GRADING,
             details={"lost_node": "node-gone"})
        if then == "grading-fails":
            raise OSError("the lab's disk went away")
        return real_seal(lab_id)

    monkeypatch.setattr(orch.runtime, "seal", seal_while_judged_lost)
    with orch.client() as client:
        done = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert done.status_code == 200 and done.json()["state"] == "failed", done.text
    row = orch.row(sid)
    assert row.state == "failed" and row.state_reason == lost_reason("node-gone")
    with pytest.raises(nats.errors.TimeoutError):  # no verdict for a failed scenario
        asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1, timeout=2))
    node_dir = orch.settings.storage_root / "scenarios" / sid
    assert not (node_dir / "completion.json").exists() and not (node_dir / "evidence").exists()
    assert sid not in {i.lab_id for i in orch.runtime.list()}
