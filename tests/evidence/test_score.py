"""The weighted score comes only from graded checks and template criteria."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from forge_verify.score import (
    CheckResult,
    CriterionSpec,
    ScoreInputError,
    build_score_document,
    compute_score,
    recompute_from_document,
)

from .sample import score_inputs, stream


def _doc(inputs=None):  # type: ignore[no-untyped-def]
    return build_score_document(inputs or score_inputs(), 0, "0" * 64)


def test_weighted_score_counts_a_criterion_only_when_all_its_checks_pass() -> None:
    doc = _doc()
    # find-target (2) and save-page (1) pass; report (1) has a failing second check.
    assert (doc["score"], doc["passed"], doc["total"]) == (0.75, 2, 3)
    assert [c["passed"] for c in doc["criteria"]] == [True, True, False]
    report = doc["criteria"][2]
    assert [c["passed"] for c in report["checks"]] == [True, False]
    assert "checks/report/1/stderr.txt" in report["evidence"]


def test_score_json_carries_every_design_field() -> None:
    doc = _doc()
    for key in ("format", "scenario_id", "run_id", "track", "template", "subject", "tenant_id",
                "plan", "retention_days", "completion_reason", "started_at", "completed_at",
                "score", "passed", "total", "criteria"):
        assert key in doc
    assert doc["template"]["name"] == "netplus" and len(doc["template"]["sha256"]) == 64
    assert doc["started_at"] == "2026-03-01T11:00:00Z"
    check = doc["criteria"][0]["checks"][0]
    assert set(check["stdout"]) == {"sha256", "size", "truncated", "evidence"}


def test_compute_score_rounds_and_handles_unequal_weights() -> None:
    assert compute_score([(1.0, True), (2.0, False)]).score == 0.333333
    assert compute_score([(3.0, True)]).score == 1.0
    assert compute_score([(3.0, False), (1.0, False)]).score == 0.0


def test_all_failing_and_all_passing_labs() -> None:
    inputs = score_inputs()
    failing = tuple(replace(r, passed=False) for r in inputs.results)
    assert _doc(replace(inputs, results=failing))["score"] == 0.0
    passing = tuple(replace(r, passed=True) for r in inputs.results)
    assert _doc(replace(inputs, results=passing))["score"] == 1.0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda i: replace(i, results=i.results[:-1]), "report is missing checks"),
        (lambda i: replace(i, results=(*i.results, i.results[0])), "duplicate find-target"),
        (lambda i: replace(i, results=(*i.results, CheckResult(
            "ghost", 0, True, 0, stream(""), stream(""), False, 1))), "unknown criterion"),
        (lambda i: replace(i, results=(*i.results, CheckResult(
            "save-page", 1, True, 0, stream(""), stream(""), False, 1))), "got index 1"),
        (lambda i: replace(i, criteria=(*i.criteria, i.criteria[0])), "unique"),
    ],
)
def test_inconsistent_results_are_refused_naming_the_problem(mutate, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScoreInputError, match=message):
        _doc(mutate(score_inputs()))


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: replace(score_inputs(), scenario_id="scn-XYZ"), "scenario_id"),
        (lambda: replace(score_inputs(), scenario_id="scn-00112233aabbccdd\n"), "scenario_id"),
        (lambda: replace(score_inputs(), template_sha256="abc"), "template_sha256"),
        (lambda: replace(score_inputs(), retention_days=0), "retention_days"),
        (lambda: replace(score_inputs(), subject=""), "subject"),
        (lambda: replace(score_inputs(), criteria=()), "criteria"),
        (lambda: CriterionSpec("x", "d", 0.0, 1), "weight"),
        (lambda: CriterionSpec("../etc", "d", 1.0, 1), "criteria.id"),
        (lambda: CheckResult("a", -1, True, 0, stream(""), stream(""), False, 1), "check_index"),
    ],
)
def test_bad_input_names_the_field(build, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ScoreInputError, match=field):
        build()


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ScoreInputError, match="started_at"):
        _doc(replace(score_inputs(), started_at=datetime(2026, 3, 1),
                     completed_at=datetime(2026, 3, 1)))


def test_recompute_detects_a_doctored_criterion() -> None:
    doc = _doc()
    assert recompute_from_document(doc).score == 0.75
    doc["criteria"][2]["passed"] = True
    with pytest.raises(ScoreInputError, match=r"criteria\[2\].passed"):
        recompute_from_document(doc)
