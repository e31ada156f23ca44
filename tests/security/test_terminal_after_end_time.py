"""Attack: keep typing answers into a lab after its end time, and have them graded.

A lab past its end time stays `running` until the reaper's next round grades it (every few
seconds, and one lab after another: a class whose labs end together waits for every grading
before its own). The task checks refused such a lab ("reached its end time"), but its
terminals did not: a learner reopened a shell, or kept the one they had, typed the answer
after the end, and the `expired` verdict counted it (reproduced on a live stack: answer
typed 0.2 s after the end, graded 3.4 s after it, criterion passed). Now the orchestrator
refuses a terminal for a lab past its end time, and closes the attached ones when the end
time comes (`lab_not_running` / 4409, final in the learner's page).

Real spawn_service + orchestrator (uvicorn), nats-server, SQLite and the local lab runtime.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forge.store.models import Scenario

from .test_terminal_cap import Lab, attached_frame, closed_with, lab, round_trip  # noqa: F401

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("sqlite_only_store")]
NOT_RUNNING_CODE = 4409


def _ends_at(lab: Lab, sid: str, when: datetime) -> None:  # noqa: F811
    """Move the lab's end time (as if its clock had reached it)."""
    with lab.orch.ctx.db.session() as sess:
        row = sess.get(Scenario, sid)
        assert row is not None
        row.expires_at = when


def test_a_terminal_is_refused_after_the_end_time(lab: Lab) -> None:  # noqa: F811
    headers = lab.learner("late-opener")
    sid = lab.spawn_running(headers)
    _ends_at(lab, sid, datetime.now(UTC) - timedelta(seconds=1))
    with lab.open(sid, headers) as ws:
        control, code, reason = closed_with(ws)
    assert control["error"] == "lab_not_running" and code == NOT_RUNNING_CODE
    assert "reached its end time" in control["message"] and reason == control["message"]
    assert lab.held(sid) == 0


def test_an_open_terminal_closes_at_the_end_time(lab: Lab) -> None:  # noqa: F811
    headers = lab.learner("late-typer")
    sid = lab.spawn_running(headers)
    # Ends a little later: the shell opens and works before it, then is closed at it.
    _ends_at(lab, sid, datetime.now(UTC) + timedelta(seconds=10))
    with lab.open(sid, headers) as ws:
        assert attached_frame(ws)["new"] is True
        round_trip(ws, "before-the-end")
        control, code, _ = closed_with(ws)
    assert control["error"] == "lab_not_running" and code == NOT_RUNNING_CODE
    lab.wait_held(sid, 0)
    with lab.open(sid, headers) as again:  # and it does not open again
        control, code, _ = closed_with(again)
    assert control["error"] == "lab_not_running" and code == NOT_RUNNING_CODE
