"""The lab's terminal recordings for its owner: listed on the result page, replayed there by
the vendored asciinema-player and offered as downloads.

Recordings come from the scoreboard, read out of the signed evidence bundle and scoped to
the scenario's tenant and subject (`GET /v1/scores/{id}/recordings…`); this side checks
ownership again and accepts only strict recording names (`<host>.<n>.cast`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from forge.errors import ForgeError
from forge.services.spawn import routes as spawn_routes
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.security import PLAYER_CSP, security_headers
from forge.services.spawn.web.state import web_state
from forge_verify.recordings import CAST_MEDIA_TYPE, RECORDING_NAME_RE

router = APIRouter(include_in_schema=False)  # a page route, like the other web routes


async def recording_names(request: Request, scenario_id: str) -> list[str]:
    """Names of the graded lab's recordings: empty when the scoreboard has none for it
    (404); an unreachable or failing scoreboard is its error (502), never "no recordings"."""
    try:
        body = await web_state(request).backend.scoreboard(
            "GET", f"/v1/scores/{scenario_id}/recordings")
    except BackendError as exc:
        if exc.status == 404:
            return []
        raise
    found = body.get("recordings") if isinstance(body, dict) else None
    return [str(r["name"]) for r in found or []
            if isinstance(r, dict) and RECORDING_NAME_RE.fullmatch(str(r.get("name", "")))]


async def cast_download(request: Request, scenario_id: str, name: str) -> Response:
    """One recording (asciicast v2) of a lab the caller was found allowed to read, as a
    download; the scoreboard's refusal or outage is `recording_unavailable`."""
    try:
        resp = await web_state(request).backend.scoreboard_raw(
            f"/v1/scores/{scenario_id}/recordings/{name}")
    except BackendError as exc:
        raise ForgeError("recording_unavailable", exc.status, exc.message) from None
    headers = security_headers()
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(resp.content, media_type=CAST_MEDIA_TYPE, headers=headers)


def with_player(response: HTMLResponse) -> HTMLResponse:
    """A page that runs the recording player (its CSP allows compiling WebAssembly)."""
    response.headers["Content-Security-Policy"] = PLAYER_CSP
    return response


@router.get("/lab/{scenario_id}/recordings/{name}")
async def lab_recording(scenario_id: str, name: str, request: Request) -> Response:
    """One terminal recording (asciicast v2) of the learner's own graded lab."""
    if not RECORDING_NAME_RE.fullmatch(name):
        raise ForgeError("not_found", 404,
                         "name: no such recording (one is named <host>.<n>.cast)",
                         [{"field": "name", "expected": "<host>.<n>.cast"}])
    row = await spawn_routes.owned_scenario(request, scenario_id)
    return await cast_download(request, row.scenario_id, name)


__all__ = ["cast_download", "lab_recording", "recording_names", "router", "with_player"]
