"""Sign-in and sign-out pages: an API key or a receipt starts a learner session; signing
out revokes it and ends its terminals (``signout``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.entitlements.resolve import EntitlementError, verify_receipt
from forge.errors import ForgeError
from forge.identity.apikeys import verify_api_key
from forge.identity.caller import SESSION_COOKIE, receipt_subject
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.account import purchase_offer
from forge.services.spawn.web.checkout import CHECKOUT_COOKIE, CHECKOUT_PAGE_COOKIE
from forge.services.spawn.web.errors import as_page, human_message, safe_next
from forge.services.spawn.web.ops import end_ops_session
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    KEY_COOKIE,
    LEARNER_SESSION_TTL_S,
    OPS_COOKIE,
    RECEIPT_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    learner_session,
    read_form,
    session_value,
    set_cookie,
)
from forge.services.spawn.web.signout import end_another_persons, end_terminals
from forge.services.spawn.web.viewer import signed_in, viewer

router = APIRouter(include_in_schema=False)


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


# Refusals of what was typed into the form: shown on the form again, beside the field, so
# the learner fixes it there (review CC: a separate page, and "api_key or receipt").
_ON_THE_FORM = {"invalid_api_key": "api_key", "credentials_required": "api_key",
                "receipt_refused": "receipt", "receipt_without_learner": "receipt"}
_SAID = {"credentials_required": "Enter your sign-in key, or paste a receipt from your "
                                  "organisation.",
         "receipt_refused": "This receipt cannot be used: it has expired or it was changed. "
                            "Sign in with your sign-in key, or choose a plan."}


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Verify an API key or a receipt, then set an unscoped learner session; a key or
    receipt refused is said on the sign-in form, beside its field."""
    async def run() -> Response:
        check_same_origin(request)
        form = await read_form(request)
        try:
            return await _sign_in(request, form)
        except ForgeError as exc:
            field = _ON_THE_FORM.get(exc.code)
            if field is None:
                raise
            said = _SAID.get(exc.code) or human_message(exc)
            if said.startswith(field + ": "):  # "receipt: this receipt names no learner; …"
                said = said[len(field) + 2:]
                said = said[:1].upper() + said[1:]  # "…; sign in with an API key" kept
            return page("signin.html", {
                "title": "Sign in", "viewer": await viewer(request),
                "next": safe_next(form.get("next")),
                "purchase": await purchase_offer(request),
                "error": said, "error_field": field}, status=exc.status)
    return await as_page("/signin", request)(run)


async def _sign_in(request: Request, form: dict[str, str]) -> Response:
    """The session of the key or receipt in ``form`` (ForgeError when refused)."""
    state = spawn_state(request)
    settings = state.settings
    # A receipt is base64url parts joined by dots, never a space or a line break: any inside
    # one is the wrapping of the mail or terminal it was copied from (the field is a
    # textarea), so it is taken out rather than refused as "changed".
    api_key, receipt = form.get("api_key", ""), "".join(form.get("receipt", "").split())
    claims: dict[str, Any] | None = None
    key_id: str | None = None
    if api_key:
        record = await run_in_threadpool(verify_api_key, state.ctx.db, api_key)
        if record is None:
            raise ForgeError("invalid_api_key", 401, "api_key: unknown or revoked API key")
        tenant, subject, key_id = record.tenant_id, record.subject, record.key_id
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
    if await end_another_persons(request, tenant, subject):
        clear_cookie(response, request, OPS_COOKIE)
    set_cookie(response, request, SESSION_COOKIE,
               learner_session(settings, tenant, subject, key_id), LEARNER_SESSION_TTL_S)
    if claims is not None:
        set_cookie(response, request, RECEIPT_COOKIE, receipt, LEARNER_SESSION_TTL_S)
    else:
        clear_cookie(response, request, RECEIPT_COOKIE)
    return response


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
    await run_in_threadpool(end_ops_session, request)  # an operator role from single sign-on
    response = RedirectResponse("/signin", status_code=303)
    clear_cookie(response, request, SESSION_COOKIE)
    clear_cookie(response, request, KEY_COOKIE)
    clear_cookie(response, request, OPS_COOKIE)  # an operator role from single sign-on too
    # A payment started and left: not the next person's at a shared browser (review CE).
    clear_cookie(response, request, CHECKOUT_COOKIE)
    clear_cookie(response, request, CHECKOUT_PAGE_COOKIE)
    return response
