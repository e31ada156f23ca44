""""Check this task" on a running lab: run one criterion's checks now, grade nothing.

spawn_service asks the node holding the lab (operator token, as for extend) after it has
checked the owner and the rate limits. The checks run exactly as in grading
(`Runtime.run_check`: the grader's identity, a sandbox no lab process can see, expected values
on stdin) but nothing is sealed, stored as evidence or scored. The answer carries per check
only what a reason needs (passed, exit code, timed out, truncated, whether the command talks
to the network): never output, stdin or expected values, so a check cannot be used to read
the answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request

from forge.errors import ForgeError
from forge.grading.expect import judge
from forge.grading.watched_checks import checkable, seeded_scripts, talks_to_network
from forge.lifecycle import states
from forge.lifecycle.scenario_ids import check_scenario_id
from forge.lifecycle.store import ScenarioNotFound, load
from forge.runtime.base import StoppedMidway
from forge.services.common.openapi import errors
from forge.services.orchestrator.routes import check_holder, operator_orch
from forge.services.orchestrator.state import OrchestratorState
from forge.store.timestamps import aware
from forge.templates.dsl_grading import Criterion
from forge.templates.variables import render

router = APIRouter(tags=["internal"])
MAX_OUTPUT = 1 << 20


Scripts = dict[str, dict[str, str]]


def _criterion(state: OrchestratorState, template_id: str, variables: Any,
               criterion_id: str) -> tuple[Criterion, Scripts]:
    """The lab's criterion `criterion_id`, with the scripts its template seeds (both
    rendered with the lab's variables)."""
    template = render(state.registry.get(template_id).template, variables)
    for criterion in template.spec.success_criteria:
        if criterion.id == criterion_id:
            return criterion, seeded_scripts(template)
    raise ForgeError("unknown_criterion", 404, "criterion: this lab has no such task",
                     [{"field": "criterion"}])


def _run(state: OrchestratorState, scenario_id: str, criterion: Criterion,
         scripts: Scripts) -> list[dict[str, Any]]:
    """Each check of `criterion` on the live lab, reduced to what a reason needs."""
    facts: list[dict[str, Any]] = []
    for check in criterion.checks:
        stdin = check.stdin.encode() if check.stdin is not None else None
        outcome = state.runtime.run_check(scenario_id, check.container, list(check.command),
                                          stdin=stdin, timeout=float(check.timeout_seconds),
                                          max_output=MAX_OUTPUT)
        passed, _ = judge(check.expect, outcome)
        facts.append({
            "passed": passed, "exit_code": outcome.exit_code, "timed_out": outcome.timed_out,
            "truncated": outcome.stdout_size != len(outcome.stdout),
            "network": talks_to_network(check, scripts.get(check.container))})
    return facts


@router.post("/internal/scenarios/{scenario_id}/checks/{criterion_id}",
             responses=errors(401, 404, 409, 503))
async def check_task(scenario_id: str, criterion_id: str, request: Request) -> dict[str, Any]:
    """Operator (spawn_service): run one criterion's checks on the running lab, not a verdict.
    409 `lab_busy` at once while anything else holds the lab (never waits in line), 409
    `not_running` once the lab is not running or its end time has passed."""
    state = await operator_orch(request)
    check_scenario_id(scenario_id)
    lock = state.lock_for(scenario_id)
    if lock.locked():  # never queue: a flood of checks must not hold off expiry or teardown
        raise ForgeError("lab_busy", 409, "criterion: the lab is busy (another check, an "
                         "extension, grading or its end); check this task again in a moment",
                         [{"field": "criterion"}])
    async with lock:  # free (checked above, no await since): taken at once
        try:
            row = await state.read(load, state.ctx.db, scenario_id)
        except ScenarioNotFound:
            raise ForgeError("not_found", 404, "scenario not found") from None
        check_holder(request, row)
        if row.state != states.RUNNING:
            raise ForgeError("not_running", 409, f"scenario is {row.state}; a task can be "
                             "checked only while the lab runs")
        if row.expires_at is not None and aware(row.expires_at) <= datetime.now(UTC):
            raise ForgeError("not_running", 409, "scenario has reached its end time; a task "
                             "can be checked only while the lab runs")
        criterion, scripts = _criterion(state, row.template_id,
                                        row.details.get("variables", {}), criterion_id)
        if not checkable(criterion, state.registry.learner_hosts(row.template_id), scripts):
            raise ForgeError("checked_at_submit", 409, "criterion: this task is checked only "
                             "when you submit", [{"field": "criterion"}])
        try:
            checks = await state.blocking(_run, state, scenario_id, criterion, scripts)
        except StoppedMidway:
            raise ForgeError("service_stopping", 503, "criterion: the lab's service is "
                             "restarting and the check gave no result; check this task "
                             "again in a moment", [{"field": "criterion"}],
                             headers={"Retry-After": "5"}) from None
    return {"scenario_id": scenario_id, "criterion": criterion.id,
            "passed": all(c["passed"] for c in checks), "checks": checks}
