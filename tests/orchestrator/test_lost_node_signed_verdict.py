"""A lost node's scenario whose verdict is already signed is completed, not failed.

Operator drill (two nodes, node-2 with FORGE_CRASH_POINT=orchestrator.published: killed
between publishing its completion and recording `completed`, not restarted): the
scoreboard signed the verdict, and the lease holder then failed the scenario as `lab node
node-2 lost`; the learner saw `failed` beside a signed score. The sweep now completes a
`grading` scenario the scoreboard finalized, and still fails one it did not. Real
orchestrators, runtime and nats-server; the lost node's moves are made as it makes them
and the scoreboard's finalization as it records it.
"""

from __future__ import annotations

import json
import time

from forge.audit.log import scenario_log_path
from forge.lifecycle import states
from forge.lifecycle.store import history, move
from forge.lifecycle.wanted_delete import want_delete
from forge.services.orchestrator.node import lost_deleted_reason, lost_reason
from forge.services.orchestrator.sweeper import graded_before_loss_reason
from forge.store.finalized_audits import record_finalized_audit

from .conftest import MakeOrch, running_lab

GRACE = {"FORGE_NODE_GRACE_S": "3"}


def test_a_lost_nodes_scenario_with_a_signed_verdict_is_completed(
        make_orch: MakeOrch) -> None:
    lost = make_orch(FORGE_NODE_ID="node-2", **GRACE)
    scored, unscored, deleted = running_lab(lost), running_lab(lost), running_lab(lost)
    db = lost.state.ctx.db
    for sid in (scored, unscored):  # submitted: node-2 grades both
        move(db, lost.settings.storage_root, sid, states.GRADING, "submitted",
             expected=states.RUNNING)
    record_finalized_audit(db, scored, "ab" * 32)  # the scoreboard signed that one's verdict
    lost.stop()  # node-2 is gone before it recorded either as completed
    assert want_delete(db, deleted)  # its learner's DELETE, node-2 not answering: kept
    survivor = make_orch(FORGE_NODE_ID="node-1", **GRACE)
    deadline = time.monotonic() + 60  # bounded: grace period, then the lease holder's sweep
    while {survivor.row(s).state for s in (scored, unscored, deleted)} & {
            states.GRADING, states.RUNNING}:
        assert time.monotonic() < deadline, "the lost node's scenarios were never swept"
        time.sleep(0.1)
    assert survivor.row(scored).state == states.COMPLETED
    assert survivor.row(scored).state_reason == graded_before_loss_reason("node-2")
    assert survivor.row(unscored).state == states.FAILED
    assert survivor.row(unscored).state_reason == lost_reason("node-2")
    assert survivor.row(deleted).state == states.DELETED
    assert survivor.row(deleted).state_reason == lost_deleted_reason("node-2")
    # its history and its audit log say so too
    assert [m["to"] for m in history(db, deleted)][-2:] == [states.RUNNING, states.DELETED]
    last = json.loads(scenario_log_path(survivor.settings.storage_root, deleted)
                      .read_text().splitlines()[-1])
    assert last["event"] == "scenario.state" and last["data"]["to"] == states.DELETED
