"""GET /v1/tracks: the labs the caller's plan offers, with their catalog entries, grouped by
track; labs the plan lacks are listed as locked with the plans that unlock them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from forge.entitlements.resolve import resolve_entitlement
from forge.plans import Plan
from forge.services.common.openapi import errors
from forge.services.spawn.caller_deps import identify_caller, receipt_claims, spawn_state
from forge.services.spawn.catalog_entry import CatalogEntry
from forge.services.spawn.labs import unlocking_plans
from forge.services.spawn.state import SpawnState

router = APIRouter(tags=["learner"])


class LabOffer(CatalogEntry):
    """A lab as the catalog shows it to this caller: startable, or locked by the plan."""

    locked: bool = Field(description="The plan lacks this lab's track or tier.")
    unlocked_by: list[str] = Field(description="Plans that include this lab (when locked).")


class TrackGroup(BaseModel):
    """One track's labs; `default_lab` is what a spawn without `lab` starts."""

    model_config = ConfigDict(extra="forbid")

    track: str
    default_lab: str
    locked: bool = Field(description="The plan lacks the whole track.")
    labs: list[LabOffer]


class TracksView(BaseModel):
    """The caller's plan and the labs it offers, in the plan's track order."""

    model_config = ConfigDict(extra="forbid")

    plan: str
    tracks: list[CatalogEntry] = Field(
        description="Each offered track's default lab (one entry per track).")
    labs: list[TrackGroup] = Field(
        description="Every lab, grouped by track: the plan's tracks first, in its order, "
                    "then the tracks it lacks (locked); in a track, the labs the plan "
                    "includes first, easiest first.")


def offered(state: SpawnState, tracks: tuple[str, ...]) -> list[CatalogEntry]:
    """The default lab's catalog entry of each track in `tracks` that a template serves."""
    out = []
    for track in tracks:
        name = state.track_templates.get(track)
        if name is not None and name in state.templates:
            out.append(state.templates[name].entry)
    return out


DIFFICULTY_ORDER = {"beginner": 0, "intermediate": 1, "advanced": 2}


def _first_to_start(offer: LabOffer) -> tuple[bool, int]:
    """What a newcomer can start comes first, the easiest first (a stable sort: else in
    the catalog's order)."""
    return offer.locked, DIFFICULTY_ORDER.get(offer.difficulty, len(DIFFICULTY_ORDER))


def grouped(state: SpawnState, plan: Plan) -> list[TrackGroup]:
    """Every loaded lab by track, marked locked where `plan` lacks its track or tier; in
    each track the labs the plan includes first, easiest first."""
    order = [t for t in plan.tracks if t in state.track_labs]
    order += [t for t in state.known_tracks if t not in order]
    groups = []
    for track in order:
        labs = []
        for name in state.track_labs.get(track, ()):
            entry = state.templates[name].entry
            locked = track not in plan.tracks or entry.tier not in plan.tiers
            labs.append(LabOffer(**entry.model_dump(), locked=locked,
                                 unlocked_by=unlocking_plans(state, track, entry.tier)
                                 if locked else []))
        labs.sort(key=_first_to_start)
        groups.append(TrackGroup(track=track, default_lab=state.track_templates[track],
                                 locked=track not in plan.tracks, labs=labs))
    return groups


def startable(state: SpawnState, mine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A learner's assignments, each with the track and lab its own Start button sends
    along with its id: the spawn counts for that class, never one guessed among theirs."""
    for a in mine:
        facts = state.templates.get(a["template_id"])
        if facts is not None:
            a["track"], a["lab"], a["title"] = (facts.entry.track, facts.entry.lab,
                                                facts.entry.title)
    return mine


@router.get("/v1/tracks", response_model=TracksView, responses=errors(400, 401, 403))
async def get_tracks(request: Request) -> TracksView:
    """What the caller may start: title, summary, difficulty, minutes, objectives and tier
    per lab, and its `lab` name for POST /v1/spawn; labs the plan lacks come locked."""
    state = spawn_state(request)
    receipt = receipt_claims(request)

    def caller_plan() -> Plan:
        caller = identify_caller(request, receipt).whole_account()
        ent = resolve_entitlement(
            caller, settings=state.settings, catalog=state.catalog, db=state.ctx.db,
            receipt_claims=receipt, x_plan=request.headers.get("x-plan"),
            entitlements_file=state.entitlements_file)
        return ent.plan

    plan = await run_in_threadpool(caller_plan)
    return TracksView(plan=plan.name, tracks=offered(state, tuple(plan.tracks)),
                      labs=grouped(state, plan))
