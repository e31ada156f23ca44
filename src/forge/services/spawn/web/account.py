"""Signing back in without email or pasted codes: the learner's account page and "Continue
with your purchase".

Two ways back in for a self-serve buyer:

- Same browser: the purchase stays in this browser (the HttpOnly receipt cookie, set at
  checkout for the receipt's lifetime and kept at sign-out). The sign-in page then offers
  "Continue with your purchase": a same-origin POST carrying a CSRF token bound to that
  cookie, verified server-side, which signs in as the learner the purchase proves.
  "Forget this purchase" removes it from a shared computer.
- Another device: a personal sign-in key (an API key of the learner's tenant and subject,
  stored hashed like every API key) made at checkout, or on the account page, where making a
  new one revokes the old. The key is shown exactly once: it travels to the account page
  sealed (AES-GCM, key derived from the SAT secret, bound to the learner) in an HttpOnly
  cookie, never in a URL or a log; the page shows it when the learner presses "Show my
  sign-in key" (a same-origin POST with the session's form token; a visit shows nothing),
  which consumes its one showing in the replay store, so a resent form or a replayed
  cookie shows it no more.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.config.settings import Settings
from forge.entitlements.resolve import EntitlementError, receipt_plan_revoked, verify_receipt
from forge.errors import ForgeError
from forge.identity.apikeys import replace_api_key, verify_api_key
from forge.identity.caller import (
    OPENED_WITH_KEY,
    SESSION_COOKIE,
    Caller,
    receipt_subject,
    session_claims,
)
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.site_links import page_link
from forge.services.spawn.terminal_signout import close_node_terminals
from forge.services.spawn.web.errors import PageError, error_response, safe_next, signin_url
from forge.services.spawn.web.oidc_pages import signs_in_with_provider
from forge.services.spawn.web.render import page
from forge.services.spawn.web.sealed_cookie import seal, unseal
from forge.services.spawn.web.security import (
    KEY_COOKIE,
    LEARNER_SESSION_TTL_S,
    OPS_COOKIE,
    RECEIPT_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    csrf_token,
    learner_session,
    read_form,
    session_value,
    set_cookie,
)
from forge.services.spawn.web.signout import end_another_persons
from forge.services.spawn.web.state import web_state
from forge.services.spawn.web.viewer import signed_in, viewer
from forge.tokens import TokenReplayed
from forge.tokens.replay import consume_once

router = APIRouter(include_in_schema=False)
log = logging.getLogger("forge.spawn.web")
KEY_SHOWN = "KEYSHOW"  # replay-store kind: a sign-in key's one showing was used
_SEAL_PURPOSE = b"forge-signin-key-reveal\x00"


def _aad(caller: Caller) -> bytes:
    return f"{caller.tenant_id}\x00{caller.subject}".encode()


def seal_key(settings: Settings, caller: Caller, plaintext: str) -> str:
    """A new sign-in key sealed for its learner's next account page (cookie value)."""
    return seal(settings, _SEAL_PURPOSE, _aad(caller), plaintext.encode())


def _open_key(settings: Settings, caller: Caller, value: str) -> str | None:
    """The sealed key if `value` was sealed here for `caller`, else None."""
    opened = unseal(settings, _SEAL_PURPOSE, _aad(caller), value)
    try:
        return None if opened is None else opened.decode()
    except UnicodeDecodeError:
        return None


def _show_once(request: Request, caller: Caller) -> str | None:
    """The new sign-in key waiting for this learner, on its first showing only (blocking)."""
    state = spawn_state(request)
    plaintext = _open_key(state.settings, caller, request.cookies.get(KEY_COOKIE, ""))
    if plaintext is None:
        return None
    record = verify_api_key(state.ctx.db, plaintext)
    if record is None or not caller.owns(record.tenant_id, record.subject):
        return None
    until = datetime.now(UTC) + timedelta(seconds=LEARNER_SESSION_TTL_S)
    try:
        consume_once(state.replay, f"keyshow-{record.key_id}", KEY_SHOWN, until)
    except TokenReplayed:
        return None
    return plaintext


