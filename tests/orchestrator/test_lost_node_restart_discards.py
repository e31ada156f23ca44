"""A lab node killed mid-grading and judged lost keeps none of that scenario's raw evidence
once it is started again. An operator drill (two nodes; `kill -9` of one right after a
submit, restarted past FORGE_NODE_GRACE_S): the lease holder failed the scenario as `lab
node node-2 lost`, the restarted node destroyed its lab at reconciliation, and the
learner's check outputs (`scenarios/<id>/evidence/`) stayed on the node for good: the
scenario is final and has no results, so neither the node nor retention ever removed
them. Only the node that came back by its heartbeat (not restarted) discarded them.
Real orchestrator, runtime and nats-server; the lease holder's move is made as the
sweeper makes it, and the files are those a grading killed mid-way leaves."""

from __future__ import annotations

import time

from forge.lifecycle import states
from forge.lifecycle.store import move
from forge.services.orchestrator.node import lost_reason

from .conftest import MakeOrch, running_lab


def test_a_restarted_node_discards_what_it_kept_of_a_scenario_failed_as_lost(
        make_orch: MakeOrch) -> None:
    orch = make_orch(FORGE_NODE_ID="node-2")
    sid = running_lab(orch)
    node_dir = orch.settings.storage_root / "scenarios" / sid
    (node_dir / "evidence").mkdir(mode=0o700)
    (node_dir / "evidence" / "find-server.0.stdout").write_text("the learner's output\n")
    recordings = node_dir / "recordings"
    recordings.mkdir(mode=0o700, exist_ok=True)
    (recordings / "learner.0.cast").write_text('{"version": 2}\n')
    orch.stop()  # killed: its lab stays
    move(orch.state.ctx.db, orch.settings.storage_root, sid, states.FAILED,
         lost_reason("node-2"), expected=states.RUNNING, details={"lost_node": "node-2"})
    again = make_orch(FORGE_NODE_ID="node-2")  # the same node started again
    deadline = time.monotonic() + 30
    while sid in {i.lab_id for i in again.runtime.list()} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sid not in {i.lab_id for i in again.runtime.list()}
    assert not (node_dir / "evidence").exists()
    assert not recordings.exists()
    assert (node_dir / "audit.jsonl").exists()  # the scenario's log is kept
    assert again.row(sid).state == states.FAILED
