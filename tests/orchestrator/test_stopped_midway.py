"""A stop of the orchestrator that cuts a start short every time it is tried
(``StoppedMidway``: the runtime's restarts ran out) is never recorded as the outcome: a
grading stays in ``grading`` with its lab and is graded again, a launch stays
``launching`` and the next start builds it, a learner's task check answers 503 and gives
no result. The real orchestrator and runtime; only the runtime call the stop caught is
made to raise (``tests/runtime/test_stop_signal.py`` drives the signal itself)."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

import nats
import pytest

from forge.evidence.artifact_store import discard_raw_evidence
from forge.grading.live_record import record_path
from forge.grading.runner import grade
from forge.lifecycle import store as lifecycle_store
from forge.lifecycle.store import history
from forge.lifecycle.wanted_delete import want_delete
from forge.runtime import RuntimeFault, StoppedMidway
from forge.runtime.local.restarts import StartCutShort
from forge.services.orchestrator import launch_build
from forge.templates.variables import render

from .conftest import OPERATOR, MakeOrch, Orch, collect, spawn_event, stop_after_seal

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
    with pytest.raises(nats.errors.TimeoutError):  # one verdict: the cut-short run had none
        asyncio.run(collect(orch.nats.admin_url, "forge.scenario.completed", 2, timeout=1))
    by_criterion = {r["criterion_id"]: r["passed"] for r in done[0]["results"]}
    assert by_criterion["saved-page"] is True  # the learner's work, graded in full


def test_a_task_check_cut_short_is_a_503_not_a_result(
        orch: Orch, monkeypatch: pytest.MonkeyPatch) -> None:
    sid = running(orch)
    calls = cut_short_once(monkeypatch, orch, "run_check")
    with orch.client() as client:
        # The launch may still hold the lab a moment after the store says running (it
        # announces the lab under its lock): a refusal as busy runs no check, so ask again.
        deadline = time.monotonic() + 30
        while (cut := client.post(f"/internal/scenarios/{sid}/checks/saved-page",
                                  headers=OPERATOR)).status_code == 409:
            assert cut.json()["error"] == "lab_busy" and time.monotonic() < deadline, cut.text
            time.sleep(0.05)
        assert cut.status_code == 503, cut.text
        assert cut.json()["error"] == "service_stopping"
        assert cut.headers["retry-after"] == "5" and "criterion" in cut.json()["message"]
        later = client.post(f"/internal/scenarios/{sid}/checks/saved-page", headers=OPERATOR)
        assert later.status_code == 200 and later.json()["passed"] is False  # not solved
    assert len(calls) >= 2 and orch.row(sid).state == "running"


def test_a_launch_cut_short_stays_launching_and_the_next_start_builds_it(
        make_orch: MakeOrch, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    first = make_orch(reaper_interval_s=3600)
    calls = cut_short_once(monkeypatch, first, "create")
    event = spawn_event(first.settings)
    sid = str(event["scenario_id"])
    with caplog.at_level(logging.INFO, logger="forge.orchestrator.launch"):
        first.publish(SPAWN, event)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(  # the error has been handled
                sid in r.getMessage() and "restart resumes" in r.getMessage()
                for r in caplog.records):
            time.sleep(0.05)
    assert calls, "the launch never reached the runtime"
    assert any("restart resumes" in r.getMessage() for r in caplog.records), "not handled"
    row = first.row(sid)
    assert row.state == "launching", (row.state, row.state_reason)
    assert first.runtime.list() == []  # nothing half-built
    first.stop()  # the stop that cut it short ends; the next start resumes the launch
    # Its learner deletes it while the next start finishes the build: the node does not
    # answer, so spawn_service keeps the delete on the row (`want_delete`, what its DELETE
    # route does then), here just before the move to running. Its deadline, read before
    # that move, was written over the kept one: the lab ran until it and was graded.
    real_move = lifecycle_store.record_move
    kept: list[bool] = []

    def delete_lands_first(db: Any, scenario_id: str, target: str, *args: Any,
                           **kwargs: Any) -> Any:
        if scenario_id == sid and target == "running":
            kept.append(want_delete(db, sid))
        return real_move(db, scenario_id, target, *args, **kwargs)

    monkeypatch.setattr(lifecycle_store, "record_move", delete_lands_first)
    monkeypatch.setattr(launch_build, "record_move", delete_lands_first, raising=False)
    second = make_orch()
    row = second.wait_state(sid, "deleted", "failed", timeout=30)
    assert row.state == "deleted" and row.state_reason == "deleted on request"
    assert row.details["launch_attempts"] == 2  # the first launch and this start's resume
    assert kept == [True]
    # Built (the next start resumes the launch), then deleted without grading: it ran
    # until its deadline and was graded though its learner had deleted it.
    assert [m["to"] for m in history(second.state.ctx.db, sid)][-2:] == ["running", "deleted"]
    assert second.runtime.list() == []


def with_live_check(template: Any) -> Any:
    """``template`` with the first check of its first criterion made live."""
    first, *rest = template.spec.success_criteria
    checks = [first.checks[0].model_copy(update={"live": True}), *first.checks[1:]]
    criteria = [first.model_copy(update={"checks": checks}), *rest]
    return template.model_copy(update={
        "spec": template.spec.model_copy(update={"success_criteria": criteria})})


@pytest.mark.parametrize("live", [False, True], ids=["no-live-checks", "live-checks"])
def test_a_lab_sealed_by_a_grading_that_kept_nothing_is_graded_again_only_without_live_checks(
        orch: Orch, tmp_path: Any, live: bool) -> None:
    """A lab sealed by a grading that kept no live outcomes (one of the earlier release,
    cut off after its seal) is graded again; its live checks would find the learner's
    processes killed (FAILs not earned, in a signed verdict): with live checks that
    grading fails instead."""
    sid = running(orch)
    secret = orch.row(sid).details["variables"]["secret"]
    orch.runtime.exec(sid, "learner", shell=f"echo 'token {secret}' > /workspace/answer.txt")
    template = render(orch.state.registry.get("lab-netplus").template,
                      orch.row(sid).details["variables"])
    template = with_live_check(template) if live else template
    assert orch.runtime.sealed(sid) is False
    orch.runtime.seal(sid)  # the grading that was cut off
    assert orch.runtime.sealed(sid) is True
    if live:
        with pytest.raises(RuntimeFault, match="kept no outcomes of its live checks"):
            grade(orch.runtime, sid, template, tmp_path / "evidence")
        return
    results = grade(orch.runtime, sid, template, tmp_path / "evidence")
    assert {r.criterion_id: r.passed for r in results}["saved-page"] is True


@pytest.mark.parametrize("live", [False, True], ids=["no-live-checks", "live-checks"])
def test_a_grading_stopped_after_the_seal_is_graded_again_with_its_kept_live_outcomes(
        orch: Orch, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, live: bool) -> None:
    """A stop that cuts the checks after the seal short leaves the grading to be done
    again (``StoppedMidway``), with or without live checks. Graded again, the sealed
    lab's live checks are not run again (they would find the learner's processes
    killed): their outcomes, and their evidence files, are the ones kept before the
    seal. A record for other checks is not used."""
    sid = running(orch)
    template = render(orch.state.registry.get("lab-netplus").template,
                      orch.row(sid).details["variables"])
    template = with_live_check(template) if live else template
    live_check = template.spec.success_criteria[0].checks[0]
    real_check = orch.runtime.run_check
    sealed = stop_after_seal(monkeypatch, orch)  # every check after the seal is cut short
    evidence = tmp_path / "evidence"
    with pytest.raises(StoppedMidway):
        grade(orch.runtime, sid, template, evidence)
    assert sealed == [sid]
    first = {p.name: p.read_bytes() for p in evidence.iterdir()}

    ran: list[list[str]] = []

    def counted(lab_id: str, host: str, argv: list[str], **kwargs: Any) -> Any:
        ran.append(argv)
        return real_check(lab_id, host, argv, **kwargs)

    monkeypatch.setattr(orch.runtime, "run_check", counted)
    results = grade(orch.runtime, sid, template, evidence)
    total = sum(len(c.checks) for c in template.spec.success_criteria)
    assert len(results) == total
    if not live:
        assert len(ran) == total
        return
    assert len(ran) == total - 1 and list(live_check.command) not in ran
    stem = f"{template.spec.success_criteria[0].id}.0"
    for stream in ("stdout", "stderr"):  # the evidence of the run before the seal
        name = f"{stem}.{stream}"
        assert (evidence / name).read_bytes() == first[name]
    # Kept for other checks (a changed template), the record is not used: no verdict.
    first_criterion = template.spec.success_criteria[0]
    changed = [live_check.model_copy(update={"timeout_seconds": live_check.timeout_seconds + 1}),
               *first_criterion.checks[1:]]
    other = template.model_copy(update={"spec": template.spec.model_copy(update={
        "success_criteria": [first_criterion.model_copy(update={"checks": changed}),
                             *template.spec.success_criteria[1:]]})})
    with pytest.raises(RuntimeFault, match="kept no outcomes"):
        grade(orch.runtime, sid, other, evidence)
    # The record is raw evidence: it goes when the node has published, as the rest does.
    assert record_path(evidence).exists()
    discard_raw_evidence(tmp_path)
    assert not record_path(evidence).exists() and not evidence.exists()


@pytest.mark.parametrize("live", [False, True], ids=["no-live-checks", "live-checks"])
def test_an_engine_that_cannot_tell_a_sealed_lab_fails_a_stopped_grading_with_live_checks(
        orch: Orch, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, live: bool) -> None:
    """An engine whose ``sealed`` cannot tell (None) would grade the lab again as if
    unsealed and run its live checks into FAILs nobody earned: with live checks, a stop
    after the seal fails the grading there; without, it stays a ``StoppedMidway``."""
    sid = running(orch)
    template = render(orch.state.registry.get("lab-netplus").template,
                      orch.row(sid).details["variables"])
    template = with_live_check(template) if live else template
    monkeypatch.setattr(orch.runtime, "sealed", lambda lab_id: None)
    stop_after_seal(monkeypatch, orch)
    with pytest.raises(RuntimeFault) as raised:
        grade(orch.runtime, sid, template, tmp_path / "evidence")
    assert isinstance(raised.value, StoppedMidway) is not live
