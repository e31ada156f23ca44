"""A stop of the orchestrator that cuts a start short every time it is tried
(``StoppedMidway``: the runtime's restarts ran out) is never recorded as the outcome: a
grading stays in ``grading`` with its lab and is graded again, a launch stays
``launching`` and the next start builds it, a learner's task check answers 503 and gives
no result. The real orchestrator and runtime; only the runtime call the stop caught is
made to raise (``tests/runtime/test_stop_signal.py`` drives the signal itself)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from forge.runtime.local.restarts import StartCutShort

from .conftest import OPERATOR, MakeOrch, Orch, collect, spawn_event

SPAWN = "forge.spawn.requested"


def cut_short_once(monkeypatch: pytest.MonkeyPatch, orch: Orch, method: str) -> list[int]:
    """Make the runtime's ``method`` raise as a stop exhausting its restarts would, the
    first time only; returns the list of calls (one item per call)."""
    real: Callable[..., Any] = getattr(orch.runtime, method)
    calls: list[int] = []

    def once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StartCutShort(f"runtime.{method}", signal.SIGTERM, 5)
        return real(*args, **kwargs)

    monkeypatch.setattr(orch.runtime, method, once)
    return calls


def running(orch: Orch) -> str:
    event = spawn_event(orch.settings)
    orch.publish(SPAWN, event)
    orch.wait_state(event["scenario_id"], "running")
    return str(event["scenario_id"])


def test_a_grading_cut_short_stays_grading_and_is_graded_again(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = running(orch)
    secret = orch.row(sid).details["variables"]["secret"]
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > /workspace/answer.txt")
    cut_short_once(monkeypatch, orch, "run_check")
    with orch.client() as client:
        first = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
        assert first.status_code == 200 and first.json()["state"] == "grading", first.text
        row = orch.row(sid)
        assert row.state == "grading" and "failed" not in (row.state_reason or "")
        assert sid in {i.lab_id for i in orch.runtime.list()}  # kept for the next grading
        again = client.post(f"/v1/admin/scenarios/{sid}/regrade", headers=OPERATOR,
                            json={"reason": "after the restart"})
        assert again.status_code == 200 and again.json()["state"] == "completed", again.text
    done = asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 1))
    assert len(done) == 1  # one verdict: the cut-short grading published nothing
    by_criterion = {r["criterion_id"]: r["passed"] for r in done[0]["results"]}
    assert by_criterion["saved-page"] is True  # the learner's work, graded in full


def test_a_task_check_cut_short_is_a_503_not_a_result(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = running(orch)
    calls = cut_short_once(monkeypatch, orch, "run_check")
    with orch.client() as client:
        cut = client.post(f"/internal/scenarios/{sid}/checks/saved-page", headers=OPERATOR)
        assert cut.status_code == 503, cut.text
        assert cut.json()["error"] == "service_stopping"
        assert cut.headers["retry-after"] == "5" and "criterion" in cut.json()["message"]
        later = client.post(f"/internal/scenarios/{sid}/checks/saved-page", headers=OPERATOR)
        assert later.status_code == 200 and later.json()["passed"] is False  # not solved
    assert len(calls) >= 2 and orch.row(sid).state == "running"


def test_a_launch_cut_short_stays_launching_and_the_next_start_builds_it(
        make_orch: MakeOrch, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_orch(reaper_interval_s=3600)
    calls = cut_short_once(monkeypatch, first, "create")
    event = spawn_event(first.settings)
    sid = str(event["scenario_id"])
    first.publish(SPAWN, event)
    deadline = time.monotonic() + 20
    while not calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls, "the launch never reached the runtime"
    time.sleep(0.5)  # what the orchestrator does with the error happens now
    row = first.row(sid)
    assert row.state == "launching", (row.state, row.state_reason)
    assert first.runtime.list() == []  # nothing half-built
    first.stop()  # the stop that cut it short ends; the next start resumes the launch
    second = make_orch()
    row = second.wait_state(sid, "running", "failed", timeout=30)
    assert row.state == "running", row.state_reason
    assert row.details["launch_attempts"] == 2  # the first launch and this start's resume
