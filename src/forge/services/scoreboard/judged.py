"""Judging a completion's checks again before anything is scored (the scoreboard's half of
"judged twice").

The event's `passed` flags are claims. Each check is judged again with the shared rule
(forge_verify.judging) from the template rendered with the scenario's variables and from the
outputs the grader captured (the evidence files when their hashes match, otherwise the event's
text, which counts as truncated when it is not the whole output). A check whose flag, container
or command disagrees with the template refuses the whole completion, saying which check and why;
the score is computed from the re-judged results only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from forge.evidence.artifacts import OUTPUT_CAP_BYTES, cap_output
from forge.grading.expect import rules_of
from forge.services.scoreboard.refused import CompletionRefused
from forge.templates.dsl_models import ScenarioTemplate
from forge.templates.problems import TemplateError
from forge.templates.variables import render
from forge_verify.judging import Capture, Recorded, judge_recorded
from forge_verify.rules import CheckRule, CriterionRule
from forge_verify.score import CheckResult, StreamOutput


def rendered_rules(template: ScenarioTemplate, variables: object) -> tuple[CriterionRule, ...]:
    """The template's criteria rendered with the scenario's variables, as judging rules."""
    if not isinstance(variables, Mapping):
        raise CompletionRefused("invalid_completion", "variables: missing or not an object")
    try:
        return rules_of(render(template, dict(variables)))
    except TemplateError as exc:
        raise CompletionRefused("invalid_completion",
                                f"variables: do not render the template ({exc})") from None


def _capture(out: StreamOutput) -> Capture:
    return Capture.of(out.text.encode("utf-8", "surrogateescape"), out.size, out.sha256)


def _judge_one(rule: CheckRule, result: CheckResult) -> CheckResult:
    where = f"results: {result.criterion_id}[{result.check_index}]"
    if result.container and result.container != rule.container:
        raise CompletionRefused("check_list_mismatch", f"{where} ran in {result.container!r}, "
                                                       f"the template names {rule.container!r}")
    if result.command and tuple(result.command) != rule.command:
        raise CompletionRefused("check_list_mismatch",
                                f"{where} ran another command than the template's")
    stdout = cap_output(result.stdout, OUTPUT_CAP_BYTES)
    stderr = cap_output(result.stderr, OUTPUT_CAP_BYTES)
    judged = judge_recorded(rule.expect, Recorded(result.exit_code, _capture(stdout),
                                                  _capture(stderr), result.timed_out))
    if judged.passed is not result.passed:
        said = "passed" if result.passed else "failed"
        found = "passes" if judged.passed else "fails: " + "; ".join(judged.reasons)
        raise CompletionRefused("criterion_inconsistent",
                                f"{where} is recorded as {said}, but judged again from its "
                                f"outputs against the template's expect it {found}")
    return replace(result, passed=judged.passed, container=rule.container,
                   command=rule.command, stdout=stdout, stderr=stderr)


def rejudge_results(rules: Sequence[CriterionRule], results: Sequence[CheckResult]
                    ) -> tuple[CheckResult, ...]:
    """Every result judged again (same order); CompletionRefused on the first disagreement.

    The results must already cover exactly the template's checks (ids and indices)."""
    by_check: dict[tuple[str, int], CheckRule] = {
        (c.id, i): k for c in rules for i, k in enumerate(c.checks)}
    judged: list[CheckResult] = []
    for r in results:
        rule = by_check.get((r.criterion_id, r.check_index))
        if rule is None:
            raise CompletionRefused("check_list_mismatch", f"results: {r.criterion_id}"
                                    f"[{r.check_index}] is not a check of the template")
        judged.append(_judge_one(rule, r))
    return tuple(judged)

