"""A grading that runs out of room (a full storage disk: ENOSPC) is not its outcome: the
lab, the learner's work, is kept, the scenario stays in ``grading`` and is graded again
once there is room. An outside drill filled the disk during a submit: the lab was torn
down, and a minute later the reaper failed the scenario with "the lab was lost during
grading". The real orchestrator and runtime; only the runtime call is made to raise, as
the kernel does on a full disk."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from .conftest import OPERATOR, Orch
from .test_stopped_midway import running


def test_a_grading_out_of_room_keeps_the_lab_and_is_graded_again(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = running(orch)
    secret = orch.row(sid).details["variables"]["secret"]
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > /workspace/answer.txt")
    real = orch.runtime.run_check
    calls: list[int] = []

    def full_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(orch.runtime, "run_check", full_once)
    with orch.client() as client:
        first = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
        assert first.status_code == 200 and first.json()["state"] == "grading", first.text
        row = orch.row(sid)
        assert row.state == "grading" and "failed" not in (row.state_reason or "")
        assert sid in {i.lab_id for i in orch.runtime.list()}  # the learner's work is kept
        again = client.post(f"/v1/admin/scenarios/{sid}/regrade", headers=OPERATOR,
                            json={"reason": "room made"})
        assert again.status_code == 200 and again.json()["state"] == "completed", again.text
    assert orch.row(sid).state == "completed"


def test_another_os_error_still_fails_the_grading(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = running(orch)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(orch.runtime, "run_check", broken)
    with orch.client() as client:
        first = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert first.status_code == 200 and first.json()["state"] == "failed", first.text
