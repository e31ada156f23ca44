"""A state store restored from a backup made while a scenario was being graded: its row
says `grading`, but the lab is gone and the result was published (the learner holds a
signed verdict) and the audit log records the scenario completed. Resumed, it is recorded
completed again, with the logged reason and no second audit entry; before, it was failed
("the lab was lost during grading; no result was recorded") and its audit log gained a
grading -> failed after its completion. The same for a backup made while the lab ran: the
restart's reconciliation failed it as "lab was lost while the orchestrator was down". A
real lab, bus and store, on both engines."""

from __future__ import annotations

import json

from sqlalchemy import text

from forge.audit.log import scenario_log
from forge.lifecycle import states

from .conftest import OPERATOR, MakeOrch, Orch, running_lab


def _moves(orch: Orch, sid: str) -> list[tuple[str, str]]:
    lines = scenario_log(orch.settings.storage_root, sid).read_bytes().decode().splitlines()
    entries = [json.loads(line) for line in lines]
    return [(e["data"]["from"], e["data"]["to"]) for e in entries
            if e["event"] == "scenario.state"]


def _restore_row(orch: Orch, sid: str, state: str, reason: str) -> None:
    """The backup's row and history: taken when the scenario was in ``state``."""
    later = {"running": ("grading", "completed"), "grading": ("completed",)}[state]
    with orch.state.ctx.db.session() as sess:
        sess.execute(text("UPDATE scenarios SET state = :state, state_reason = :reason "
                          "WHERE scenario_id = :sid"),
                     {"sid": sid, "state": state, "reason": reason})
        for to in later:
            sess.execute(text("DELETE FROM scenario_transitions WHERE scenario_id = :sid "
                              "AND to_state = :to"), {"sid": sid, "to": to})


def test_a_grading_the_restored_store_forgot_is_completed_not_failed(orch: Orch) -> None:
    sid = running_lab(orch, timeout=60)
    with orch.client() as client:
        done = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert done.json()["state"] == states.COMPLETED
    graded = orch.row(sid).state_reason
    moves = _moves(orch, sid)
    # The backup's row: taken after `grading` was recorded, before `completed` was.
    _restore_row(orch, sid, "grading", "submitted")
    with orch.client() as client:
        resumed = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert resumed.json()["state"] == states.COMPLETED, resumed.text
    row = orch.row(sid)
    assert (row.state, row.state_reason) == (states.COMPLETED, graded)
    assert _moves(orch, sid) == moves  # the log kept its one completion, nothing after


def test_a_lab_that_ran_in_the_restored_store_is_completed_at_the_restart(
        make_orch: MakeOrch) -> None:
    orch = make_orch()
    sid = running_lab(orch, timeout=60)
    with orch.client() as client:
        assert client.post(f"/internal/scenarios/{sid}/complete",
                           headers=OPERATOR).json()["state"] == states.COMPLETED
    graded, moves = orch.row(sid).state_reason, _moves(orch, sid)
    orch.stop()
    _restore_row(orch, sid, "running", "lab running")  # the backup: made while it ran
    again = make_orch()  # the same node, restarted on the restored store
    row = again.wait_state(sid, states.COMPLETED, states.FAILED, timeout=60)
    assert (row.state, row.state_reason) == (states.COMPLETED, graded)
    assert _moves(again, sid) == moves
    with again.state.ctx.db.session() as sess:
        history = sess.execute(text("SELECT to_state FROM scenario_transitions WHERE "
                                    "scenario_id = :sid ORDER BY id"), {"sid": sid}).all()
    assert [h[0] for h in history][-2:] == ["grading", "completed"]
