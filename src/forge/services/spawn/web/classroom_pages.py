"""The invite link's page: `/join/<code>` shows which class it leads to and a Join button
(signed out: sign in first, then back here). Joining is a POST with the session's CSRF
token, so a link alone, opened by a crawler or a preview, enrols nobody."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.classroom.cohorts import invited_cohort, join_by_invite
from forge.errors import ForgeError
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.errors import page_for, signin_url
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    csrf_token,
    read_form,
    session_value,
)
from forge.services.spawn.web.viewer import signed_in, viewer

router = APIRouter(include_in_schema=False)
MAX_CODE = 100


def _here(code: str) -> str:
    return "/join/" + quote(code[:MAX_CODE], safe="")


@router.get("/join/{code}")
async def join_page(code: str, request: Request) -> Response:
    """The class an invite link leads to, with a Join button."""
    caller = await signed_in(request)
    if caller is None or caller.scenario_scope is not None:
        return RedirectResponse(signin_url(_here(code)), status_code=303)
    state = spawn_state(request)
    try:
        cohort = await run_in_threadpool(invited_cohort, state.ctx.db, caller.tenant_id, code)
    except ForgeError as exc:
        return await page_for(request, exc, "/tracks")
    return page("join.html", {
        "title": "Join a class", "viewer": await viewer(request), "name": cohort.name,
        "action": _here(code), "csrf": csrf_token(state.settings, session_value(request) or ""),
    })


@router.post("/join/{code}")
async def join_post(code: str, request: Request) -> Response:
    """Join the class, then show the tracks page with the class's assignments."""
    caller = await signed_in(request)
    if caller is None or caller.scenario_scope is not None:
        return RedirectResponse(signin_url(_here(code)), status_code=303)
    state = spawn_state(request)
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(state.settings, session_value(request), form.get("csrf"))
        await run_in_threadpool(join_by_invite, state.ctx.db, caller.tenant_id,
                                caller.subject, code)
    except ForgeError as exc:
        return await page_for(request, exc, "/tracks")
    return RedirectResponse("/tracks#assignments", status_code=303)
