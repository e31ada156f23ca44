"""A state store restored from a backup made while a scenario was being graded: its row
says `grading`, but the lab is gone and the result was published (the learner holds a
signed verdict) and the audit log records the scenario completed. Resumed, it is recorded
completed again, with the logged reason and no second audit entry; before, it was failed
("the lab was lost during grading; no result was recorded") and its audit log gained a
grading -> failed after its completion. A real lab, bus and store, on both engines."""

from __future__ import annotations

import json

from sqlalchemy import text

from forge.audit.log import scenario_log
from forge.lifecycle import states

from .conftest import OPERATOR, Orch, running_lab


def _moves(orch: Orch, sid: str) -> list[tuple[str, str]]:
    lines = scenario_log(orch.settings.storage_root, sid).read_bytes().decode().splitlines()
    entries = [json.loads(line) for line in lines]
    return [(e["data"]["from"], e["data"]["to"]) for e in entries
            if e["event"] == "scenario.state"]


def test_a_grading_the_restored_store_forgot_is_completed_not_failed(orch: Orch) -> None:
    sid = running_lab(orch, timeout=60)
    with orch.client() as client:
        done = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert done.json()["state"] == states.COMPLETED
    graded = orch.row(sid).state_reason
    moves = _moves(orch, sid)
    # The backup's row: taken after `grading` was recorded, before `completed` was.
    with orch.state.ctx.db.session() as sess:
        sess.execute(text("UPDATE scenarios SET state = 'grading', state_reason = 'submitted' "
                          "WHERE scenario_id = :sid"), {"sid": sid})
    with orch.client() as client:
        resumed = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert resumed.json()["state"] == states.COMPLETED, resumed.text
    row = orch.row(sid)
    assert (row.state, row.state_reason) == (states.COMPLETED, graded)
    assert _moves(orch, sid) == moves  # the log kept its one completion, nothing after
