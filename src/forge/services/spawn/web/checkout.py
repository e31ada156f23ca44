"""Self-serve start: the plans page and a checkout that signs the buyer in.

`/plans` lists every plan of the catalog. "Choose" posts to `/checkout`, which starts a
checkout bound to this browser: a random nonce in an HttpOnly cookie and a short-lived
signed checkout token (typ CHK, receipt keyring) carrying the plan, the nonce's hash and the
signed-in buyer, if any. With BILLING_MODE=stub the stand-in gateway page says plainly that
no card is charged and posts the token back to `/checkout/complete`, which checks it, the
nonce cookie and the buyer, consumes its jti once, mints the receipt and sets the session
and receipt cookies server-side before redirecting to `/tracks`. No token ever appears in a
URL, and a completion cannot be replayed or finished in another browser or as another
learner. Without a payment gateway configured the page says checkout is not set up here.

So the buyer can sign back in later (see `account`): the plan is also granted in the
entitlement store until the receipt expires (a session on another device sees it), the
receipt cookie lives as long as the receipt, and a buyer new here gets a personal sign-in
key, shown once on the account page.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import NoReturn

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.billing.receipts import new_subject, stub_checkout
from forge.entitlements.grants import grant
from forge.errors import ForgeError
from forge.identity.apikeys import replace_api_key
from forge.identity.caller import SESSION_COOKIE, Caller
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.account import seal_key
from forge.services.spawn.web.errors import PageError, error_response, human_message
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    KEY_COOKIE,
    LEARNER_SESSION_TTL_S,
    RECEIPT_COOKIE,
    check_csrf,
    check_same_origin,
    clear_cookie,
    learner_session,
    read_form,
    session_value,
    set_cookie,
)
from forge.services.spawn.web.viewer import signed_in, viewer
from forge.tokens import CHECKOUT, TokenError, TokenReplayed, mint_token, verify_token
from forge.tokens.replay import consume_once

router = APIRouter(include_in_schema=False)
CHECKOUT_COOKIE = "forge_checkout"
# The payment page's checkout, between the Choose button's POST and the page's GET: the
# page is reached by a redirect, so Back and Reload show it again instead of posting the
# choice anew (review CC: "Confirm Form Resubmission", then "Checkout not started" on
# every reload). Useless without the nonce cookie it is bound to.
CHECKOUT_PAGE_COOKIE = "forge_checkout_page"
CHECKOUT_TTL_S = 15 * 60
RECEIPT_DAYS = 30
STUB_NOTE = "Test payment: this installation uses a stand-in for the payment gateway. " \
            "No card is charged."


def _hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


class _Refusal(Exception):
    """A checkout step refused, with the page that says why."""

    def __init__(self, err: PageError) -> None:
        super().__init__(err.message)
        self.err = err


def _refused(status: int, message: str, *, signin: bool = False) -> NoReturn:
    """Stop the checkout with a plain page (and a sign-in link where that helps)."""
    raise _Refusal(PageError(status, "Checkout not completed", message, "/plans",
                             "/signin" if signin else None))


@router.get("/plans")
async def plans_page(request: Request) -> Response:
    """Every plan of the catalog with what it includes; Choose starts a checkout."""
    state = spawn_state(request)
    who = await viewer(request)
    return page("plans.html", {
        "title": "Plans", "viewer": who, "plans": list(state.catalog),
        "stub": state.settings.billing_mode == "stub", "stub_note": STUB_NOTE,
        "checkout_ready": state.settings.billing_mode == "stub",
    })


@router.post("/checkout")
async def start_checkout(request: Request) -> Response:
    """Start a checkout for the chosen plan in this browser (same-origin form post)."""
    try:
        return await _start(request)
    except _Refusal as refusal:
        return error_response(request, refusal.err)
    except ForgeError as exc:
        return error_response(request, PageError(exc.status, "Checkout not started",
                                                 human_message(exc), "/plans"))


async def _start(request: Request) -> Response:
    check_same_origin(request)
    form = await read_form(request)
    state = spawn_state(request)
    buyer = await signed_in(request)
    if buyer is not None:
        check_csrf(state.settings, session_value(request), form.get("csrf"))
    plan = state.catalog.get(form.get("plan", ""))
    if plan is None:
        _refused(400, "plan: choose one of the plans listed on this page.")
    if state.settings.billing_mode != "stub":
        return page("checkout_unavailable.html", {
            "title": "Checkout is not set up", "viewer": await viewer(request),
            "plan": plan.name}, status=503)
    nonce = secrets.token_urlsafe(32)
    claims: dict[str, str] = {"plan": plan.name, "nonce_sha256": _hash(nonce)}
    if buyer is not None and buyer.scenario_scope is None:
        claims.update(tenant_id=buyer.tenant_id, sub=buyer.subject)
    token = mint_token(state.settings.receipt, CHECKOUT, claims, ttl_s=CHECKOUT_TTL_S)
    response = RedirectResponse("/checkout", status_code=303)
    set_cookie(response, request, CHECKOUT_COOKIE, nonce, CHECKOUT_TTL_S)
    set_cookie(response, request, CHECKOUT_PAGE_COOKIE, token, CHECKOUT_TTL_S)
    return response


@router.get("/checkout")
async def checkout_page(request: Request) -> Response:
    """The payment page of the checkout this browser started (a page of its own, so Back
    and Reload show it again); without one, a page that leads to the plans and the labs."""
    state = spawn_state(request)
    token = request.cookies.get(CHECKOUT_PAGE_COOKIE, "")
    plan = None
    if token and state.settings.billing_mode == "stub":
        try:
            claims = verify_token(state.settings.receipt, CHECKOUT, token)
        except TokenError:
            claims = {}
        plan = state.catalog.get(str(claims.get("plan", "")))
    who = await viewer(request)
    if plan is None:
        return page("checkout_none.html", {"title": "No payment in progress", "viewer": who})
    return page("checkout_stub.html", {
        "title": f"Pay for plan {plan.name}", "viewer": who, "plan": plan,
        "checkout": token, "stub_note": STUB_NOTE, "days": RECEIPT_DAYS})


@router.post("/checkout/complete")
async def complete_checkout(request: Request) -> Response:
    """Finish a stub checkout once: receipt minted, buyer signed in, on to `/tracks`."""
    try:
        return await _complete(request)
    except _Refusal as refusal:
        return error_response(request, refusal.err)
    except ForgeError as exc:
        return error_response(request, PageError(exc.status, "Checkout not completed",
                                                 human_message(exc), "/plans"))


async def _complete(request: Request) -> Response:
    check_same_origin(request)
    form = await read_form(request)
    state = spawn_state(request)
    if state.settings.billing_mode != "stub":
        _refused(503, "Checkout is not set up on this installation.")
    try:
        claims = verify_token(state.settings.receipt, CHECKOUT, form.get("checkout", ""))
    except TokenError:
        _refused(400, "This checkout is not valid or has expired. Choose a plan again.")
    nonce = request.cookies.get(CHECKOUT_COOKIE, "")
    if not nonce or not hmac.compare_digest(_hash(nonce), str(claims["nonce_sha256"])):
        _refused(403, "This checkout was started in another browser or window. Choose a "
                      "plan again here.")
    buyer = await signed_in(request)
    named = claims.get("sub")
    if named is not None and (buyer is None or not buyer.owns(str(claims.get("tenant_id")),
                                                              str(named))):
        _refused(403, "This checkout belongs to another learner. Sign in as the learner who "
                      "started it, or choose a plan again.", signin=True)
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    try:
        await run_in_threadpool(consume_once, state.replay, str(claims["jti"]), "CHK", expires)
    except TokenReplayed:
        _refused(409, "This checkout was already completed. Sign in instead to reach your "
                      "labs.", signin=True)
    if named is not None:
        tenant, subject, proof = str(claims["tenant_id"]), str(named), "caller"
    else:
        tenant, subject, proof = "personal-" + secrets.token_hex(8), new_subject(), "new"
    receipt = stub_checkout(state.settings, state.catalog, tenant_id=tenant,
                            plan=str(claims["plan"]), subject=subject, subject_proof=proof,
                            days=RECEIPT_DAYS)
    until = datetime.fromtimestamp(int(receipt.claims["exp"]), UTC)
    await run_in_threadpool(grant, state.ctx.db, tenant, str(claims["plan"]), subject, until)
    response = RedirectResponse("/tracks", status_code=303)
    if named is None or request.cookies.get(SESSION_COOKIE) is None:
        set_cookie(response, request, SESSION_COOKIE,
                   learner_session(state.settings, tenant, subject), LEARNER_SESSION_TTL_S)
    if named is None:  # new here: their way back in from another device
        issued = await run_in_threadpool(replace_api_key, state.ctx.db, tenant, subject)
        set_cookie(response, request, KEY_COOKIE,
                   seal_key(state.settings, Caller(tenant, subject, "new"), issued.plaintext),
                   LEARNER_SESSION_TTL_S)
    set_cookie(response, request, RECEIPT_COOKIE, receipt.token, RECEIPT_DAYS * 86400)
    clear_cookie(response, request, CHECKOUT_COOKIE)
    clear_cookie(response, request, CHECKOUT_PAGE_COOKIE)
    return response
