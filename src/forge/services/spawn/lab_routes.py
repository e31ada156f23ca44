"""Extend and destroy a lab through spawn_service: it checks ownership, then calls the node
holding the lab (by the URL that node wrote on the row), so learners never need to know
which node that is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from forge.services.common.openapi import errors
from forge.services.spawn.routes import owned_scenario
from forge.services.spawn.web.state import web_state

router = APIRouter()


class ExtendBody(BaseModel):
    """How many more minutes (the node caps it by the plan)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is no number
    minutes: int = Field(default=15, ge=1, le=60)


@router.post("/v1/scenarios/{scenario_id}/extend", responses=errors(401, 403, 404, 409, 503))
async def extend(scenario_id: str, request: Request,
                 body: ExtendBody | None = None) -> dict[str, Any]:
    """More time for one of the caller's labs (only in its last 10 minutes)."""
    row = await owned_scenario(request, scenario_id)
    answer: dict[str, Any] = await web_state(request).backend.lab_node(
        row.node_id, row.node_url, "POST", f"/v1/scenarios/{row.scenario_id}/extend",
        json={"minutes": (body or ExtendBody()).minutes})
    return answer


@router.delete("/v1/scenarios/{scenario_id}", responses=errors(401, 403, 404, 409, 503))
async def destroy(scenario_id: str, request: Request) -> dict[str, Any]:
    """Tear one of the caller's labs down now, without grading."""
    row = await owned_scenario(request, scenario_id)
    answer: dict[str, Any] = await web_state(request).backend.lab_node(
        row.node_id, row.node_url, "DELETE", f"/v1/scenarios/{row.scenario_id}")
    return answer