async def _learner(request: Request) -> Caller | None:
    caller = await signed_in(request)
    return caller if caller is not None and caller.scenario_scope is None else None


async def _account(request: Request, caller: Caller, fresh: str | None,
                   waiting: bool) -> Response:
    """The account page; ``fresh``: the new key it shows (its one showing), if any;
    ``waiting``: a key waits to be shown, and the page offers a press to show it."""
    state = spawn_state(request)
    return page("account.html", {
        "title": "Your account", "viewer": await viewer(request), "fresh_key": fresh,
        "key_waiting": waiting,
        "keys_allowed": not signs_in_with_provider(request, caller.tenant_id),
        "signin_at": page_link(request, "/signin"),
        "csrf": csrf_token(state.settings, session_value(request) or "")})


@router.get("/account")
async def account_page(request: Request) -> Response:
    """Who is signed in, their plan, and their sign-in key: a key just made waits here until
    the learner chooses to see it (a visit alone, or a glance on the way elsewhere, must
    not use up its one showing)."""
    caller = await _learner(request)
    if caller is None:
        return RedirectResponse(signin_url("/account"), status_code=303)
    return await _account(request, caller, None, bool(request.cookies.get(KEY_COOKIE)))


async def _account_form(request: Request, signed_out: str) -> Caller | Response:
    """The signed-in learner posting an account form from this site with their session's
    form token; else the refusal page (``signed_out`` when nobody is signed in)."""
    try:
        check_same_origin(request)
        form = await read_form(request)
        caller = await _learner(request)
        if caller is None:
            return _refusal(request, 401, signed_out, True)
        check_csrf(spawn_state(request).settings, session_value(request), form.get("csrf"))
    except ForgeError as exc:
        return _refusal(request, exc.status, _FORM_STALE, back="/account")
    return caller


@router.post("/account/key/show")
async def show_key(request: Request) -> Response:
    """Show the waiting sign-in key, once: its showing is used up and its cookie dropped."""
    caller = await _account_form(request, "Sign in first to see your sign-in key.")
    if not isinstance(caller, Caller):
        return caller
    fresh = None
    if request.cookies.get(KEY_COOKIE):
        fresh = await run_in_threadpool(_show_once, request, caller)
    response = await _account(request, caller, fresh, False)  # shown, or shown before
    response.headers["Cache-Control"] = "no-store"
    clear_cookie(response, request, KEY_COOKIE)
    return response


@router.post("/account/key")
async def new_key(request: Request) -> Response:
    """Make a new sign-in key for the signed-in learner (the old one stops working); the
    account page then offers to show it, once."""
    caller = await _account_form(request, "Sign in first to make a new sign-in key.")
    if not isinstance(caller, Caller):
        return caller
    state = spawn_state(request)
    if signs_in_with_provider(request, caller.tenant_id):
        # The organisation's sign-in service decides who may sign in; a key made here would
        # outlive its decision (and replace keys the operator issued for this person).
        return _refusal(request, 403, _PROVIDER_ONLY, back="/account")
    issued = await run_in_threadpool(replace_api_key, state.ctx.db, caller.tenant_id,
                                     caller.subject)
    # The old key's sessions ended with it, but a terminal one of them opened is a socket
    # already past the cookie check: end the learner's shells, as a sign-out does (this
    # browser opens its own again), so a thief's open terminal does not outlive the key.
    closed = (await close_node_terminals(state.settings, state.ctx.db,
                                         web_state(request).backend.http.client,
                                         caller.tenant_id, caller.subject)).closed
    log.info("new sign-in key closed %d node terminal session(s)", closed)
    response = RedirectResponse("/account", status_code=303)
    set_cookie(response, request, KEY_COOKIE, seal_key(state.settings, caller, issued.plaintext),
               LEARNER_SESSION_TTL_S)
    opened = session_claims(state.settings, session_value(request) or "")
    if opened is not None and OPENED_WITH_KEY in opened:
        # This browser signed in with the key just revoked, whose sessions end with it: it
        # goes on with the new key (every other browser of the old key is signed out).
        set_cookie(response, request, SESSION_COOKIE, learner_session(
            state.settings, caller.tenant_id, caller.subject, issued.key_id),
            LEARNER_SESSION_TTL_S)
    return response


