"""The invite link's page: `/join/<code>` shows which class it leads to and a Join button
(signed out: sign in first, then back here). Joining is a POST with the session's CSRF
token, so a link alone, opened by a crawler or a preview, enrols nobody."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.classroom.cohort_invites import invited_cohort, join_by_invite
from forge.errors import ForgeError
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.errors import PageError, error_response, page_for, signin_url
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


# An invite is looked up in the signed-in learner's own organisation only, so a link of
# another organisation's class reads as unknown (it is not said which, by design). A
# newcomer who bought a plan on the way has an account of their own, not the class's
# organisation's: the page says so and how to sign in with the organisation's account.
INVITE_REFUSED = ("This invite link is unknown, expired or revoked, or it is for a class of "
                  "another organisation than the account you are signed in with (an account "
                  "made by buying a plan here is one of its own). If your organisation gave "
                  "you a sign-in key, a receipt or single sign-on, sign in with it and open "
                  "the link again; otherwise ask your instructor for a new link.")


async def _refused(request: Request, exc: ForgeError, code: str) -> Response:
    if exc.code != "invite_invalid":
        return await page_for(request, exc, "/tracks")
    return error_response(request, PageError(
        404, "This invite link does not lead to a class for you", INVITE_REFUSED, "/tracks",
        signin_url(_here(code))), None, await viewer(request))


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
        return await _refused(request, exc, code)
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
        return await _refused(request, exc, code)
    return RedirectResponse("/tracks#assignments", status_code=303)
