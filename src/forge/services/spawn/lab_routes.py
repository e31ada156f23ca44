"""Extend and destroy a lab through spawn_service: it checks ownership, then calls the node
holding the lab (by the URL that node wrote on the row), so learners never need to know
which node that is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from forge.errors import ForgeError
from forge.lifecycle import states
from forge.lifecycle.store import ScenarioRecord
from forge.lifecycle.wanted_delete import want_delete
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.node_routing import DELETE_KEPT_ON, delete_kept
from forge.services.spawn.routes import owned_scenario
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.state import web_state

router = APIRouter()


async def _on_node(request: Request, row: ScenarioRecord, method: str, path: str,
                   **kwargs: Any) -> dict[str, Any]:
    """The answer of the node holding the caller's lab. Its refusal comes back as the
    node gave it (status, code, details, Retry-After), in the caller's terms: the message
    read "orchestrator: a lab can be extended only in its last 10 minutes", naming a
    service the API's clients never address; a node that failed is "lab node: …"."""
    try:
        answer: dict[str, Any] = await web_state(request).backend.lab_node(
            row.node_id, row.node_url, method, path.format(row.scenario_id), **kwargs)
    except BackendError as exc:
        raise exc.relayed() from None
    return answer


class ExtendBody(BaseModel):
    """How many more minutes (the node caps it by the plan)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "5" or true is no number
    minutes: int = Field(default=15, ge=1, le=60)


@router.post("/v1/scenarios/{scenario_id}/extend", responses=errors(401, 403, 404, 409, 503))
async def extend(scenario_id: str, request: Request,
                 body: ExtendBody | None = None) -> dict[str, Any]:
    """More time for one of the caller's labs (only in its last 10 minutes)."""
    row = await owned_scenario(request, scenario_id)
    return await _on_node(request, row, "POST", "/v1/scenarios/{}/extend",
                          json={"minutes": (body or ExtendBody()).minutes})


@router.delete("/v1/scenarios/{scenario_id}", responses=errors(401, 403, 404, 409, 503))
async def destroy(scenario_id: str, request: Request) -> dict[str, Any]:
    """Tear one of the caller's labs down now, without grading."""
    row = await owned_scenario(request, scenario_id)
    if row.state in states.TERMINAL:
        # Ended already (its node answers the same): no call to a node that may be gone
        # for good, which answered `503 lab_node_unreachable` ("the lab fails by itself")
        # for a lab its node's loss had failed, on every retry.
        return {"scenario_id": row.scenario_id, "state": row.state}
    try:
        return await _on_node(request, row, "DELETE", "/v1/scenarios/{}")
    except ForgeError as exc:
        if exc.code not in DELETE_KEPT_ON or not await run_in_threadpool(
                want_delete, spawn_state(request).ctx.db, row.scenario_id):
            raise
        # Kept on the row: the node deletes it at its reaper's next pass once it is back
        # (a restart adopted the lab running, and it held the learner's slot until its
        # deadline, then was graded); a node that does not come back fails it.
        raise delete_kept(exc, row.node_id) from None
