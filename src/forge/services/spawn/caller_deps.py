"""Request → verified caller (and receipt), mapping identity errors to API errors."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from forge.entitlements.resolve import EntitlementError, verify_receipt
from forge.identity.caller import AuthError, Caller, resolve_caller
from forge.services.common.errors import ApiError
from forge.services.spawn.state import SpawnState

RECEIPT_HEADER = "x-receipt-token"


def spawn_state(request: Request) -> SpawnState:
    state: SpawnState = request.app.state.spawn
    return state


def receipt_claims(request: Request) -> dict[str, Any] | None:
    """Verified receipt claims when the request carries one (401 when it is bad)."""
    token = request.headers.get(RECEIPT_HEADER)
    if not token:
        return None
    try:
        return verify_receipt(spawn_state(request).settings, token.strip())
    except EntitlementError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None


def identify_caller(request: Request, receipt: dict[str, Any] | None = None) -> Caller:
    """The verified caller of this request, or 401 (blocking: call from a worker thread)."""
    state = spawn_state(request)
    try:
        return resolve_caller(request.headers, request.cookies, state.settings, state.ctx.db,
                              receipt)
    except AuthError as exc:
        raise ApiError(401, exc.code, exc.message) from None


async def current_caller(request: Request, receipt: dict[str, Any] | None = None) -> Caller:
    """The verified caller of this request, or 401."""
    return await run_in_threadpool(identify_caller, request, receipt)
