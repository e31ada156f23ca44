"""Learner pages: sign in, pick a track, the lab (task, hosts, timer, terminal, submit, results).

Server-rendered; every form POST is same-origin and CSRF-checked; the only JavaScript is
static files (status polling, countdown, terminal). Scenario pages are owner-only (404 else).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from forge.classroom.assignments import my_assignments
from forge.entitlements.resolve import EntitlementError, resolve_entitlement, verify_receipt
from forge.errors import ForgeError
from forge.grading.watched_checks import watched
from forge.identity.apikeys import verify_api_key
from forge.identity.caller import SESSION_COOKIE, Caller, receipt_subject
from forge.lifecycle.store import ScenarioRow
from forge.lifecycle.visibility import learner_view
from forge.services.spawn import routes as spawn_routes
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.start import start_lab
from forge.services.spawn.tracks import grouped, startable
from forge.services.spawn.web.account import purchase_offer
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.credential import credential_offer
from forge.services.spawn.web.errors import (
    human_message,
    page_for,
    safe_next,
    signin_url,
)
from forge.services.spawn.web.recordings import recording_names, with_player
from forge.services.spawn.web.render import error_page, page, render_markdown
from forge.services.spawn.web.result import VERIFY_STANDALONE, result_view
from forge.services.spawn.web.security import (
    KEY_COOKIE,
    OPS_COOKIE,
    RECEIPT_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    csrf_token,
    learner_session,
    read_form,
    security_headers,
    session_value,
    set_cookie,
)
from forge.services.spawn.web.signout import end_terminals
from forge.services.spawn.web.state import ARTIFACT_NAMES, web_state
from forge.services.spawn.web.tasks import hint_charge, hints_view
from forge.services.spawn.web.viewer import receipt_cookie, signed_in, viewer
from forge.store.models import Scenario
from forge.store.timestamps import aware

router = APIRouter(include_in_schema=False)
EXTEND_WINDOW = timedelta(minutes=10)
FINISHED = ("completed", "failed", "expired", "deleted")
SUBMIT_SETTLE_STEPS = 30


def _as_page(back: str, request: Request | None = None
             ) -> Callable[[Callable[[], Awaitable[Response]]], Awaitable[Response]]:
    """Run a page handler; a ForgeError becomes a page for people (with `request`: in plain
    words, a sign-in redirect for a signed-out GET; without: the message as it is)."""
    async def run(fn: Callable[[], Awaitable[Response]]) -> Response:
        try:
            return await fn()
        except ForgeError as exc:  # ours, or a service's refusal (BackendError)
            if request is None:
                return error_page(exc.status, exc.message, back=back)
            return await page_for(request, exc, back)
    return run


@router.get("/")
async def home(request: Request) -> Response:
    """Signed in: the track list; otherwise the sign-in page."""
    target = "/tracks" if await signed_in(request) else "/signin"
    return RedirectResponse(target, status_code=303)


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    """The sign-in form (API key or receipt); `next` is where a successful sign-in goes."""
    return page("signin.html", {"title": "Sign in", "viewer": await viewer(request),
                                "next": safe_next(request.query_params.get("next")),
                                "purchase": await purchase_offer(request)})


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Verify an API key or a receipt, then set an unscoped learner session."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        state = spawn_state(request)
        settings = state.settings
        api_key, receipt = form.get("api_key", ""), form.get("receipt", "")
        claims: dict[str, Any] | None = None
        if api_key:
            record = await run_in_threadpool(verify_api_key, state.ctx.db, api_key)
            if record is None:
                raise ForgeError("invalid_api_key", 401, "api_key: unknown or revoked API key")
            tenant, subject = record.tenant_id, record.subject
        elif receipt:
            try:
                claims = verify_receipt(settings, receipt)
            except EntitlementError:
                raise ForgeError("receipt_refused", 401, "receipt: this receipt cannot be "
                                 "used: it has expired or it was changed") from None
            learner = receipt_subject(claims)
            if learner is None:
                # No learner, or one named by whoever bought it (not proven): never a sign-in.
                why = "does not prove its learner" if claims.get("sub") else "names no learner"
                raise ForgeError("receipt_without_learner", 400,
                                 f"receipt: this receipt {why}; sign in with an API key")
            tenant, subject = str(claims["tenant_id"]), learner
        else:
            raise ForgeError("credentials_required", 400, "api_key or receipt: enter one of them")
        response = RedirectResponse(safe_next(form.get("next")), status_code=303)
        set_cookie(response, request, SESSION_COOKIE,
                   learner_session(settings, tenant, subject), 8 * 3600)
        if claims is not None:
            set_cookie(response, request, RECEIPT_COOKIE, receipt, 8 * 3600)
        else:
            clear_cookie(response, request, RECEIPT_COOKIE)
        return response
    return await _as_page("/signin", request)(run)


@router.post("/signout")
async def signout(request: Request) -> Response:
    """End the learner session (same-origin POST carrying the session's CSRF token): the
    session is refused from now on and every terminal it opened, here and on the lab nodes,
    is closed. The purchase kept in this browser stays (the sign-in page offers to continue
    with it, or to forget it); a new sign-in key not yet shown is dropped."""
    check_same_origin(request)
    form = await read_form(request)
    if session_value(request):
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
    await end_terminals(request)
    response = RedirectResponse("/signin", status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    clear_cookie(response, request, KEY_COOKIE)
    clear_cookie(response, request, OPS_COOKIE)  # an operator role from single sign-on too
    return response


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
    return page("tracks.html", {
        "title": "Choose a lab", "caller": caller, "plan": ent.plan.name,
        "viewer": await viewer(request),
        "groups": grouped(state, ent.plan),
        "recent": await run_in_threadpool(_recent, request, caller),
        "assignments": startable(state, await run_in_threadpool(
            my_assignments, state.ctx.db, caller.tenant_id, caller.subject)),
        "csrf": csrf_token(state.settings, session_value(request) or ""),
        "request_id": "web-" + secrets.token_hex(12),
    })


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
    return await _as_page("/tracks", request)(run)


def _remaining_s(row: ScenarioRow) -> int | None:
    if row.expires_at is None:
        return None
    expires = aware(row.expires_at)
    return max(0, int((expires - datetime.now(UTC)).total_seconds()))


async def _result(request: Request, row: ScenarioRow) -> dict[str, Any] | None:
    """The scoreboard's score and verification, once the verdict exists."""
    if row.state != "completed":
        return None
    try:
        body: dict[str, Any] = await web_state(request).backend.scoreboard(
            "GET", f"/v1/scores/{row.scenario_id}")
    except BackendError as exc:
        if exc.status == 404:
            return None
        raise
    return body


def _expires_iso(row: ScenarioRow) -> str:
    if row.expires_at is None:
        return ""
    expires = aware(row.expires_at)
    return expires.isoformat()


@router.get("/lab/{scenario_id}")
async def lab_page(scenario_id: str, request: Request) -> Response:
    """The lab: task, hosts, time left, terminal, submit; after grading the verdict."""
    async def run() -> Response:
        row = await spawn_routes.owned_scenario(request, scenario_id)
        web = web_state(request)
        description, tasks = "", []
        if row.template_id in web.templates:
            spec = web.templates.get(row.template_id).template.spec
            description = spec.description
            shells = web.templates.learner_hosts(row.template_id)
            # A task Submit alone checks (its check could be watched) offers no button.
            tasks = [{"id": c.id, "description": c.description,
                      "checkable": not watched(c, shells)} for c in spec.success_criteria]
        hints = await hints_view(request, row)  # texts of revealed hints only
        for h in hints:
            if "text" in h:
                h["html"] = render_markdown(h["text"])
        remaining = _remaining_s(row)
        result = await _result(request, row)
        settings = spawn_state(request).settings
        terminal_hosts = spawn_routes.learner_hosts(spawn_state(request), row)
        hosts, other_hosts = learner_view(row.details.get("hosts", {}), terminal_hosts)
        return page("lab.html", {
            "title": f"Lab {row.scenario_id}", "row": row,
            "task": render_markdown(description) if description else None,
            "hints": hints if row.state == "running" else [h for h in hints if h["revealed"]],
            "hint_charge": hint_charge(hints), "tasks": tasks,
            "hosts": hosts, "other_hosts": other_hosts, "terminal_hosts": terminal_hosts,
            "remaining": remaining,
            "expires_iso": _expires_iso(row),
            "extend_open": row.state == "running" and remaining is not None
            and remaining <= EXTEND_WINDOW.total_seconds(),
            "extend": _extend_facts(request, row),
            "viewer": await viewer(request),
            "finished": row.state in FINISHED,
            "csrf": csrf_token(settings, session_value(request) or ""),
            **_result_context(row, result),
        }, terminal=row.state == "running")
    return await _as_page("/tracks", request)(run)


EXTEND_STEP_MIN = 15


def _extend_facts(request: Request, row: ScenarioRow) -> dict[str, Any]:
    """What the Extend block says: the step, the plan's maximum, when it opens, and whether
    the maximum is reached (the orchestrator enforces the same rules)."""
    plan = spawn_state(request).catalog.get(row.plan)
    max_min = plan.max_lab_minutes if plan is not None else 60
    facts: dict[str, Any] = {"step": EXTEND_STEP_MIN, "max_minutes": max_min,
                             "opens_iso": "", "at_cap": False}
    if row.expires_at is not None:
        expires = aware(row.expires_at)
        facts["opens_iso"] = (expires - EXTEND_WINDOW).isoformat()
        facts["at_cap"] = expires >= aware(row.created_at) + timedelta(minutes=max_min)
    return facts


def _result_context(row: ScenarioRow, result: dict[str, Any] | None) -> dict[str, Any]:
    """What result_section.html needs: the worded result, downloads, verify command."""
    names = [n for n in (result or {}).get("artifacts", []) if n in ARTIFACT_NAMES]
    return {
        "view": result_view(result) if result is not None else None,
        "scenario_id": row.scenario_id, "artifact_names": names,
        "bundle_name": next((n for n in names if n.startswith("evidence")), "evidence.tar.zst"),
        "verifier_dist": VERIFY_STANDALONE, "credential": credential_offer(result),
    }


@router.get("/lab/{scenario_id}/result")
async def lab_result(scenario_id: str, request: Request) -> Response:
    """The graded result on its own page: a stable link for its owner, also after the lab."""
    async def run() -> Response:
        row = await spawn_routes.owned_scenario(request, scenario_id)
        result = await _result(request, row)
        if result is None:
            raise ForgeError("result_not_ready", 404,
                             "This lab has no result yet: it appears here once it is graded.")
        return with_player(page("result.html", {
            "title": f"Result of lab {row.scenario_id}", "track": row.track,
            "viewer": await viewer(request),
            **_result_context(row, result),
            "recordings": await recording_names(request, row.scenario_id),
        }))
    return await _as_page(f"/lab/{scenario_id}", request)(run)


@router.get("/lab/{scenario_id}/status")
async def lab_status(scenario_id: str, request: Request) -> JSONResponse:
    """What the lab page polls: state, deadline, and whether the verdict is in."""
    row = await spawn_routes.owned_scenario(request, scenario_id)
    try:
        score_ready = await _result(request, row) is not None
    except BackendError:
        score_ready = False
    return JSONResponse({"state": row.state, "reason": row.state_reason,
                         "expires_at": _expires_iso(row), "remaining_s": _remaining_s(row),
                         "score_ready": score_ready},
                        headers={"Cache-Control": "no-store"})


@router.post("/lab/{scenario_id}/submit")
async def lab_submit(scenario_id: str, request: Request) -> Response:
    """Hand the lab in for grading, once confirmed (the page's dialog, or without script a
    confirmation page saying what ends)."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        if form.get("confirm") != "yes":
            row = await spawn_routes.owned_scenario(request, scenario_id)
            return page("submit_confirm.html", {
                "title": "Submit this lab?", "row": row, "csrf": form.get("csrf", ""),
                "hint_charge": hint_charge(await hints_view(request, row))})
        await spawn_routes.submit(scenario_id, request)
        # Grading starts within moments; showing the page after that avoids opening a terminal
        # on a lab that is already being graded. The page follows the state by itself anyway.
        for _ in range(SUBMIT_SETTLE_STEPS):
            row = await spawn_routes.owned_scenario(request, scenario_id)
            if row.state != "running":
                break
            await asyncio.sleep(0.1)
        return RedirectResponse(f"/lab/{scenario_id}", status_code=303)
    return await _as_page(f"/lab/{scenario_id}", request)(run)


@router.post("/lab/{scenario_id}/extend")
async def lab_extend(scenario_id: str, request: Request) -> Response:
    """More time (the orchestrator allows it only in the last 10 minutes, within the plan)."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
        row = await spawn_routes.owned_scenario(request, scenario_id)
        raw = form.get("minutes", "15")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 60:
            raise ForgeError("invalid_minutes", 400, "minutes: a whole number from 1 to 60")
        await web_state(request).backend.lab_node(
            row.node_id, row.node_url, "POST", f"/v1/scenarios/{row.scenario_id}/extend",
            json={"minutes": int(raw)})
        return RedirectResponse(f"/lab/{scenario_id}", status_code=303)
    return await _as_page(f"/lab/{scenario_id}", request)(run)


@router.get("/lab/{scenario_id}/artifacts/{name}")
async def lab_artifact(scenario_id: str, name: str, request: Request) -> Response:
    """Download one of the four result files of the learner's own lab."""
    if name not in ARTIFACT_NAMES:
        raise ForgeError("not_found", 404, "artifact not found",
                         [{"field": "name", "allowed": sorted(ARTIFACT_NAMES)}])
    row = await spawn_routes.owned_scenario(request, scenario_id)
    try:
        resp = await web_state(request).backend.scoreboard_raw(
            f"/v1/scores/{row.scenario_id}/artifacts/{name}")
    except BackendError as exc:
        raise ForgeError("artifact_unavailable", exc.status, exc.message) from None
    headers = security_headers()
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(resp.content, media_type=ARTIFACT_NAMES[name], headers=headers)
