"""Operator pages: sign in with OPERATOR_TOKEN; scenarios, readiness, policy hash, failed
completion events (with reprocess), retention holds and signing key ids on one page."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.config.keyring import derive_kid
from forge.errors import ForgeError
from forge.identity.caller import revoke_session, session_revoked
from forge.identity.names import valid_id
from forge.identity.roles import OPERATOR, role_of
from forge.policy.rego_bundle import policy_hash
from forge.services.common.app import ServiceContext
from forge.services.common.auth import operator_token_accepted
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.backend import BackendError
from forge.services.spawn.web.render import error_page, page
from forge.services.spawn.web.security import (
    OPENED_BY_SUBJECT,
    OPENED_BY_TENANT,
    OPENED_WITH_KID,
    OPERATOR_SESSION_TTL_S,
    OPS_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    csrf_token,
    operator_session,
    operator_session_claims,
    read_form,
    set_cookie,
)
from forge.services.spawn.web.state import web_state

router = APIRouter(include_in_schema=False)
STATE_FILTER = re.compile(r"^[a-z]{1,16}\Z")
TRACK_FILTER = re.compile(r"^[a-z0-9_-]{1,32}\Z")
POLICY_HASH = re.compile(r"policy hash ([0-9a-f]{64})")
OPS_FAILED_EVENTS = 500  # the failed events listed (oldest first); past it, a notice
OPS_REPROCESSED_EVENTS = 20  # the last reprocessed events listed
SCENARIO_STATES = ("pending", "launching", "running", "grading", "completed", "failed",
                   "expired", "deleted")


def _count(raw: str) -> bool:
    """A count in a query parameter: ASCII digits only (`'²'.isdigit()`, but int() fails)."""
    return raw.isascii() and raw.isdigit() and len(raw) <= 9


def _ops_session_live(state: Any, claims: dict[str, object]) -> bool:
    """Not signed out, and (for one opened through OIDC) its operator still one."""
    db = state.ctx.db
    if session_revoked(db, claims):
        return False
    tenant, subject = claims.get(OPENED_BY_TENANT), claims.get(OPENED_BY_SUBJECT)
    if tenant is None and subject is None:
        return True
    return (isinstance(tenant, str) and isinstance(subject, str)
            and role_of(db, tenant, subject) == OPERATOR)


def end_ops_session(request: Request) -> None:
    """Refuse this browser's operator session from now on, everywhere (blocking)."""
    state = spawn_state(request)
    claims = operator_session_claims(state.settings, request.cookies.get(OPS_COOKIE))
    if claims is not None:
        revoke_session(state.ctx.db, claims)


async def _is_operator(request: Request) -> bool:
    """A valid operator session, not signed out, opened with an OPERATOR_TOKEN still in
    force (or through OIDC by someone who is still an operator)."""
    state = spawn_state(request)
    claims = operator_session_claims(state.settings, request.cookies.get(OPS_COOKIE))
    if claims is None:
        return False
    if not await run_in_threadpool(_ops_session_live, state, claims):
        return False
    kid = claims.get(OPENED_WITH_KID)
    if kid is None or state.operator_keys is None:
        return True
    await state.operator_keys.refresh()
    return isinstance(kid, str) and state.operator_keys.allows_kid(kid)


@router.get("/ops/signin")
async def ops_signin_page(request: Request) -> Response:
    """The operator sign-in form."""
    return page("ops_signin.html", {"title": "Operator sign in"})


@router.post("/ops/signin")
async def ops_signin(request: Request) -> Response:
    """Check the operator token (constant time, any key of the ring) and open a session."""
    try:
        check_same_origin(request)
        form = await read_form(request)
    except ForgeError as exc:
        return error_page(exc.status, exc.message, back="/ops/signin")
    state = spawn_state(request)
    settings = state.settings
    token = form.get("token", "")
    if not token or not await operator_token_accepted(token, settings, state.operator_keys):
        return error_page(401, "token: operator token not accepted", back="/ops/signin")
    response = RedirectResponse("/ops", status_code=303)
    set_cookie(response, request, OPS_COOKIE,
               operator_session(settings, derive_kid(token.encode())), OPERATOR_SESSION_TTL_S)
    return response


@router.post("/ops/signout")
async def ops_signout(request: Request) -> Response:
    """End the operator session: its cookie is refused from now on, not only dropped."""
    check_same_origin(request)
    await run_in_threadpool(end_ops_session, request)
    response = RedirectResponse("/ops/signin", status_code=303)
    clear_cookie(response, request, OPS_COOKIE)
    return response


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    filters = {k: q.get(k, "").strip() for k in ("state", "tenant_id", "track")}
    if filters["state"] and not STATE_FILTER.match(filters["state"]):
        raise ForgeError("invalid_filter", 400, "state: lowercase letters only")
    if filters["tenant_id"] and not valid_id(filters["tenant_id"]):
        raise ForgeError("invalid_filter", 400, "tenant_id: 1-128 chars of [A-Za-z0-9._@:-]")
    if filters["track"] and not TRACK_FILTER.match(filters["track"]):
        raise ForgeError("invalid_filter", 400, "track: 1-32 chars of [a-z0-9_-]")
    return filters


