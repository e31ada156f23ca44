"""Attack: submit after the lab's time is up and have it signed as an on-time submit.

A lab past its end time stays `running` until the reaper's next round grades it as
`expired`. spawn_service accepts a submit of a running lab, and the node graded whatever
reason the submit carried: on a live stack a submit made a second after the end time was
signed `completion_reason: submitted` (state `graded (submitted)`), as if handed in on
time. Now the node records the lab's expiry for a submit made after its end time, judged
by when the submit was made (a submit made in time and queued behind other gradings stays
`submitted`).

Real orchestrator (uvicorn), nats-server, the store and the local lab runtime.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from forge.audit.log import scenario_log
from forge.bus.contracts import ScenarioSubmitV1, payload
from forge.bus.subjects import node_submit_subject
from forge.store.models import Scenario

from ..orchestrator.conftest import MakeOrch, Orch, make_orch, running_lab  # noqa: F401

pytestmark = pytest.mark.root


def _submit(node: Orch, sid: str) -> None:
    row = node.row(sid)
    assert row.node_id is not None
    node.publish(node_submit_subject(row.node_id),
                 payload(ScenarioSubmitV1(scenario_id=sid, tenant_id=row.tenant_id,
                                          subject=row.subject)))


def _completed_reason(node: Orch, sid: str) -> str:
    lines = scenario_log(node.settings.storage_root, sid).read_bytes().splitlines()
    entries = [e for e in map(json.loads, lines) if e["event"] == "scenario.completed"]
    assert len(entries) == 1
    return str(entries[0]["data"]["reason"])


def test_a_submit_after_the_end_time_is_graded_as_the_labs_expiry(
        make_orch: MakeOrch) -> None:  # noqa: F811
    node = make_orch(reaper_interval_s=3600)  # the reaper's round has not come yet
    late, in_time = running_lab(node), running_lab(node)
    with node.state.ctx.db.session() as sess:
        row = sess.get(Scenario, late)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)  # still `running`
    _submit(node, late)
    _submit(node, in_time)
    for sid, reason in ((late, "expired"), (in_time, "submitted")):
        done = node.wait_state(sid, "completed", "failed", timeout=60)
        assert (done.state, done.state_reason) == ("completed", f"graded ({reason})")
        assert _completed_reason(node, sid) == reason
        # The submit's time is kept either way: spawn_service answers its retry as the
        # submit it is (`routes.grading_for_a_submit`), not as the reaper's expiry.
        assert isinstance((done.details or {}).get("submitted_at"), str), done.details
