"""The shared judging rule: what passes, what cannot be proven and so fails, and that the
grader's judge and the recorded-output judge are the same rule."""

from __future__ import annotations

import hashlib

import pytest

from forge.grading.expect import judge
from forge.runtime.base import ExecResult
from forge_verify.judging import (
    Capture,
    Expectation,
    ExpectationError,
    Recorded,
    judge_recorded,
)
from forge_verify.rules import (
    CheckRule,
    CriterionRule,
    criteria_document,
    parse_criteria_document,
)


def full(data: bytes) -> Capture:
    return Capture.of(data, len(data), hashlib.sha256(data).hexdigest())


def prefix(data: bytes, kept: int) -> Capture:
    """The first `kept` bytes of `data`, as a capped grader capture records them."""
    return Capture.of(data[:kept], len(data), hashlib.sha256(data).hexdigest())


def rec(stdout: Capture, *, code: int | None = 0, stderr: Capture | None = None,
        timed_out: bool = False) -> Recorded:
    return Recorded(code, stdout, stderr or full(b""), timed_out)


def test_every_named_expectation_must_hold() -> None:
    expect = Expectation(exit_code=0, stdout_contains="token abc", stderr_contains="warn")
    ok = judge_recorded(expect, rec(full(b"token abc\n"), stderr=full(b"warn: x\n")))
    assert ok.passed and ok.reasons == ()
    bad = judge_recorded(expect, rec(full(b"token abd\n"), code=1, stderr=full(b"")))
    assert not bad.passed
    assert bad.reasons == ("exit code 1, expected 0", "stdout lacks the expected text",
                           "stderr lacks the expected text")


def test_a_timed_out_check_never_passes() -> None:
    res = judge_recorded(Expectation(stdout_contains="ok"), rec(full(b"ok"), timed_out=True))
    assert not res.passed and res.reasons == ("timed out",)


def test_text_found_in_a_truncated_capture_passes_but_absence_is_not_proven() -> None:
    data = b"token abc\n" + b"x" * 100
    assert judge_recorded(Expectation(stdout_contains="token abc"), rec(prefix(data, 20))).passed
    missing = judge_recorded(Expectation(stdout_contains="zzz"), rec(prefix(data, 20)))
    assert not missing.passed and "truncated" in missing.reasons[0]


def test_a_pattern_over_a_truncated_capture_cannot_pass() -> None:
    data = b"abc\nabd"
    # "abc$" (multiline off) matches the kept prefix "abc" but not the whole output.
    assert not judge_recorded(Expectation(stdout_regex="abc$"), rec(full(data))).passed
    cut = judge_recorded(Expectation(stdout_regex="abc$"), rec(prefix(data, 3)))
    assert not cut.passed and "truncated" in cut.reasons[0]
    assert judge_recorded(Expectation(stdout_regex="(?m)^abc$"), rec(full(data))).passed


def test_capture_is_complete_only_with_the_full_size_and_hash() -> None:
    data = b"hello"
    sha = hashlib.sha256(data).hexdigest()
    assert Capture.of(data, 5, sha).complete
    assert not Capture.of(data, 6, sha).complete
    assert not Capture.of(b"hellO", 5, sha).complete


def test_invalid_utf8_is_judged_as_replaced_text_from_complete_bytes() -> None:
    data = b"\xff\xfeid=42\n"
    res = judge_recorded(Expectation(stdout_regex=r"id=\d+"), rec(full(data)))
    assert res.passed


def test_empty_expectation_and_bad_pattern_fail() -> None:
    assert not judge_recorded(Expectation(), rec(full(b""))).passed
    bad = judge_recorded(Expectation(stdout_regex="("), rec(full(b"(")))
    assert not bad.passed and "not a valid regular expression" in bad.reasons[0]


def test_expectation_document_is_strict() -> None:
    doc = {"exit_code": 0, "stdout_contains": "x"}
    assert Expectation.from_document(doc).to_document() == doc
    for bad, field in (({"exit_code": True}, "exit_code"), ({"stdout_regex": ""}, "stdout_regex"),
                       ({"passed": True}, "unknown keys"), ([], "not an object")):
        with pytest.raises(ExpectationError, match=field):
            Expectation.from_document(bad)


def test_the_graders_judge_is_the_recorded_output_rule() -> None:
    from forge.templates.dsl_grading import Expect

    out = b"10.61.2.0/24 via 10.61.1.1 dev eth0\n" * 3
    result = ExecResult(exit_code=0, stdout=out[:40], stderr=b"",
                        stdout_sha256=hashlib.sha256(out).hexdigest(),
                        stderr_sha256=hashlib.sha256(b"").hexdigest(), stdout_size=len(out),
                        stderr_size=0, truncated=True, duration_s=0.1, timed_out=False)
    for expect in (Expect(stdout_contains="via 10.61.1.1"), Expect(stdout_regex="via"),
                   Expect(exit_code=0, stdout_contains="absent")):
        passed, reasons = judge(expect, result)
        again = judge_recorded(
            Expectation(**expect.model_dump()),
            Recorded(0, prefix(out, 40), full(b""), False))
        assert (passed, tuple(reasons)) == (again.passed, again.reasons)


def test_criteria_document_round_trips_and_names_bad_fields() -> None:
    rules = (CriterionRule("saved-page", "Saved", 2.0, (
        CheckRule("learner", ("/bin/cat", "/workspace/a"), Expectation(exit_code=0)),)),)
    doc = criteria_document(rules)
    assert parse_criteria_document(doc) == rules
    doc["criteria"][0]["checks"][0]["command"] = "cat"
    with pytest.raises(ExpectationError, match=r"criteria\[0\]\.checks\[0\]\.command"):
        parse_criteria_document(doc)
    with pytest.raises(ExpectationError, match=r"forge\.criteria/v1"):
        parse_criteria_document({"format": "other"})