async def _readiness(request: Request) -> dict[str, dict[str, Any]]:
    ctx: ServiceContext = request.app.state.ctx
    _, spawn_body = await ctx.readiness.run()
    backend = web_state(request).backend
    return {"spawn_service": spawn_body,
            "orchestrator": await backend.readiness("orchestrator"),
            "scoreboard": await backend.readiness("scoreboard")}


def _loaded_policy_hash(orchestrator: dict[str, Any]) -> str | None:
    for check in (orchestrator.get("checks") or {}).values():
        found = POLICY_HASH.search(str(check.get("detail", "")))
        if found:
            return found.group(1)
    return None


def _local_hash(request: Request) -> str | None:
    try:
        return policy_hash(spawn_state(request).settings.policies_dir)
    except Exception:  # a broken bundle is shown, not raised: this page is for diagnosis
        return None


async def _scoreboard_facts(request: Request) -> dict[str, Any]:
    """Signing key ids and retention holds, from the scoreboard's operator API (services
    share no disk); an unreachable scoreboard is said on the page, not raised."""
    backend = web_state(request).backend
    keys, keys_error = await _optional(backend.scoreboard("GET", "/v1/admin/signing-keys"))
    holds, holds_error = await _optional(
        backend.scoreboard("GET", "/v1/admin/retention/holds"))
    return {
        "keys": (keys or {}).get("keys", []),
        "keys_error": f"signing keys unavailable: {keys_error}" if keys_error else None,
        "holds": (holds or {}).get("holds", []),
        "holds_error": f"retention holds unavailable: {holds_error}" if holds_error else None,
    }


async def _optional(call: Any) -> tuple[Any, str | None]:
    try:
        return await call, None
    except BackendError as exc:
        return None, str(exc)


@router.get("/ops")
async def ops_page(request: Request) -> Response:
    """Everything an operator checks first, on one page."""
    if not await _is_operator(request):
        return RedirectResponse("/ops/signin", status_code=303)
    try:
        filters = _filters(request)
    except ForgeError as exc:
        return error_page(exc.status, exc.message, back="/ops")
    backend = web_state(request).backend
    params = {k: v for k, v in filters.items() if v}
    scenarios, scenarios_error = await _optional(
        backend.orchestrator("GET", "/v1/scenarios", params={**params, "limit": 200}))
    # The failed events needing action (oldest first, as they are worked off) and the
    # last ones reprocessed (latest first): a long history never hides a new failure.
    events, events_error = await _optional(
        backend.scoreboard("GET", "/v1/admin/failed-events",
                           params={"status": "failed", "limit": OPS_FAILED_EVENTS}))
    recent, recent_error = await _optional(
        backend.scoreboard("GET", "/v1/admin/failed-events",
                           params={"status": "reprocessed", "order": "reprocessed",
                                   "limit": OPS_REPROCESSED_EVENTS}))
    readiness = await _readiness(request)
    facts = {"local_hash": await run_in_threadpool(_local_hash, request),
             **await _scoreboard_facts(request)}
    notice = None
    done, failed = request.query_params.get("reprocessed"), request.query_params.get("failed")
    if done is not None and _count(done) and _count(failed or "0"):
        notice = f"Reprocessed {int(done)} event(s); {int(failed or '0')} still failing."
    return page("ops.html", {
        "title": "Forge operator", "filters": filters, "states": SCENARIO_STATES,
        "scenarios": (scenarios or {}).get("items", []), "scenarios_error": scenarios_error,
        "events": (events or {}).get("events", []), "events_error": events_error,
        "more_failed": (events or {}).get("next") is not None,
        "reprocessed": (recent or {}).get("events", []), "reprocessed_error": recent_error,
        "readiness": readiness,
        "loaded_hash": _loaded_policy_hash(readiness["orchestrator"]), **facts,
        "csrf": csrf_token(spawn_state(request).settings, request.cookies.get(OPS_COOKIE, "")),
        "notice": notice,
    })


@router.post("/ops/failed-events/reprocess")
async def ops_reprocess(request: Request) -> Response:
    """Replay one failed completion event (or all) through the scoreboard."""
    if not await _is_operator(request):
        return error_page(401, "operator session required", back="/ops/signin")
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(spawn_state(request).settings, request.cookies.get(OPS_COOKIE),
                   form.get("csrf"))
        raw_id = form.get("id", "")
        if form.get("all") == "true":
            body: dict[str, Any] = {"all": True}
        elif raw_id.isascii() and raw_id.isdigit() and int(raw_id) >= 1:
            body = {"id": int(raw_id)}
        else:
            raise ForgeError("invalid_form", 400, "id: a failed event number, or all=true")
        result = await web_state(request).backend.scoreboard(
            "POST", "/v1/admin/failed-events/reprocess", json=body)
    except ForgeError as exc:  # ours, or a service's refusal (BackendError)
        return error_page(exc.status, exc.message, back="/ops")
    return RedirectResponse(
        f"/ops?reprocessed={int(result.get('reprocessed', 0))}"
        f"&failed={int(result.get('failed', 0))}#failed-events", status_code=303)
