"""Browser-facing safety: security headers, CSRF tokens, same-origin checks, session cookies.

Every HTML page gets a strict Content-Security-Policy (scripts only from this origin, no inline
script). Every state-changing form POST must come from this origin (Origin, else Referer) and,
once signed in, carry a CSRF token bound to the session cookie (HMAC with the SAT keyring).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from forge.config.settings import Settings
from forge.errors import ForgeError
from forge.identity.caller import OPENED_WITH_KEY, SESSION_COOKIE
from forge.identity.origin import refused_by, same_origin
from forge.services.common.errors import media_type
from forge.services.common.host_cookies import forwarded_secure
from forge.tokens import SESSION, TokenError, mint_token, verify_token

OPS_COOKIE = "forge_ops"
RECEIPT_COOKIE = "forge_receipt"
KEY_COOKIE = "forge_new_key"  # a just-made sign-in key, sealed, until the account page shows it
LEARNER_SCOPE = "learner"
OPERATOR_SCOPE = "operator"
OPERATOR_SUBJECT = "operator"
OPERATOR_TENANT = "forge-operator"
LEARNER_SESSION_TTL_S = 8 * 3600
SIGNED_OUT = ("You are signed out: your session ended. Sign in again to go on; your labs "
              "keep running.")
STALE_FORM = ("This page is out of date (it was opened before you last signed in, or the "
              "form was changed). Reload the page and try again.")
OPERATOR_SESSION_TTL_S = 3600
OPENED_WITH_KID = "okid"  # claim: key id of the OPERATOR_TOKEN a session was opened with
OPENED_BY_TENANT, OPENED_BY_SUBJECT = "otid", "osub"  # claims: the OIDC operator who opened it
MAX_FIELD = 4096
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

_BASE_CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Pages: stylesheets from this origin only. The terminal page also lets xterm.js add its own
# <style> elements (it sizes cells that way) and style attributes: its DOM renderer colours
# 24-bit (truecolor) text and selected cells with them; scripts stay forbidden.
PAGE_CSP = _BASE_CSP + "; style-src 'self'"
TERMINAL_CSP = _BASE_CSP + "; style-src 'self'; style-src-elem 'self' 'unsafe-inline'; " \
    "style-src-attr 'unsafe-inline'"
# The result page replays terminal recordings with asciinema-player, whose terminal emulator
# is WebAssembly compiled from the vendored script: 'wasm-unsafe-eval' allows compiling it,
# never eval of JavaScript; scripts still come only from this origin.
PLAYER_CSP = _BASE_CSP.replace("script-src 'self'", "script-src 'self' 'wasm-unsafe-eval'") \
    + "; style-src 'self'"


def security_headers(terminal: bool = False) -> dict[str, str]:
    """Headers for every HTML response (no caching: pages show private state)."""
    return {
        "Content-Security-Policy": TERMINAL_CSP if terminal else PAGE_CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
        "Cross-Origin-Opener-Policy": "same-origin",
    }


def is_https(request: Request) -> bool:
    """True when the browser reached us over https (directly or through a proxy)."""
    return request.url.scheme == "https" or forwarded_secure(
        request.headers.get("x-forwarded-proto", ""))


def set_cookie(response: Response, request: Request, name: str, value: str, ttl_s: int) -> None:
    """An HttpOnly, SameSite=Strict cookie, Secure when the site is served over https."""
    response.set_cookie(name, value, max_age=ttl_s, httponly=True, secure=is_https(request),
                        samesite="strict", path="/")


def clear_cookie(response: Response, request: Request, name: str) -> None:
    """Remove a cookie set by `set_cookie`."""
    response.delete_cookie(name, path="/", secure=is_https(request), httponly=True,
                           samesite="strict")


def check_same_origin(request: Request) -> None:
    """Refuse a form POST that does not come from a page of this site (fail closed): 403
    ``cross_site_request`` naming the header that decided it, as every refusal names its
    field (it said "form posts must come from this site" and named nothing)."""
    if not same_origin(request.headers):
        header, problem = refused_by(request.headers)
        raise ForgeError("cross_site_request", 403,
                         f"{header}: form posts must come from this site; {problem}",
                         [{"field": header.lower(), "problem": problem}])


def _secrets(settings: Settings) -> list[bytes]:
    ring = settings.sat
    return [s for s in (ring.current, ring.previous, ring.next) if s]


def _mac(secret: bytes, session_value: str) -> str:
    digest = hmac.new(secret, b"forge-csrf\x00" + session_value.encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(digest.digest()[:24]).decode().rstrip("=")


def csrf_token(settings: Settings, session_value: str) -> str:
    """The CSRF token of a session (stable for the session's lifetime)."""
    return _mac(settings.sat.current, session_value)


def check_csrf(settings: Settings, session_value: str | None, presented: str | None) -> None:
    """403 unless `presented` is this session's CSRF token (constant-time compare); 401
    ``signed_out`` when there is no session at all (its cookie ran out while the page was
    open): the learner is told to sign in again, not to reload a form."""
    if not session_value:
        raise ForgeError("signed_out", 401, SIGNED_OUT)
    if not presented:
        raise ForgeError("csrf_failed", 403, STALE_FORM)
    # As bytes: compare_digest refuses (TypeError, a 500) a str with non-ASCII characters.
    given = presented.encode("utf-8", "replace")  # any lone surrogate too: a mismatch
    ok = False
    for secret in _secrets(settings):
        ok |= hmac.compare_digest(_mac(secret, session_value).encode("ascii"), given)
    if not ok:
        raise ForgeError("csrf_failed", 403, STALE_FORM)


def learner_session(settings: Settings, tenant_id: str, subject: str,
                    key_id: str | None = None) -> str:
    """An unscoped learner session (sees all of this learner's scenarios); ``key_id``: the
    sign-in key it was opened with, whose revocation ends it (``OPENED_WITH_KEY``)."""
    claims = {"sub": subject, "tenant_id": tenant_id, "scope": LEARNER_SCOPE}
    if key_id is not None:
        claims[OPENED_WITH_KEY] = key_id
    return mint_token(settings.sat, SESSION, claims, ttl_s=LEARNER_SESSION_TTL_S)


def operator_session(settings: Settings, token_kid: str | None = None,
                     person: tuple[str, str] | None = None) -> str:
    """An operator session; only the `forge_ops` cookie accepts it. ``token_kid``: the key
    id of the OPERATOR_TOKEN it was opened with, so the session ends with that token
    (`operator_keys`); ``person``: the (tenant, subject) whose operator role opened it
    through OIDC, so the session ends when that role does."""
    claims = {"sub": OPERATOR_SUBJECT, "tenant_id": OPERATOR_TENANT, "scope": OPERATOR_SCOPE}
    if token_kid is not None:
        claims[OPENED_WITH_KID] = token_kid
    if person is not None:
        claims[OPENED_BY_TENANT], claims[OPENED_BY_SUBJECT] = person
    return mint_token(settings.sat, SESSION, claims, ttl_s=OPERATOR_SESSION_TTL_S)


def operator_session_claims(settings: Settings, value: str | None) -> dict[str, object] | None:
    """The claims of a valid, unexpired operator session token, else None."""
    if not value:
        return None
    try:
        claims = verify_token(settings.sat, SESSION, value)
    except TokenError:
        return None
    if claims.get("scope") != OPERATOR_SCOPE or claims.get("sub") != OPERATOR_SUBJECT:
        return None
    return claims


def session_value(request: Request) -> str | None:
    """The learner session cookie as sent."""
    return request.cookies.get(SESSION_COOKIE)


async def parse_form(request: Request) -> FormData:
    """``request.form()``, with a body the form parser refuses (a multipart body without a
    boundary or cut short, more than 1,000 fields or files) said as every other refused form
    is: 400 ``invalid_form`` naming ``body``, not Starlette's bare 400 ``bad_request``; and
    a body of another type (JSON) 415 ``unsupported_media_type``: the parser read it as an
    empty form, so its fields went unread (defaults used, or "required" said of a field
    the client did send), where the JSON routes refuse a body not of their type."""
    kind = media_type(request.headers.get("content-type"))
    if kind not in FORM_TYPES and (kind or await request.body()):
        raise ForgeError("unsupported_media_type", 415,
                         "Content-Type: send the form as application/x-www-form-urlencoded "
                         f"or multipart/form-data, not {kind[:60] or 'no type'}",
                         [{"field": "content-type"}])
    try:
        return await request.form()
    except StarletteHTTPException as exc:
        if exc.status_code != 400:
            raise
        problem = str(exc.detail).rstrip(".")
        raise ForgeError("invalid_form", 400, f"body: not a readable form ({problem})",
                         [{"field": "body", "problem": problem}]) from None


async def read_form(request: Request, long: Mapping[str, int] | None = None
                    ) -> dict[str, str]:
    """A posted form as text fields (a file upload, an oversized field or one given twice
    is refused): each at most ``MAX_FIELD`` characters, or the limit ``long`` gives its
    name (a pasted roster)."""
    form = await parse_form(request)
    out: dict[str, str] = {}
    for key, value in form.multi_items():
        if key in out:  # which one counts would be the parser's choice, not the sender's
            raise ForgeError("invalid_form", 400, f"{key}: given more than once",
                             [{"field": key, "problem": "given more than once"}])
        limit = (long or {}).get(key, MAX_FIELD)
        if not isinstance(value, str) or len(value) > limit:
            raise ForgeError("invalid_form", 400,
                             f"{key}: must be text of at most {limit} characters")
        out[key] = value.strip()
    return out
