"""Run every check of a rendered template through the runtime and keep the outputs as evidence.

Order: the template's ``live`` checks first (they need the learner's own processes, and
reach them over the lab network from another host), their outcomes kept on disk
(``live_record``), then the lab is sealed (terminals closed, every learner process
killed), then every other check. Each check runs through
``Runtime.run_check``: as the grader, in a sandbox no lab process can see or trace, on a
snapshot of the host's files, with its expected values on stdin.
"""

from __future__ import annotations

from pathlib import Path

from forge.durable import write_in_place
from forge.grading.expect import judge
from forge.grading.live_record import keep_live, kept_live, live_digest
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
    service that cuts a check short raises ``StoppedMidway`` (grade the lab again later).
    A lab an earlier grading sealed (a crash or stop after the seal) is graded again with
    the live outcomes that grading kept before its seal (``live_record``): run again,
    its live checks would find the learner's processes killed. Without such a record
    (e.g. a grading of an earlier release) that is a ``RuntimeFault``: the grading fails,
    no verdict.
    """
    # The outputs name the lab's answers and secrets: the orchestrator's alone (0700; a
    # directory kept from an earlier grading of the lab is made so too).
    evidence_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    evidence_dir.chmod(0o700)
    planned = [(criterion, index, check)
               for criterion in template.spec.success_criteria
               for index, check in enumerate(criterion.checks)]
    outcomes: dict[tuple[str, int], CheckResult] = {}

    def run(items: list[tuple[Criterion, int, Check]]) -> list[Path]:
        written: list[Path] = []
        for criterion, index, check in items:
            stdin = check.stdin.encode() if check.stdin is not None else None
            outcome = runtime.run_check(lab_id, check.container, list(check.command),
                                        stdin=stdin, timeout=float(check.timeout_seconds),
                                        max_output=max_output)
            passed, _ = judge(check.expect, outcome)
            stem = f"{criterion.id}.{index}"
            for stream, data in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
                write_in_place(evidence_dir / f"{stem}.{stream}", data)
                written.append(evidence_dir / f"{stem}.{stream}")
            outcomes[(criterion.id, index)] = _to_result(
                criterion.id, index, check.container, tuple(check.command), passed, outcome)
        return written

    live = [item for item in planned if item[2].live]
    digest = live_digest(live)
    sealed = runtime.sealed(lab_id)
    if live and sealed:  # a grading cut off after its seal
        kept = kept_live(evidence_dir, digest)
        if kept is None or {(r.criterion_id, r.check_index) for r in kept} != {
                (c.id, i) for c, i, _ in live}:
            raise RuntimeFault("the lab was sealed by a grading that did not finish and "
                               "kept no outcomes of its live checks: they cannot be run "
                               "again (the seal ended what they reach)")
        outcomes.update({(r.criterion_id, r.check_index): r for r in kept})
    elif live:
        files = run(live)
        keep_live(evidence_dir, digest, [outcomes[(c.id, i)] for c, i, _ in live], files)
    runtime.seal(lab_id)
    try:
        run([item for item in planned if not item[2].live])
    except StoppedMidway as exc:
        if live and sealed is None:  # an engine that cannot say a lab is sealed would
            # have the live checks run again after the seal: FAILs nobody earned
            raise RuntimeFault(f"{exc}, after the lab was sealed: its live checks cannot "
                               "be run again") from exc
        raise
    return [outcomes[(criterion.id, index)] for criterion, index, _ in planned]
