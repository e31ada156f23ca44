"""Terminal recordings of a scored scenario, read from its signed evidence bundle.

Only the scenario's owner (tenant and subject) or the operator may list or fetch them, like
every other result file; a name must be a strict recording name (`<host>.<n>.cast`), and a
recording is served only when it matches the bundle manifest's sha256 and size (so what is
replayed is what the verdict covers).

The instructor's view of a learner's labs asks for the listings of many labs at once
(`POST /v1/admin/scores/recordings`, operator token): one learner of one tenant, named in
the request, and only labs whose signed score names that same tenant and learner are
listed, so a batch cannot reach into another tenant's (or learner's) results.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from forge.bus.errors import BusUnavailable
from forge.errors import ForgeError
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import (
    Reader,
    current_reader,
    owned_results,
    result_store_down,
    scoreboard_state,
)
from forge.services.scoreboard.routes import OperatorDep
from forge.services.scoreboard.state import ScoreboardState
from forge.services.scoreboard.summary_routes import ScenarioIds
from forge_verify.bundle import BUNDLE_NAMES, BundleError, parse_manifest, read_bundle, sha256_hex
from forge_verify.recordings import CAST_MEDIA_TYPE, MEMBER_PREFIX, RECORDING_NAME_RE
from forge_verify.verdict import SCORE_NAME

router = APIRouter()
ReaderDep = Annotated[Reader, Depends(current_reader)]


MAX_LISTED = 100  # labs per batch listing
LISTS_AT_ONCE = 4  # result sets (each with its bundle) read at the same time


def owned_recordings(request: Request, reader: Reader, scenario_id: str) -> dict[str, bytes]:
    """The scenario's recordings that match its manifest, by file name; 404 unless the
    reader may see the scenario's results."""
    return _recordings_in(owned_results(scoreboard_state(request), reader, scenario_id))


def _recordings_in(files: dict[str, bytes]) -> dict[str, bytes]:
    """The recordings of a result set that match its bundle's manifest, by file name."""
    bundle = next((files[n] for n in BUNDLE_NAMES.values() if n in files), None)
    if bundle is None:
        return {}
    try:
        members = read_bundle(bundle)
        listed = {m["name"]: m for m in parse_manifest(members)["members"]}
    except BundleError:
        return {}
    out: dict[str, bytes] = {}
    for name, data in members.items():
        base = name[len(MEMBER_PREFIX):]
        entry = listed.get(name)
        if (name.startswith(MEMBER_PREFIX) and RECORDING_NAME_RE.fullmatch(base)
                and entry is not None and entry["size"] == len(data)
                and hmac.compare_digest(str(entry["sha256"]), sha256_hex(data))):
            out[base] = data
    return out


@router.get("/v1/scores/{scenario_id}/recordings", tags=["scores"],
            responses=errors(401, 404, 503))
async def list_recordings(scenario_id: str, request: Request,
                          reader: ReaderDep) -> dict[str, Any]:
    """Names and sizes of the scenario's terminal recordings (owner or operator only)."""
    found = await run_in_threadpool(owned_recordings, request, reader, scenario_id)
    return {"scenario_id": scenario_id,
            "recordings": [{"name": n, "size": len(d)} for n, d in sorted(found.items())]}


class ListingRequest(BaseModel):
    """One learner of one tenant, and their labs whose recordings to list."""

    model_config = ConfigDict(extra="forbid")
    tenant_id: str = Field(min_length=1, max_length=128)
    subject: str = Field(min_length=1, max_length=128)
    scenario_ids: ScenarioIds = Field(max_length=MAX_LISTED)


def _names(raw: bytes | None, tenant_id: str, subject: str) -> bool:
    """Whether score.json ``raw`` (None: absent) is about this tenant's learner."""
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        return False
    return (isinstance(doc, dict) and doc.get("tenant_id") == tenant_id
            and doc.get("subject") == subject)


def learner_recordings(state: ScoreboardState, tenant_id: str, subject: str,
                       scenario_id: str) -> dict[str, bytes] | None:
    """The lab's recordings when its score names this tenant's learner (judged from
    score.json before the result set is read, and again from the set read); else None."""
    artifacts = state.scorer.artifacts
    if not _names(artifacts.read_score(scenario_id), tenant_id, subject):
        return None
    files = artifacts.read(scenario_id)
    if not files or not _names(files.get(SCORE_NAME), tenant_id, subject):
        return None
    return _recordings_in(files)


@router.post("/v1/admin/scores/recordings", tags=["admin"], dependencies=[OperatorDep],
             responses=errors(401, 422, 503))
async def list_learner_recordings(body: ListingRequest, request: Request) -> dict[str, Any]:
    """Names and sizes of the recordings of each listed lab of one learner of one tenant,
    by lab id; a lab without results, or whose score is another tenant's or learner's, is
    left out. One request for a learner's timeline instead of one per lab."""
    state = scoreboard_state(request)
    gate = asyncio.Semaphore(LISTS_AT_ONCE)

    async def one(sid: str) -> dict[str, bytes] | None:
        async with gate:
            return await run_in_threadpool(learner_recordings, state, body.tenant_id,
                                           body.subject, sid)
    try:
        found = await asyncio.gather(*(one(sid) for sid in body.scenario_ids))
    except BusUnavailable:
        raise result_store_down() from None
    return {"recordings": {
        sid: [{"name": n, "size": len(d)} for n, d in sorted(casts.items())]
        for sid, casts in zip(body.scenario_ids, found, strict=True) if casts is not None}}


@router.get("/v1/scores/{scenario_id}/recordings/{name}", tags=["scores"],
            responses=errors(401, 404, 503))
async def get_recording(scenario_id: str, name: str, request: Request,
                        reader: ReaderDep) -> Response:
    """One terminal recording (asciicast v2), byte for byte (owner or operator only)."""
    if not RECORDING_NAME_RE.fullmatch(name):
        raise ForgeError("not_found", 404,
                         "name: no such recording (one is named <host>.<n>.cast)",
                         [{"field": "name", "expected": "<host>.<n>.cast"}])
    found = await run_in_threadpool(owned_recordings, request, reader, scenario_id)
    if name not in found:
        raise ForgeError("not_found", 404, "name: this lab has no such recording",
                         [{"field": "name"}])
    return Response(found[name], media_type=CAST_MEDIA_TYPE,
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "Cache-Control": "private, no-store",
                             "X-Content-Type-Options": "nosniff"})


__all__ = ["owned_recordings", "router"]
