"""A submit keeps the time it was made: an instructor's "late" is judged by it, not by when
the lab's node got to grading it (a class submitting at the due time queues behind a few
gradings at a time; here the node is away for a while)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from forge.bus.contracts import ScenarioSubmitV1, payload
from forge.bus.subjects import node_submit_subject
from forge.store.models import ScenarioTransition
from forge.store.timestamps import aware

from .conftest import MakeOrch, running_lab

pytestmark = pytest.mark.root


def test_a_submit_that_waits_for_its_node_keeps_the_time_it_was_made(
        make_orch: MakeOrch) -> None:
    node = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600)
    sid = running_lab(node)
    row = node.row(sid)
    assert row.node_id == "n1"
    node.stop()  # busy or restarting: the submit waits on the bus
    submit = ScenarioSubmitV1(scenario_id=sid, tenant_id=row.tenant_id, subject=row.subject)
    before = datetime.now(UTC)
    node.publish(node_submit_subject("n1"), payload(submit))
    after = datetime.now(UTC)
    time.sleep(2)
    back = make_orch(FORGE_NODE_ID="n1", reaper_interval_s=3600)  # takes the submit up
    done = back.wait_state(sid, "completed", "failed", timeout=60)
    assert done.state == "completed", done.state_reason
    submitted = datetime.fromisoformat(done.details["submitted_at"])
    assert before - timedelta(seconds=1) <= submitted <= after + timedelta(seconds=1)
    with back.state.ctx.db.read() as sess:
        grading = sess.scalar(select(ScenarioTransition.at).where(
            ScenarioTransition.scenario_id == sid, ScenarioTransition.to_state == "grading"))
    assert grading is not None and aware(grading) - submitted >= timedelta(seconds=1.5)
