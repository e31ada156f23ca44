"""An LTI 1.3 login's state in the browser that began it, bound so no other can launch it.

The login initiation keeps the platform, state and nonce in a signed, HttpOnly cookie (one
per login, SameSite=None on https: the launch is a cross-site form post); the launch is
taken only with it. That cookie is kept to /lti/, so over https it is ``__Secure-`` (not
``__Host-``), and a sibling subdomain served over https may set a ``__Secure-`` cookie for
the parent domain: it could plant the state of its own launch in a victim's browser and
have that browser post its id_token, signing the victim in as the attacker. So a state
counts only bound to the browser's ``forge_lti`` cookie: one random value per browser,
whole-site (``__Host-forge_lti``, which no sibling can set), whose hash the state names. A
browser's first logins, before it has one (several activities of one course page begin at
once, each makes one and the browser keeps only the last), keep their state in a whole-site
``forge_ltiw_`` cookie (``__Host-``) instead, until their launch.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from fastapi import Request
from fastapi.responses import Response

from forge.config.keyring import HmacKeyring
from forge.identity.lti import Pending
from forge.services.spawn.web.security import is_https
from forge.tokens import LTI_PENDING, TokenError, mint_token
from forge.tokens import verify_token as verify_forge_token

COOKIE_PREFIX = "forge_lti_"  # kept to COOKIE_PATH (host_cookies.PATH_SCOPED)
COOKIE_PATH = "/lti/"
WHOLE_SITE_PREFIX = "forge_ltiw_"
WHOLE_SITE = "whole-site"  # the binding claim of a state kept in a whole-site cookie
BINDING_COOKIE = "forge_lti"
BINDING_TTL_S = 30 * 24 * 3600  # refreshed by each login: one per browser, not per launch
_BINDING = re.compile(r"[A-Za-z0-9_-]{43}")


def cookie_name(state: str) -> str:
    """The name of a login's state cookie kept to /lti/."""
    return COOKIE_PREFIX + _hash(state)[:16]


def _where(state: str, whole_site: bool) -> tuple[str, str]:
    if whole_site:
        return WHOLE_SITE_PREFIX + _hash(state)[:16], "/"
    return cookie_name(state), COOKIE_PATH


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _samesite(request: Request) -> str:
    # The launch is a cross-site POST: only SameSite=None (which needs Secure) rides along.
    # On plain http (a loopback test) browsers refuse None without Secure, so Lax there.
    return "none" if is_https(request) else "lax"


def _binding(request: Request) -> str:
    """This browser's binding, "" without one."""
    value = request.cookies.get(BINDING_COOKIE, "")
    return value if _BINDING.fullmatch(value) else ""


def keep_login(request: Request, response: Response, ring: HmacKeyring,
               pending: Pending) -> None:
    """Set the login's state cookie, bound to this browser's binding (kept, or made, and
    set again for BINDING_TTL_S), or whole-site in a browser that had none."""
    binding = _binding(request)
    secure, samesite = is_https(request), _samesite(request)
    response.set_cookie(BINDING_COOKIE, binding or secrets.token_urlsafe(32),
                        max_age=BINDING_TTL_S, path="/", httponly=True, secure=secure,
                        samesite=samesite)  # type: ignore[arg-type]
    token = mint_token(ring, LTI_PENDING, {
        "platform": pending.platform, "state": pending.state, "nonce": pending.nonce,
        "browser_sha256": _hash(binding) if binding else WHOLE_SITE})
    name, path = _where(pending.state, not binding)
    response.set_cookie(name, token, max_age=LTI_PENDING.ttl_s, path=path, httponly=True,
                        secure=secure, samesite=samesite)  # type: ignore[arg-type]


def login_of(request: Request, ring: HmacKeyring,
             state: str) -> tuple[Pending, tuple[str, str]] | None:
    """The login this browser began whose state the launch carries, and where its cookie
    is: a whole-site one, or one kept to /lti/ bound to this browser's binding."""
    if not state or len(state) > 128:
        return None
    for whole_site in (True, False):
        where = _where(state, whole_site)
        cookie = request.cookies.get(where[0], "")
        if cookie:
            break
    else:
        return None
    binding = _binding(request)
    bound = WHOLE_SITE if whole_site else _hash(binding) if binding else ""
    try:
        claims = verify_forge_token(ring, LTI_PENDING, cookie)
    except TokenError:
        return None
    if not bound or not hmac.compare_digest(
            f"{claims['state']}\x00{claims['browser_sha256']}".encode(),
            f"{state}\x00{bound}".encode()):
        return None
    return (Pending(str(claims["platform"]), str(claims["state"]), str(claims["nonce"])),
            where)


def forget_login(request: Request, response: Response, where: tuple[str, str]) -> None:
    """Remove a launched login's state cookie (the binding stays, for the next launch)."""
    response.delete_cookie(where[0], path=where[1], secure=is_https(request), httponly=True,
                           samesite=_samesite(request))  # type: ignore[arg-type]
