"""Who is looking at a page: the signed-in learner, their plan, and the CSRF token of their
session; every learner page's header shows them with a sign-out button."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.entitlements.resolve import EntitlementError, resolve_entitlement, verify_receipt
from forge.identity.caller import SESSION_COOKIE, AuthError, Caller
from forge.services.spawn.caller_deps import current_caller, spawn_state
from forge.services.spawn.web.security import (
    KEY_COOKIE,
    RECEIPT_COOKIE,
    csrf_token,
    session_value,
)


@dataclass(frozen=True)
class Viewer:
    """The signed-in learner as the header shows them."""

    caller: Caller
    plan: str | None
    csrf: str
    key_waiting: bool = False  # a new sign-in key waits to be shown on the account page


def receipt_cookie(request: Request) -> dict[str, Any] | None:
    """The verified claims of the receipt kept in the browser, else None."""
    token = request.cookies.get(RECEIPT_COOKIE)
    if not token:
        return None
    try:
        return verify_receipt(spawn_state(request).settings, token)
    except EntitlementError:
        return None


async def signed_in(request: Request) -> Caller | None:
    """The learner of the session cookie, or None (no cookie, or not a valid one)."""
    if not request.cookies.get(SESSION_COOKIE):
        return None
    try:
        return await current_caller(request)
    except AuthError:
        return None


async def viewer(request: Request) -> Viewer | None:
    """The header's learner and plan (None when nobody is signed in)."""
    caller = await signed_in(request)
    if caller is None:
        return None
    state = spawn_state(request)
    try:
        ent = await run_in_threadpool(lambda: resolve_entitlement(
            caller, settings=state.settings, catalog=state.catalog, db=state.ctx.db,
            receipt_claims=receipt_cookie(request), entitlements_file=state.entitlements_file))
        plan: str | None = ent.plan.name
    except EntitlementError:
        plan = None
    return Viewer(caller, plan, csrf_token(state.settings, session_value(request) or ""),
                  bool(request.cookies.get(KEY_COOKIE))
                  and not request.url.path.startswith("/account"))
