"""A grading cut off after its seal is graded again with the live outcomes it kept before
the seal (`forge.grading.live_record`). A verdict must come only from outcomes that
grading produced for exactly the checks planned now: a record kept for other checks, one
missing a live check, or one that cannot be read gives no verdict (the grading fails,
with the reason), never a PASS the checks did not give. The real orchestrator and
runtime; only the stop after the seal is simulated (as in
``tests/orchestrator/test_stopped_midway.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from forge.grading.live_record import MAX_RECORD_BYTES, kept_live, live_digest, record_path
from forge.grading.runner import grade
from forge.runtime import RuntimeFault, StoppedMidway
from forge.templates.variables import render

from ..orchestrator.conftest import (  # noqa: F401  (fixture)
    MakeOrch,
    Orch,
    make_orch,
    spawn_event,
    stop_after_seal,
)


def _two_live_checks(template: Any) -> Any:
    """``template`` with two live checks in its first criterion: its first check made live,
    and a copy of it (its other criteria stay as they are, run after the seal)."""
    first, *rest = template.spec.success_criteria
    live = first.checks[0].model_copy(update={"live": True})
    checks = [live, live.model_copy(), *first.checks[1:]]
    criteria = [first.model_copy(update={"checks": checks}), *rest]
    return template.model_copy(update={
        "spec": template.spec.model_copy(update={"success_criteria": criteria})})


def _cut_after_seal(orch: Orch, monkeypatch: pytest.MonkeyPatch,
                    evidence: Path) -> tuple[str, Any]:
    """Spawn a lab and grade it, with two live checks, every check after the seal cut
    short; the lab id and the template graded."""
    event = spawn_event(orch.settings)
    sid = str(event["scenario_id"])
    orch.publish("forge.spawn.requested", event)
    orch.wait_state(sid, "running")
    template = _two_live_checks(render(orch.state.registry.get("lab-netplus").template,
                                       orch.row(sid).details["variables"]))
    real_check = orch.runtime.run_check
    stop_after_seal(monkeypatch, orch)
    with pytest.raises(StoppedMidway):
        grade(orch.runtime, sid, template, evidence)
    monkeypatch.setattr(orch.runtime, "run_check", real_check)
    return sid, template


def test_a_kept_record_missing_a_live_check_or_made_all_pass_by_another_digest_gives_no_verdict(
        make_orch: MakeOrch, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        tmp_path: Path) -> None:
    orch = make_orch()
    evidence = tmp_path / "evidence"
    sid, template = _cut_after_seal(orch, monkeypatch, evidence)
    path = record_path(evidence)
    body = json.loads(path.read_bytes())
    assert len(body["results"]) == 2 and not any(r["passed"] for r in body["results"])

    # One live outcome gone (a record cut short, or pruned to drop a FAIL): no verdict.
    path.write_text(json.dumps({**body, "results": body["results"][:1]}))
    with pytest.raises(RuntimeFault, match="kept no outcomes"):
        grade(orch.runtime, sid, template, evidence)

    # Every outcome turned into a PASS under a digest of other checks: not used either.
    passing = [{**r, "passed": True} for r in body["results"]]
    path.write_text(json.dumps({"digest": "0" * 64, "results": passing}))
    with pytest.raises(RuntimeFault, match="kept no outcomes"):
        grade(orch.runtime, sid, template, evidence)

    # The record as kept gives the verdict its checks gave: the live checks FAIL.
    path.write_text(json.dumps(body))
    results = grade(orch.runtime, sid, template, evidence)
    first = template.spec.success_criteria[0].id
    live = [r for r in results if r.criterion_id == first and r.check_index < 2]
    assert len(live) == 2 and not any(r.passed for r in live)


@pytest.mark.parametrize("written", ["oversized", "not-json", "not-an-object", "results-missing",
                                     "a-result-malformed"])
def test_an_unreadable_kept_record_counts_as_none(tmp_path: Path, written: str) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    digest = live_digest([])
    data = {
        "oversized": b'{"digest": "' + digest.encode() + b'", "results": []' + b" " *
                     MAX_RECORD_BYTES + b"}",
        "not-json": b"\xff\xfe{",
        "not-an-object": b"[1, 2]",
        "results-missing": json.dumps({"digest": digest}).encode(),
        "a-result-malformed": json.dumps({"digest": digest, "results": [{"passed": True}]})
        .encode(),
    }[written]
    record_path(evidence).write_bytes(data)
    assert kept_live(evidence, digest) is None
