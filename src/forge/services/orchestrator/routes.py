"""Orchestrator HTTP API: owner-, tenant- or operator-scoped; never open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from forge.audit.log import scenario_log
from forge.errors import ForgeError
from forge.identity.caller import Caller, resolve_caller
from forge.lifecycle import states
from forge.lifecycle.scenario_ids import check_scenario_id
from forge.lifecycle.states import IllegalTransition
from forge.lifecycle.store import ScenarioNotFound, ScenarioRow, history, load
from forge.lifecycle.visibility import LEARNER_HOST, learner_view
from forge.lifecycle.wanted_delete import DELETE_REASON
from forge.services.common.auth import (
    bearer_token,
    carries_operator,
    check_operator,
)
from forge.services.common.openapi import errors
from forge.services.common.store_reads import read_call
from forge.services.orchestrator.grade_lab import complete, end_without_grading
from forge.services.orchestrator.state import OrchestratorState
from forge.store.models import Scenario
from forge.store.timestamps import aware, iso

router = APIRouter()
EXTEND_WINDOW = timedelta(minutes=10)


class ExtendBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is no number
    minutes: int = Field(default=15, ge=1, le=60)


def orch(request: Request) -> OrchestratorState:
    state: OrchestratorState = request.app.state.orchestrator
    return state


async def operator_orch(request: Request) -> OrchestratorState:
    """``orch``, once the request is shown to carry an operator credential for this
    orchestrator (else 401)."""
    state = orch(request)
    await check_operator(request, state.settings, state.ctx.name)
    return state


async def _is_operator(request: Request) -> bool:
    token, state = bearer_token(request), orch(request)
    return token is not None and await carries_operator(request, token, state.settings,
                                                        state.ctx.name)


async def _caller(request: Request) -> Caller:
    state = orch(request)
    return await run_in_threadpool(resolve_caller, request.headers, request.cookies,
                                   state.settings, state.ctx.db, method=request.method)


async def visible_scenario(request: Request, scenario_id: str) -> tuple[ScenarioRow, bool]:
    """The scenario if the caller is an operator or its owner (else 404); and is-operator."""
    missing = ForgeError("not_found", 404, "scenario not found")
    check_scenario_id(scenario_id)
    operator = await _is_operator(request)
    caller = None if operator else await _caller(request)
    try:
        db = orch(request).ctx.db
        row = await read_call(db, load, db, scenario_id)
    except ScenarioNotFound:
        raise missing from None
    if caller is not None and not (caller.owns(row.tenant_id, row.subject)
                                   and caller.may_see(scenario_id)):
        raise missing
    return row, operator


def check_holder(request: Request, row: ScenarioRow) -> None:
    """Changes to a lab happen on the node holding it; another node refuses (409 with the
    holder's id) rather than touching a lab it does not have."""
    if not orch(request).holds(row.node_id):
        where = f" at {row.node_url}" if row.node_url else ""
        raise ForgeError("lab_on_other_node", 409,
                         f"lab runs on node {row.node_id}{where}; ask that node (spawn_service "
                         "routes learners there by itself)",
                         [{"field": "node_id", "value": row.node_id, "node_url": row.node_url}])


def view(row: ScenarioRow, with_details: bool,
         learner_hosts: tuple[str, ...] = (LEARNER_HOST,)) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scenario_id": row.scenario_id, "state": row.state, "reason": row.state_reason,
        "track": row.track, "template_id": row.template_id, "plan": row.plan,
        "tenant_id": row.tenant_id, "subject": row.subject,
        "created_at": aware(row.created_at).isoformat(),
        "updated_at": aware(row.updated_at).isoformat(),
        "expires_at": iso(row.expires_at),
        "hosts": row.details.get("hosts", {}) if with_details
        else learner_view(row.details.get("hosts", {}), learner_hosts)[0],
    }
    if with_details:
        body["node_id"] = row.node_id
        body["policy"] = {k: v for k, v in row.details.get("policy", {}).items() if k != "input"}
        body["refused"] = row.details.get("refused")
        body["error"] = row.details.get("error")  # the failure's text (failure_reason)
    return body


@router.get("/v1/scenarios/{scenario_id}", tags=["scenarios"], responses=errors(401, 404))
async def get_scenario(scenario_id: str, request: Request) -> dict[str, Any]:
    """One scenario, to its owner or an operator (operators also see history and policy)."""
    row, operator = await visible_scenario(request, scenario_id)
    body = view(row, operator, orch(request).registry.learner_hosts(row.template_id))
    if operator:
        body["history"] = await run_in_threadpool(history, orch(request).ctx.db, scenario_id)
    return body


