"""Sign-in with a tenant's identity provider (OpenID Connect), as pages.

`/signin/oidc/{tenant}` shows "Sign in with <provider>"; its button (a link from this site)
starts: state, nonce and PKCE verifier go into a signed, HttpOnly, SameSite=Lax cookie of this
browser (Lax: the provider's redirect back is a cross-site navigation), and the browser goes
to the provider. The callback is accepted only in that browser (state compared in constant
time), the code is exchanged and the ID token verified (`forge.identity.oidc`), its nonce is
consumed once (a replayed callback is refused on every replica), the role is recorded, and
the same learner session as the other sign-ins is set; role operator also opens `/ops`. Every
refusal is a plain page, and nothing is created by a refused sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from forge.classroom.cohorts import enrol_by_groups
from forge.config.settings import ConfigError, Settings
from forge.errors import ForgeError
from forge.identity.caller import SESSION_COOKIE
from forge.identity.names import valid_id
from forge.identity.oidc import Identity, OidcRefused, Pending, ProviderCache, begin, finish
from forge.identity.oidc_config import (
    OidcConfigError,
    OidcRegistry,
    OidcTenant,
    load_oidc,
    oidc_file,
)
from forge.identity.roles import OPERATOR, record_role
from forge.services.spawn.caller_deps import spawn_state
from forge.services.spawn.web.errors import PageError, error_response, safe_next
from forge.services.spawn.web.render import page
from forge.services.spawn.web.security import (
    LEARNER_SESSION_TTL_S,
    OPERATOR_SESSION_TTL_S,
    OPS_COOKIE,
    RECEIPT_COOKIE,
    check_same_origin,
    clear_cookie,
    is_https,
    learner_session,
    operator_session,
    set_cookie,
)
from forge.services.spawn.web.signout import end_another_persons
from forge.services.spawn.web.state import web_state
from forge.tokens import OIDC_PENDING, TokenError, TokenReplayed, mint_token, verify_token
from forge.tokens.replay import consume_once

log = logging.getLogger("forge.spawn.web.oidc")
router = APIRouter(include_in_schema=False)
PENDING_COOKIE = "forge_oidc"
# The whole site's, not /signin/oidc/'s: over https it is then `__Host-forge_oidc`, which
# a sibling subdomain cannot set (a `__Secure-` one it can: the attacker's sign-in state,
# and the victim sent to the attacker's callback was signed in as the attacker).
COOKIE_PATH = "/"
PENDING_TTL_S = OIDC_PENDING.ttl_s
NONCE_KIND = "OIDCN"
MAX_CODE = 2048
_AGAIN = "Start the sign-in again from this browser."


@dataclass
class OidcWeb:
    """The tenants that sign in through an identity provider, and their cached metadata."""

    registry: OidcRegistry
    cache: ProviderCache = field(default_factory=ProviderCache)


def install(app: FastAPI, settings: Settings) -> None:
    """Load the OIDC file (an invalid one stops the service at start; client secrets named by
    `client_secret_env` come from this process's environment) and add the routes."""
    path = oidc_file(settings.oidc_file, settings.storage_root)
    try:
        registry = load_oidc(path, os.environ) if path is not None else OidcRegistry()
    except OidcConfigError as exc:  # `forge serve` prints it as one problem line, exit 1
        raise ConfigError(settings.env.value, [str(exc)]) from None
    app.state.forge_oidc = OidcWeb(registry)
    app.include_router(router)


def _web(request: Request) -> OidcWeb:
    found: OidcWeb = request.app.state.forge_oidc
    return found


def _refusal(request: Request, status: int, message: str, back: str) -> Response:
    return error_response(request, PageError(status, "Sign-in not completed", message, back,
                                             "/signin"))


def _tenant(request: Request, tenant_id: str) -> OidcTenant | None:
    return _web(request).registry.get(tenant_id)


def signs_in_with_provider(request: Request, tenant_id: str) -> bool:
    """True when the tenant's people sign in through its identity provider, which then stays
    the one source of who may sign in (no self-made keys that would outlive it)."""
    return _tenant(request, tenant_id) is not None


def _unknown(request: Request) -> Response:
    return error_response(request, PageError(
        404, "No single sign-on here", "No organisation with this name signs in here with "
        "its own sign-in service. Check the organisation's name as your organisation "
        "gave it (or the link you followed), or sign in another way.", "/signin",
        "/signin"))


@router.get("/signin/oidc")
async def choose_tenant(request: Request) -> Response:
    """The sign-in page's "organisation" field: on to that organisation's sign-in page."""
    tenant_id = request.query_params.get("tenant", "").strip()
    if not valid_id(tenant_id) or _tenant(request, tenant_id) is None:
        return _unknown(request)
    target = f"/signin/oidc/{tenant_id}?next=" + quote(
        safe_next(request.query_params.get("next")), safe="/")
    return RedirectResponse(target, status_code=303)


@router.get("/signin/oidc/{tenant_id}")
async def tenant_signin_page(request: Request, tenant_id: str) -> Response:
    """"Sign in with <provider>" for one tenant."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _unknown(request)
    start = f"/signin/oidc/{tenant.tenant_id}/start?next=" + quote(
        safe_next(request.query_params.get("next")), safe="/")
    return page("oidc_signin.html", {"title": f"Sign in with {tenant.config.display_name}",
                                     "viewer": None, "start": start,
                                     "provider": tenant.config.display_name})


def _cross_site(request: Request) -> bool:
    """True when a browser says this navigation came from another site (Sec-Fetch-Site, else
    Origin/Referer): only this site's own button, or an address typed or bookmarked, may
    send a browser to the identity provider. Other clients cannot be made to follow."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    try:
        check_same_origin(request)
    except ForgeError:
        return bool(request.headers.get("origin") or request.headers.get("referer"))
    return False


@router.get("/signin/oidc/{tenant_id}/start")
async def start_signin(request: Request, tenant_id: str) -> Response:
    """Begin the sign-in in this browser and send it to the identity provider (a link, not a
    form: the site's Content-Security-Policy lets forms go only to this site)."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _unknown(request)
    back = f"/signin/oidc/{tenant_id}"
    if _cross_site(request):
        return _refusal(request, 403, "This sign-in must be started from this site. " + _AGAIN,
                        back)
    web = _web(request)
    try:
        discovery = await web.cache.discovery(web_state(request).backend.http.client,
                                              tenant.config.issuer)
    except OidcRefused as exc:
        log.warning("oidc sign-in not started: tenant=%s reason=%s", tenant_id, exc.reason)
        return _refusal(request, exc.status, exc.message, back)
    pending, url = begin(tenant, discovery)
    token = mint_token(spawn_state(request).settings.sat, OIDC_PENDING, {
        "tenant_id": tenant.tenant_id, "state": pending.state, "nonce": pending.nonce,
        "verifier": pending.verifier, "next": safe_next(request.query_params.get("next"))})
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(PENDING_COOKIE, token, max_age=PENDING_TTL_S, path=COOKIE_PATH,
                        httponly=True, secure=is_https(request), samesite="lax")
    return response


def _pending(request: Request, tenant_id: str) -> tuple[Pending, dict[str, Any]] | None:
    """The sign-in this browser began for `tenant_id` whose state the callback carries."""
    cookie = request.cookies.get(PENDING_COOKIE, "")
    presented = request.query_params.get("state", "")
    if not cookie or not presented:
        return None
    try:
        claims = verify_token(spawn_state(request).settings.sat, OIDC_PENDING, cookie)
    except TokenError:
        return None
    if claims.get("tenant_id") != tenant_id or not hmac.compare_digest(
            str(claims["state"]).encode(), presented.encode()):
        return None
    return Pending(str(claims["state"]), str(claims["nonce"]), str(claims["verifier"])), claims


def _nonce_id(tenant_id: str, nonce: str) -> str:
    return hashlib.sha256(f"oidc-nonce\x00{tenant_id}\x00{nonce}".encode()).hexdigest()


def _signed_in(request: Request, who: Identity, next_path: str) -> Response:
    """The session cookies of `who`, and a page that moves on to `next_path` from this site
    (a same-site step, so the SameSite=Strict session cookie rides along)."""
    settings = spawn_state(request).settings
    response = page("oidc_done.html", {"title": "Signed in", "viewer": None,
                                       "next": next_path})
    set_cookie(response, request, SESSION_COOKIE,
               learner_session(settings, who.tenant_id, who.subject), LEARNER_SESSION_TTL_S)
    clear_cookie(response, request, RECEIPT_COOKIE)
    if who.role == OPERATOR:
        set_cookie(response, request, OPS_COOKIE,
                   operator_session(settings, person=(who.tenant_id, who.subject)),
                   OPERATOR_SESSION_TTL_S)
    else:  # an earlier operator sign-in in this browser ends with the role
        clear_cookie(response, request, OPS_COOKIE)
    response.delete_cookie(PENDING_COOKIE, path=COOKIE_PATH, secure=is_https(request),
                           httponly=True, samesite="lax")
    return response


@router.get("/signin/oidc/{tenant_id}/callback")
async def callback(request: Request, tenant_id: str) -> Response:
    """Where the identity provider sends the browser back: verify, then sign in."""
    tenant = _tenant(request, tenant_id)
    if tenant is None:
        return _unknown(request)
    back = f"/signin/oidc/{tenant_id}"
    found = _pending(request, tenant_id)
    if found is None:
        log.warning("oidc callback refused: tenant=%s reason=no sign-in with this state in "
                    "this browser", tenant_id)
        return _refusal(request, 403, "This sign-in was started in another browser or window, "
                        "or it took too long. " + _AGAIN, back)
    pending, claims = found
    query = request.query_params
    code = query.get("code", "")
    if query.get("error") or not code or len(code) > MAX_CODE:
        log.warning("oidc callback refused: tenant=%s reason=provider answered without a code",
                    tenant_id)
        return _refusal(request, 401, f"The sign-in at {tenant.config.display_name} was "
                        "cancelled or not allowed, so you are not signed in.", back)
    state = spawn_state(request)
    web = _web(request)
    try:
        who = await finish(web_state(request).backend.http.client, web.cache, tenant, code,
                           pending)
        expires = datetime.fromtimestamp(max(who.expires_at, int(claims["exp"])), UTC)
        await run_in_threadpool(consume_once, state.replay,
                                _nonce_id(tenant_id, pending.nonce), NONCE_KIND, expires)
    except OidcRefused as exc:
        log.warning("oidc callback refused: tenant=%s reason=%s", tenant_id, exc.reason)
        return _refusal(request, exc.status, exc.message, back)
    except TokenReplayed:
        log.warning("oidc callback refused: tenant=%s reason=nonce already used", tenant_id)
        return _refusal(request, 409, "This sign-in was already used. " + _AGAIN, back)
    await run_in_threadpool(record_role, state.ctx.db, who.tenant_id, who.subject, who.role,
                            who.groups)
    # Cohorts naming one of the person's IdP groups enrol them (issue 18 item 2).
    await run_in_threadpool(enrol_by_groups, state.ctx.db, who.tenant_id, who.subject,
                            who.groups)
    log.info("oidc sign-in: tenant=%s role=%s", tenant_id, who.role)
    await end_another_persons(request, who.tenant_id, who.subject)
    return _signed_in(request, who, safe_next(str(claims.get("next") or "")))
