"""Request → verified caller (and receipt); their errors are ForgeErrors the app maps to HTTP."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from forge.classroom.cohorts import Manager
from forge.entitlements.resolve import verify_receipt
from forge.identity.caller import Caller
from forge.identity.roles import LEARNER, role_of
from forge.services.common.caller_receipt import RECEIPT_HEADER, caller_of
from forge.services.common.store_reads import read_call
from forge.services.spawn.state import SpawnState


def spawn_state(request: Request) -> SpawnState:
    state: SpawnState = request.app.state.spawn
    return state


def receipt_claims(request: Request) -> dict[str, Any] | None:
    """Verified receipt claims when the request carries one (401 when it is bad)."""
    token = request.headers.get(RECEIPT_HEADER)
    if not token:
        return None
    return verify_receipt(spawn_state(request).settings, token.strip())


def identify_caller(request: Request, receipt: dict[str, Any] | None = None) -> Caller:
    """The verified caller of this request, or 401 (blocking: a read, see `read_call`).

    Without a `receipt` given (the browser's receipt cookie, already verified), the API's
    `x-receipt-token` header counts on every route, in `resolve_caller`'s order: only when
    no API key or session signed the request in is it verified and used (a receipt that
    names its learner is an identity; a bad one is then 401 `invalid_receipt`). A stale
    receipt sent along with a valid key never locks the key out."""
    state = spawn_state(request)
    return caller_of(request.headers, request.cookies, state.settings, state.ctx.db,
                     method=request.method, receipt=receipt)


async def current_caller(request: Request, receipt: dict[str, Any] | None = None) -> Caller:
    """The verified caller of this request, or 401."""
    return await read_call(spawn_state(request).ctx.db, identify_caller, request, receipt)


async def manager_of(request: Request, caller: Caller) -> Manager:
    """The caller with their role in their tenant, as the classroom functions take it (a
    lab's access link is a learner). One place for the cohort API, /teach and the
    dashboard, so they cannot disagree on who manages."""
    role = LEARNER
    if caller.scenario_scope is None:
        db = spawn_state(request).ctx.db
        role = await read_call(db, role_of, db, caller.tenant_id, caller.subject)
    return Manager(caller.tenant_id, caller.subject, role)


async def current_manager(request: Request) -> Manager:
    """The API caller (key, session or receipt; 401 otherwise) as a Manager. Resolving the
    caller already refuses a cross-site POST made with the session cookie; a lab's access
    link session is refused (403 `lab_session_only`): it may not join or read cohorts."""
    return await manager_of(request, (await current_caller(request)).whole_account())
