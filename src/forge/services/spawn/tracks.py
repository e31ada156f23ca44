"""GET /v1/tracks: the labs the caller's plan offers, with their catalog entries."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from forge.entitlements.resolve import resolve_entitlement
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import identify_caller, receipt_claims, spawn_state
from forge.services.spawn.catalog_entry import CatalogEntry
from forge.services.spawn.state import SpawnState

router = APIRouter(tags=["learner"])


class TracksView(BaseModel):
    """The caller's plan and the labs it offers, in the plan's track order."""

    model_config = ConfigDict(extra="forbid")

    plan: str
    tracks: list[CatalogEntry]


def offered(state: SpawnState, tracks: tuple[str, ...]) -> list[CatalogEntry]:
    """The catalog entry of each track in `tracks` that a loaded template serves."""
    out = []
    for track in tracks:
        name = state.track_templates.get(track)
        if name is not None and name in state.templates:
            out.append(state.templates[name].entry)
    return out


@router.get("/v1/tracks", response_model=TracksView, responses=errors(400, 401, 403))
async def get_tracks(request: Request) -> TracksView:
    """What the caller may start: title, summary, difficulty, minutes and objectives per lab."""
    state = spawn_state(request)
    receipt = receipt_claims(request)

    def plan_tracks() -> tuple[str, tuple[str, ...]]:
        caller = identify_caller(request, receipt)
        ent = resolve_entitlement(
            caller, settings=state.settings, catalog=state.catalog, db=state.ctx.db,
            receipt_claims=receipt, x_plan=request.headers.get("x-plan"),
            entitlements_file=state.entitlements_file)
        return ent.plan.name, tuple(ent.plan.tracks)

    plan, tracks = await run_in_threadpool(plan_tracks)
    return TracksView(plan=plan, tracks=offered(state, tracks))
