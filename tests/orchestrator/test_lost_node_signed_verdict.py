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
import secrets
import time
from datetime import UTC, datetime

from forge.audit.log import scenario_log_path
from forge.classroom.attempts import counts
from forge.lifecycle import states
from forge.lifecycle.store import history, move
from forge.lifecycle.wanted_delete import want_delete
from forge.services.orchestrator.node import lost_deleted_reason, lost_reason
from forge.services.orchestrator.sweeper import graded_before_loss_reason
from forge.store.finalized_audits import record_finalized_audit
from forge.store.models import Scenario

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
    # A launch node-2 never finished, its delete kept too: it never ran, so it must fail
    # as lost and use no attempt (`deleted`, it took the learner's only one).
    launching = "scn-" + secrets.token_hex(8)
    now = datetime.now(UTC)
    with db.session() as sess:
        sess.add(Scenario(scenario_id=launching, request_id="r-" + launching,
                          tenant_id="acme", subject="alice", track="netplus",
                          template_id="lab-netplus", template_sha256="0" * 64, plan="PRO",
                          retention_days=30, state=states.LAUNCHING, created_at=now,
                          updated_at=now, details={}, node_id="node-2"))
    assert want_delete(db, launching)
    survivor = make_orch(FORGE_NODE_ID="node-1", **GRACE)
    deadline = time.monotonic() + 60  # bounded: grace period, then the lease holder's sweep
    while {survivor.row(s).state for s in (scored, unscored, deleted, launching)} & {
            states.GRADING, states.RUNNING, states.LAUNCHING}:
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
    assert survivor.row(launching).state == states.FAILED
    assert survivor.row(launching).state_reason == lost_reason("node-2")
    assert not counts(survivor.row(launching).state, ran=False)  # its attempt given back
