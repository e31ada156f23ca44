"""Judge one check's run against its template `expect` with the shared rule (grading.judging).

The grader, the scoreboard and the offline verifier all judge through `judge_recorded`, so a
result the grader recorded can be judged again from the stored outputs with the same answer.
"""

from __future__ import annotations

from forge.runtime.base import ExecResult
from forge.templates.dsl_grading import Expect
from forge.templates.dsl_models import ScenarioTemplate
from forge_verify.judging import Capture, Expectation, Recorded, judge_recorded
from forge_verify.rules import CheckRule, CriterionRule


def expectation_of(expect: Expect) -> Expectation:
    """The template model's `expect` as the judging rule's plain value."""
    return Expectation(expect.exit_code, expect.stdout_contains, expect.stdout_regex,
                       expect.stderr_contains)


def recorded_of(result: ExecResult) -> Recorded:
    """What the grader captured, as the judging rule sees it."""
    return Recorded(
        exit_code=result.exit_code,
        stdout=Capture.of(result.stdout, result.stdout_size, result.stdout_sha256),
        stderr=Capture.of(result.stderr, result.stderr_size, result.stderr_sha256),
        timed_out=result.timed_out,
    )


def judge(expect: Expect, result: ExecResult) -> tuple[bool, list[str]]:
    """(passed, reasons for failure). A timed-out check never passes."""
    outcome = judge_recorded(expectation_of(expect), recorded_of(result))
    return outcome.passed, list(outcome.reasons)


def rules_of(template: ScenarioTemplate) -> tuple[CriterionRule, ...]:
    """The success criteria of a rendered template as plain judging rules."""
    return tuple(
        CriterionRule(c.id, c.description, float(c.weight), tuple(
            CheckRule(k.container, tuple(k.command), expectation_of(k.expect))
            for k in c.checks))
        for c in template.spec.success_criteria)
