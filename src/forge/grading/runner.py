"""Run every check of a rendered template through the runtime and keep the outputs as evidence.

Order: the template's ``live`` checks first (they need the learner's own processes, and
reach them over the lab network from another host), then the lab is sealed (terminals
closed, every learner process killed), then every other check. Each check runs through
``Runtime.run_check``: as the grader, in a sandbox no lab process can see or trace, on a
snapshot of the host's files, with its expected values on stdin.
"""

from __future__ import annotations

from pathlib import Path

from forge.grading.expect import judge
from forge.runtime.base import ExecResult, Runtime, RuntimeFault, StoppedMidway
from forge.templates.dsl_grading import Check, Criterion
from forge.templates.dsl_models import ScenarioTemplate
from forge_verify.score import CheckResult, StreamOutput

MAX_OUTPUT = 1 << 20


def _stream(data: bytes, sha256: str, size: int) -> StreamOutput:
    """Kept text plus facts of the full output; truncated also when the text is not exact."""
    text = data.decode("utf-8", "replace")
    exact = size == len(data) and text.encode() == data
    return StreamOutput(text=text, sha256=sha256, size=size, truncated=not exact)


def _to_result(criterion_id: str, index: int, container: str, command: tuple[str, ...],
               passed: bool, result: ExecResult) -> CheckResult:
    return CheckResult(
        criterion_id=criterion_id,
        check_index=index,
        passed=passed,
        exit_code=result.exit_code,
        stdout=_stream(result.stdout, result.stdout_sha256, result.stdout_size),
        stderr=_stream(result.stderr, result.stderr_sha256, result.stderr_size),
        timed_out=result.timed_out,
        duration_ms=int(result.duration_s * 1000),
        container=container,
        command=command,
    )


def grade(
    runtime: Runtime, lab_id: str, template: ScenarioTemplate, evidence_dir: Path,
    max_output: int = MAX_OUTPUT,
) -> list[CheckResult]:
    """Run each check (its own timeout, output cap); write stdout/stderr files per check.

    Results come back in template order whatever order the checks ran in. A stop of the
    service that cuts a check short raises ``StoppedMidway`` (grade the lab again later),
    except after the seal of a lab with live checks: the seal killed what those checks
    reach, so that is a ``RuntimeFault`` (the grading fails, no verdict), as is grading
    such a lab again once an earlier grading sealed it (a crash after the seal).
    """
    evidence_dir.mkdir(parents=True, exist_ok=True)
    planned = [(criterion, index, check)
               for criterion in template.spec.success_criteria
               for index, check in enumerate(criterion.checks)]
    outcomes: dict[tuple[str, int], CheckResult] = {}

    def run(items: list[tuple[Criterion, int, Check]]) -> None:
        for criterion, index, check in items:
            stdin = check.stdin.encode() if check.stdin is not None else None
            outcome = runtime.run_check(lab_id, check.container, list(check.command),
                                        stdin=stdin, timeout=float(check.timeout_seconds),
                                        max_output=max_output)
            passed, _ = judge(check.expect, outcome)
            stem = f"{criterion.id}.{index}"
            (evidence_dir / f"{stem}.stdout").write_bytes(outcome.stdout)
            (evidence_dir / f"{stem}.stderr").write_bytes(outcome.stderr)
            outcomes[(criterion.id, index)] = _to_result(
                criterion.id, index, check.container, tuple(check.command), passed, outcome)

    live = [item for item in planned if item[2].live]
    if live and runtime.sealed(lab_id):  # a grading cut off after its seal (a crash)
        raise RuntimeFault("the lab was sealed by a grading that did not finish: its live "
                           "checks cannot be run again (the seal ended what they reach)")
    run(live)
    runtime.seal(lab_id)
    try:
        run([item for item in planned if not item[2].live])
    except StoppedMidway as exc:
        if live:  # graded again, they would find the learner's processes killed: FAILs
            raise RuntimeFault(f"{exc}, after the lab was sealed: its live checks cannot "
                               "be run again") from exc
        raise  # nothing the seal ended is checked: grading again gives the same answers
    return [outcomes[(criterion.id, index)] for criterion, index, _ in planned]
