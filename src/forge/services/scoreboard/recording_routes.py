"""Terminal recordings of a scored scenario, read from its signed evidence bundle.

Only the scenario's owner (tenant and subject) or the operator may list or fetch them, like
every other result file; a name must be a strict recording name (`<host>.<n>.cast`), and a
recording is served only when it matches the bundle manifest's sha256 and size (so what is
replayed is what the verdict covers).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from forge.errors import ForgeError
from forge.services.common.openapi import errors
from forge.services.scoreboard.access import (
    Reader,
    current_reader,
    owned_results,
    scoreboard_state,
)
from forge_verify.bundle import BUNDLE_NAMES, BundleError, parse_manifest, read_bundle, sha256_hex
from forge_verify.recordings import CAST_MEDIA_TYPE, MEMBER_PREFIX, RECORDING_NAME_RE

router = APIRouter()
ReaderDep = Annotated[Reader, Depends(current_reader)]


def owned_recordings(request: Request, reader: Reader, scenario_id: str) -> dict[str, bytes]:
    """The scenario's recordings that match its manifest, by file name; 404 unless the
    reader may see the scenario's results."""
    files = owned_results(scoreboard_state(request), reader, scenario_id)
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