@router.get("/v1/scenarios", tags=["scenarios"], responses=errors(401))
async def list_scenarios(
    request: Request,
    state: str | None = Query(None, pattern=r"^[a-z]{1,16}$"),
    tenant_id: str | None = Query(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$"),
    track: str | None = Query(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Operator: every scenario, newest first, with filters."""
    await operator_orch(request)

    def query() -> list[dict[str, Any]]:
        stmt = select(Scenario).order_by(Scenario.created_at.desc()).limit(limit)
        if state:
            stmt = stmt.where(Scenario.state == state)
        if tenant_id:
            stmt = stmt.where(Scenario.tenant_id == tenant_id)
        if track:
            stmt = stmt.where(Scenario.track == track)
        with orch(request).ctx.db.read() as sess:
            return [view(r, True) for r in sess.scalars(stmt)]

    items = await run_in_threadpool(query)
    return {"items": items, "count": len(items)}


@router.delete("/v1/scenarios/{scenario_id}", tags=["scenarios"],
               responses=errors(401, 403, 404, 409))
async def delete_scenario(scenario_id: str, request: Request) -> dict[str, Any]:
    """Owner or operator: tear the lab down now, without grading."""
    row, _ = await visible_scenario(request, scenario_id)
    check_holder(request, row)
    try:
        final = await end_without_grading(orch(request), row.scenario_id, states.DELETED,
                                          DELETE_REASON)
    except IllegalTransition as exc:
        raise ForgeError("illegal_transition", 409, str(exc)) from None
    return {"scenario_id": scenario_id, "state": final}


@router.post("/v1/scenarios/{scenario_id}/extend", tags=["scenarios"],
             responses=errors(401, 403, 404, 409))
async def extend(
    scenario_id: str, request: Request, body: ExtendBody | None = None
) -> dict[str, Any]:
    """Owner or operator: more time, only in the last 10 minutes, within the plan's cap."""
    row, _ = await visible_scenario(request, scenario_id)
    check_holder(request, row)
    state = orch(request)
    if row.state != states.RUNNING or row.expires_at is None:
        raise ForgeError("not_running", 409, f"scenario is {row.state}")
    now = datetime.now(UTC)
    expires = aware(row.expires_at)
    if expires <= now:  # its end has passed (the reaper ends it at its next round)
        raise ForgeError("not_running", 409, "the lab has reached its end time",
                         [{"field": "expires_at", "value": expires.isoformat()}])
    if expires - now > EXTEND_WINDOW:
        raise ForgeError("too_early", 409, "a lab can be extended only in its last 10 minutes",
                         [{"field": "expires_at", "value": expires.isoformat()}])
    plan = state.catalog.get(row.plan)
    created = aware(row.created_at)
    cap = created + timedelta(minutes=plan.max_lab_minutes if plan else 60)
    wanted = expires + timedelta(minutes=(body or ExtendBody()).minutes)
    new_deadline = min(wanted, cap)
    if new_deadline <= expires:
        raise ForgeError("lifetime_cap", 409, "the lab has reached its plan's maximum lifetime",
                         [{"field": "minutes", "cap": cap.isoformat()}])

    await run_in_threadpool(_extend_row, state, scenario_id, new_deadline)
    return {"scenario_id": scenario_id, "expires_at": new_deadline.isoformat(),
            "capped": new_deadline < wanted}


def _extend_row(state: OrchestratorState, scenario_id: str, deadline: datetime) -> None:
    """Move the deadline (still running) and audit it."""
    with state.ctx.db.session() as sess:
        row = sess.get(Scenario, scenario_id)
        if row is None or row.state != states.RUNNING:
            raise ForgeError("not_running", 409, "scenario is no longer running")
        row.expires_at, row.updated_at = deadline, datetime.now(UTC)
    scenario_log(state.settings.storage_root, scenario_id).append(
        "scenario.extended", {"expires_at": deadline.isoformat()})


@router.post("/internal/scenarios/{scenario_id}/complete", tags=["internal"],
             responses=errors(401, 404, 409))
async def complete_now(scenario_id: str, request: Request) -> dict[str, Any]:
    """Operator: grade and finish a running lab now (idempotent)."""
    await operator_orch(request)
    check_scenario_id(scenario_id)
    try:
        db = orch(request).ctx.db
        check_holder(request, await read_call(db, load, db, scenario_id))
        final = await complete(orch(request), scenario_id, "operator")
    except ScenarioNotFound:
        raise ForgeError("not_found", 404, "scenario not found") from None
    except IllegalTransition as exc:
        raise ForgeError("illegal_transition", 409, str(exc)) from None
    return {"scenario_id": scenario_id, "state": final}
