"""Operators get any scenario out of any state: fail, regrade, destroy (endpoint and CLI),
each audited; and a scenario left in `grading` or `launching` is resumed, never stuck."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from forge.audit.log import scenario_log
from forge.lifecycle import states
from forge.lifecycle.store import move
from forge.runtime.local import LocalRuntime

from ..services.conftest import prod_environ
from .conftest import OPERATOR, Orch, running_lab

SPAWN = "forge.spawn.requested"


def _labs(orch: Orch) -> set[str]:
    return {info.lab_id for info in orch.runtime.list()}


def _audited(orch: Orch, sid: str, action: str) -> bool:
    text = scenario_log(orch.settings.storage_root, sid).read_bytes().decode()
    return '"operator.action"' in text and f'"action":"{action}"' in text


def test_fail_ends_a_running_lab_with_the_reason_and_audits_it(orch: Orch) -> None:
    sid = running_lab(orch, timeout=60)
    with orch.client() as client:
        assert client.post(f"/v1/admin/scenarios/{sid}/fail").status_code == 401
        # A reason that is not printable text is refused before anything is done (a NUL was
        # a 500 on PostgreSQL after the lab was torn down, the row left running).
        bad = client.post(f"/v1/admin/scenarios/{sid}/fail", headers=OPERATOR,
                          json={"reason": "x\u0000y"})
        assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "reason"
        assert orch.row(sid).state == states.RUNNING and sid in _labs(orch)
        resp = client.post(f"/v1/admin/scenarios/{sid}/fail", headers=OPERATOR,
                           json={"reason": "learner reported a broken lab"})
        again = client.post(f"/v1/admin/scenarios/{sid}/fail", headers=OPERATOR)
        missing = client.post("/v1/admin/scenarios/scn-0000000000000000/fail",
                              headers=OPERATOR)
    assert resp.status_code == 200 and resp.json()["state"] == states.FAILED
    assert again.json()["state"] == states.FAILED  # idempotent on a finished scenario
    assert missing.status_code == 404
    row = orch.row(sid)
    assert row.state == states.FAILED and "broken lab" in row.state_reason
    assert sid not in _labs(orch)
    assert _audited(orch, sid, "fail")


def test_a_scenario_stuck_in_grading_is_regraded_or_failed(orch: Orch) -> None:
    sid = running_lab(orch, timeout=60)
    # What a crash right after `grading` leaves: the state, no result, the lab still up.
    move(orch.state.ctx.db, orch.settings.storage_root, sid, states.GRADING, "submitted")
    with orch.client() as client:
        resp = client.post(f"/v1/admin/scenarios/{sid}/regrade", headers=OPERATOR)
    assert resp.status_code == 200 and resp.json()["state"] == states.COMPLETED
    # Published: the stored completion has done its job and is discarded with the evidence.
    assert not (orch.settings.storage_root / "scenarios" / sid / "completion.json").exists()
    assert sid not in _labs(orch)
    assert _audited(orch, sid, "regrade")

    lost = running_lab(orch, timeout=60)
    move(orch.state.ctx.db, orch.settings.storage_root, lost, states.GRADING, "submitted")
    orch.runtime.destroy(lost)  # the lab died with the crash
    with orch.client() as client:
        resp = client.post(f"/internal/scenarios/{lost}/complete", headers=OPERATOR)
    assert resp.json()["state"] == states.FAILED
    assert "lost during grading" in orch.row(lost).state_reason


def test_destroy_from_the_cli_removes_the_lab_whatever_the_state(orch: Orch) -> None:
    sid = running_lab(orch, timeout=60)
    move(orch.state.ctx.db, orch.settings.storage_root, sid, states.GRADING, "submitted")
    env = {**os.environ, **prod_environ(orch.settings.storage_root, FORGE_DB_URL=orch.settings.db_url),
           "ORCHESTRATOR_URL": orch.url}
    out = subprocess.run([sys.executable, "-m", "forge", "scenarios", "destroy", sid,
                          "--reason", "stuck"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"{sid}: destroy -> failed" in out.stdout  # grading has no way to `deleted`
    assert sid not in _labs(orch)
    bad = subprocess.run([sys.executable, "-m", "forge", "scenarios", "fail", "nope"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "scenario_id: expected scn-" in bad.stderr
    unknown = subprocess.run([sys.executable, "-m", "forge", "scenarios", "fail",
                              "scn-0123456789abcdef"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert unknown.returncode == 1 and "404" in unknown.stderr


@pytest.mark.root
def test_a_scenario_left_in_grading_whose_hosts_died_is_failed_as_lost(orch: Orch) -> None:
    # A power cut mid-grading: every process of the lab died with the machine, its
    # namespaces and state stayed. The regrade met "host … is not running" and failed the
    # scenario as "grading failed (the error is recorded for the operator)", where the
    # runbook's table says "the lab was lost during grading".
    sid = running_lab(orch, timeout=60)
    move(orch.state.ctx.db, orch.settings.storage_root, sid, states.GRADING, "submitted")
    runtime = orch.runtime
    assert isinstance(runtime, LocalRuntime)
    runtime.cgroups.signal_all(runtime.names.lab(sid))
    deadline = time.monotonic() + 30
    while [i.state for i in runtime.list() if i.lab_id == sid] != ["degraded"]:
        assert time.monotonic() < deadline, "the lab's processes did not die"
        time.sleep(0.05)
    with orch.client() as client:
        resp = client.post(f"/internal/scenarios/{sid}/complete", headers=OPERATOR)
    assert resp.json()["state"] == states.FAILED
    row = orch.row(sid)
    assert (row.state_reason or "").startswith("the lab was lost during grading")
    assert "LabNotFound" in row.details["error"]
    assert sid not in _labs(orch)