_FORM_STALE = "This form could not be used. Reload the page and try again."
_PROVIDER_ONLY = ("Your organisation signs you in with its own sign-in service, so there is no "
                  "separate sign-in key to make here.")


def _refusal(request: Request, status: int, message: str, signin: bool = False,
             back: str = "/signin") -> Response:
    """A plain page saying why (never the internal reason: it may name form tokens)."""
    return error_response(request, PageError(status, "Not possible", message, back,
                                             signin_url("/account") if signin else None))


def purchase_in_browser(request: Request) -> dict[str, Any] | None:
    """The purchase kept in this browser when it can sign its learner in, else None."""
    token = request.cookies.get(RECEIPT_COOKIE)
    if not token:
        return None
    try:
        claims = verify_receipt(spawn_state(request).settings, token)
    except EntitlementError:
        return None
    return claims if receipt_subject(claims) is not None else None


async def purchase_offer(request: Request) -> dict[str, str | None] | None:
    """What the sign-in page shows for "Continue with your purchase" (plan, form token).
    A purchase whose plan the operator revoked still signs its learner in, but names no
    plan (it grants none)."""
    claims = purchase_in_browser(request)
    learner = receipt_subject(claims)
    if claims is None or learner is None:
        return None
    state = spawn_state(request)
    revoked = await run_in_threadpool(receipt_plan_revoked, state.ctx.db,
                                      str(claims["tenant_id"]), learner, claims)
    token = request.cookies.get(RECEIPT_COOKIE, "")
    return {"plan": None if revoked else str(claims["plan"]),
            "csrf": csrf_token(state.settings, token)}


@router.post("/signin/continue")
async def continue_purchase(request: Request) -> Response:
    """Sign in as the learner of the purchase kept in this browser (same-origin POST with
    the CSRF token bound to that purchase)."""
    settings = spawn_state(request).settings
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(settings, request.cookies.get(RECEIPT_COOKIE), form.get("csrf"))
    except ForgeError as exc:
        return _refusal(request, exc.status, _FORM_STALE)
    claims = purchase_in_browser(request)
    learner = receipt_subject(claims)
    if claims is None or learner is None:
        return _refusal(request, 401, "The purchase in this browser can no longer be used to "
                        "sign in. Sign in with your sign-in key instead.")
    response = RedirectResponse(safe_next(form.get("next")), status_code=303)
    if await end_another_persons(request, str(claims["tenant_id"]), learner):
        clear_cookie(response, request, OPS_COOKIE)
    set_cookie(response, request, SESSION_COOKIE,
               learner_session(settings, str(claims["tenant_id"]), learner),
               LEARNER_SESSION_TTL_S)
    return response


@router.post("/signin/forget")
async def forget_purchase(request: Request) -> Response:
    """Remove the purchase kept in this browser (a shared computer); it stays valid on the
    learner's account and their sign-in key still works."""
    settings = spawn_state(request).settings
    try:
        check_same_origin(request)
        form = await read_form(request)
        check_csrf(settings, request.cookies.get(RECEIPT_COOKIE), form.get("csrf"))
    except ForgeError as exc:
        return _refusal(request, exc.status, _FORM_STALE)
    response = RedirectResponse("/signin", status_code=303)
    clear_cookie(response, request, RECEIPT_COOKIE)
    return response
