"""A grading that runs out of room (a full storage disk: ENOSPC) is not its outcome: the
lab, the learner's work, is kept, the scenario stays in ``grading`` and is graded again
once there is room. An outside drill filled the disk during a submit: the lab was torn
down, and a minute later the reaper failed the scenario with "the lab was lost during
grading". The real orchestrator and runtime; only the runtime call is made to raise, as
the kernel does on a full disk."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from forge.bus.contracts import ScenarioCompletedV1
from forge.evidence.artifact_store import COMPLETION_FILE
from forge.services.orchestrator import grade_lab
from forge.services.scoreboard.event_intake import check_recorded_completion
from forge.services.scoreboard.shipped import inline_pack, shipped_audit_log

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


def test_a_result_the_disk_cut_short_is_finished_as_its_audit_log_records(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk filled as the result was written, after the grading's `scenario.completed`
    audit entry. Before, the regrade ran the checks again and shipped their outputs (a
    curl's `Date:` header differs each run; here the answer file changes) beside a log
    whose entry records the first run's: the scoreboard refused the learner's verdict
    (`evidence_mismatch`, a security event) and no reprocess could score it."""
    sid = running(orch)
    secret = orch.row(sid).details["variables"]["secret"]
    answer = "/workspace/answer.txt"
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > {answer}")
    real = grade_lab.replace_file
    cut: list[str] = []

    def full_at_the_result(path: Path, data: bytes, **kwargs: Any) -> None:
        if path.name == COMPLETION_FILE and not cut:
            cut.append(path.name)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data, **kwargs)

    monkeypatch.setattr(grade_lab, "replace_file", full_at_the_result)
    published: list[ScenarioCompletedV1] = []
    real_publish = grade_lab.publish_event

    async def publish(publisher: Any, event: Any, **kwargs: Any) -> Any:
        published.append(event)
        return await real_publish(publisher, event, **kwargs)

    monkeypatch.setattr(grade_lab, "publish_event", publish)
    with orch.client() as client:
        first = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
        assert first.status_code == 200 and first.json()["state"] == "grading", first.text
        # What a check reads differs at the next run (as a served page's Date: header).
        # (written from the machine's side: the lab is sealed, no command runs in it)
        host_file = Path(orch.runtime.names.data_dir(sid, "learner"), "workspace", "answer.txt")
        host_file.write_text(f"token {secret} again\n")
        again = client.post(f"/v1/admin/scenarios/{sid}/regrade", headers=OPERATOR,
                            json={"reason": "room made"})
        assert again.status_code == 200 and again.json()["state"] == "completed", again.text
    assert cut and len(published) == 1
    event = published[0]
    pack = inline_pack(event)
    assert pack is not None
    check_recorded_completion(event, shipped_audit_log(pack), pack)  # the scoreboard's
    assert pack.audit_log.count(b'"event":"scenario.completed"') == 1
