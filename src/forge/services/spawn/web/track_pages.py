"""Learner pages to pick a lab: the tracks page (a card per lab, the class's assignments,
recent labs) and the form that starts the chosen lab. The lab itself is `lab_pages`.

Server-rendered; the form POST is same-origin and CSRF-checked.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from forge.classroom.assignments import my_assignments_capped
from forge.entitlements.resolve import EntitlementError, resolve_entitlement
from forge.identity.caller import Caller
from forge.identity.roles import LEARNER
from forge.services.spawn.caller_deps import manager_of, spawn_state
from forge.services.spawn.start import start_lab
from forge.services.spawn.tracks import grouped, startable
from forge.services.spawn.web.errors import as_page, human_message, signin_url
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    check_csrf,
    check_same_origin,
    csrf_token,
    read_form,
    session_value,
)
from forge.services.spawn.web.viewer import receipt_cookie, signed_in, viewer
from forge.store.models import Scenario

router = APIRouter(include_in_schema=False)


def _recent(request: Request, caller: Caller) -> list[Scenario]:
    stmt = (select(Scenario).where(Scenario.tenant_id == caller.tenant_id,
                                   Scenario.subject == caller.subject)
            .order_by(Scenario.created_at.desc()).limit(20))
    with spawn_state(request).ctx.db.read() as sess:
        rows = list(sess.scalars(stmt))
        for row in rows:
            sess.expunge(row)
    return rows


@router.get("/tracks")
async def tracks_page(request: Request) -> Response:
    """A card per lab, grouped by track (locked where the plan lacks it), and recent labs."""
    caller = await signed_in(request)
    if caller is None or caller.scenario_scope is not None:
        return RedirectResponse(signin_url("/tracks"), status_code=303)
    state = spawn_state(request)
    try:
        ent = await run_in_threadpool(lambda: resolve_entitlement(
            caller, settings=state.settings, catalog=state.catalog, db=state.ctx.db,
            receipt_claims=receipt_cookie(request), entitlements_file=state.entitlements_file))
    except EntitlementError as exc:
        return page("no_plan.html", {"title": "Choose a plan to start",
                                     "viewer": await viewer(request),
                                     "why": human_message(exc)}, status=exc.status)
    role = (await manager_of(request, caller)).role
    mine, more = await run_in_threadpool(my_assignments_capped, state.ctx.db,
                                         caller.tenant_id, caller.subject)
    return page("tracks.html", {
        "title": "Choose a lab", "caller": caller, "plan": ent.plan.name,
        "teaches": role != LEARNER,  # a link to /teach for instructors and operators
        "viewer": await viewer(request),
        "groups": grouped(state, ent.plan),
        "lab_title": state.lab_title,
        "recent": await run_in_threadpool(_recent, request, caller),
        "assignments": _windowed(startable(state, mine)),
        "assignments_more": more,
        "csrf": csrf_token(state.settings, session_value(request) or ""),
        "request_id": "web-" + secrets.token_hex(12),
    })


def _windowed(mine: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each assignment with `window`: "upcoming", "open" or "closed" now (the learner's own
    due time), as the spawn gate judges it, so the page offers Start only when it may."""
    now = datetime.now(UTC)
    for a in mine:
        opens, closes = (datetime.fromisoformat(a[k]) for k in ("opens_at", "closes_at"))
        a["window"] = "upcoming" if now < opens else "closed" if now >= closes else "open"
    return mine


@router.post("/spawn")
async def spawn_lab(request: Request) -> Response:
    """Start the chosen lab (track + lab; no lab: the track's default), then show its page
    (no token in any URL)."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        state = spawn_state(request)
        check_csrf(state.settings, session_value(request), form.get("csrf"))
        answer = await start_lab(request, track=form.get("track"), lab=form.get("lab"),
                                 request_id=form.get("request_id"),
                                 receipt=receipt_cookie(request),
                                 assignment=form.get("assignment_id"))
        return RedirectResponse(f"/lab/{answer.body['scenario_id']}", status_code=303)
    return await as_page("/tracks", request)(run)
