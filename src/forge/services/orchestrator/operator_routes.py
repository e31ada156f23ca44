"""Operator endpoints that end or resume any scenario: fail, regrade, destroy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from forge.errors import ForgeError
from forge.lifecycle.scenario_ids import check_scenario_id
from forge.lifecycle.store import ScenarioNotFound
from forge.services.common.openapi import errors
from forge.services.orchestrator import operations
from forge.services.orchestrator.routes import (
    check_holder,
    operator_orch,
    visible_scenario,
)
from forge.services.orchestrator.state import OrchestratorState

router = APIRouter()
Action = Callable[[OrchestratorState, str, str], Awaitable[str]]


class ActionBody(BaseModel):
    """Why the operator acts (kept in the scenario's audit log)."""

    model_config = ConfigDict(extra="forbid")
    # Text (lines and tabs allowed): it goes into the audit log and the store (PostgreSQL's text
    # cannot hold a NUL; a 500 there came after the lab was already torn down).
    reason: str = Field("operator action", min_length=1, max_length=500,
                        pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]+$")  # tabs, new lines: ok


async def _act(request: Request, scenario_id: str, body: ActionBody | None,
               action: Action, name: str) -> dict[str, Any]:
    state = await operator_orch(request)
    check_scenario_id(scenario_id)
    # Only the node holding the lab acts on it (409 naming the holder): another node would
    # end the row while the lab ran on, unseen, on its own node (destroy), or grade a lab
    # it does not have and fail it (regrade).
    row, _ = await visible_scenario(request, scenario_id)
    check_holder(request, row)
    try:
        final = await action(state, scenario_id, (body or ActionBody()).reason)
    except ScenarioNotFound:
        raise ForgeError("not_found", 404, "scenario not found") from None
    return {"scenario_id": scenario_id, "action": name, "state": final}


@router.post("/v1/admin/scenarios/{scenario_id}/fail", tags=["operator"],
             responses=errors(401, 404, 409))
async def fail(scenario_id: str, request: Request,
               body: ActionBody | None = None) -> dict[str, Any]:
    """Operator: end an unfinished scenario as failed (lab torn down, slot freed)."""
    return await _act(request, scenario_id, body, operations.fail, "fail")


@router.post("/v1/admin/scenarios/{scenario_id}/regrade", tags=["operator"],
             responses=errors(401, 404, 409))
async def regrade(scenario_id: str, request: Request,
                  body: ActionBody | None = None) -> dict[str, Any]:
    """Operator: grade a running lab now, or resume one stuck in grading."""
    return await _act(request, scenario_id, body, operations.regrade, "regrade")


@router.post("/v1/admin/scenarios/{scenario_id}/destroy", tags=["operator"],
             responses=errors(401, 404, 409))
async def destroy(scenario_id: str, request: Request,
                  body: ActionBody | None = None) -> dict[str, Any]:
    """Operator: tear the lab down now, whatever the scenario's state."""
    return await _act(request, scenario_id, body, operations.destroy, "destroy")
