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
once, each makes one and the browser keeps only the last), are bound to a whole-site
``forge_ltiw_`` marker (``__Host-``) of their state instead, until their launch: a few bytes,
not the state (about 600 bytes), as it rides on every request of the site (SameSite=None):
logins a cross-site page began at once in a new browser grew its Cookie header past what a
proxy takes (nginx: 8 KiB, about a dozen states) and locked it out of the whole site.

A browser keeps at most MAX_STATES unfinished logins: each login drops the oldest of those
its request carries (and any that no longer verify: expired, or made by an older release)
beyond that. A cross-site page firing logins in a loop piled up one ~640-byte state per
login for 10 minutes, and every /lti/ request (the launches included) carried them all: a
dozen passed nginx's 8 KiB, about a hundred Forge's own 64 KiB head limit (431), and the
learner could launch nothing until they expired. Logins in flight at the same moment do not
see each other's cookies, so the bound is MAX_STATES plus the logins begun at once.
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
# Unfinished logins a browser keeps: a course page's activities begun at once all open,
# and their states (about 640 bytes each over https) stay far below a proxy's 8 KiB.
MAX_STATES = 6
_STATE_NAME = re.compile(re.escape(COOKIE_PREFIX) + r"[0-9a-f]{16}")
_MARKER_NAME = re.compile(re.escape(WHOLE_SITE_PREFIX) + r"[0-9a-f]{16}")
BINDING_TTL_S = 30 * 24 * 3600  # refreshed by each login: one per browser, not per launch
_BINDING = re.compile(r"[A-Za-z0-9_-]{43}")


MARKER = "1"  # the whole-site cookie's value: its name (the state's hash) is what counts


def cookie_name(state: str) -> str:
    """The name of a login's state cookie kept to /lti/."""
    return COOKIE_PREFIX + _hash(state)[:16]


def _marker_name(state: str) -> str:
    return WHOLE_SITE_PREFIX + _hash(state)[:16]


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
    response.set_cookie(cookie_name(pending.state), token, max_age=LTI_PENDING.ttl_s,
                        path=COOKIE_PATH, httponly=True, secure=secure,
                        samesite=samesite)  # type: ignore[arg-type]
    if not binding:
        response.set_cookie(_marker_name(pending.state), MARKER, max_age=LTI_PENDING.ttl_s,
                            path="/", httponly=True, secure=secure,
                            samesite=samesite)  # type: ignore[arg-type]
    _drop_oldest(request, response, ring)


def _drop_oldest(request: Request, response: Response, ring: HmacKeyring) -> None:
    """Remove the unfinished logins this request carries beyond MAX_STATES - 1 (the login
    being made is the last): those that no longer verify first, then the oldest; and the
    markers of logins whose state is gone."""
    held: list[tuple[int, str]] = []
    for name, value in request.cookies.items():
        if _STATE_NAME.fullmatch(name):
            try:
                issued = int(verify_forge_token(ring, LTI_PENDING, value)["iat"])
            except (TokenError, TypeError, ValueError):
                issued = -1  # expired, forged or an older release's: of no use
            held.append((issued, name[len(COOKIE_PREFIX):]))
    held.sort()
    dropped = held[:max(0, len(held) - (MAX_STATES - 1))]
    kept = {tag for _, tag in held[len(dropped):]}
    for _, tag in dropped:
        _delete(request, response, COOKIE_PREFIX + tag, COOKIE_PATH)
    for name in request.cookies:
        if _MARKER_NAME.fullmatch(name) and name[len(WHOLE_SITE_PREFIX):] not in kept:
            _delete(request, response, name, "/")


def _delete(request: Request, response: Response, name: str, path: str) -> None:
    response.delete_cookie(name, path=path, secure=is_https(request), httponly=True,
                           samesite=_samesite(request))  # type: ignore[arg-type]


def login_of(request: Request, ring: HmacKeyring, state: str) -> Pending | None:
    """The login this browser began whose state the launch carries: its state cookie (kept
    to /lti/), bound to this browser's binding or, begun before it had one, with the
    state's whole-site marker."""
    if not state or len(state) > 128:
        return None
    cookie = request.cookies.get(cookie_name(state), "")
    if not cookie:
        return None
    try:
        claims = verify_forge_token(ring, LTI_PENDING, cookie)
    except TokenError:
        return None
    if claims["browser_sha256"] == WHOLE_SITE:
        marked = request.cookies.get(_marker_name(state), "") == MARKER
        bound = WHOLE_SITE if marked else ""
    else:
        binding = _binding(request)
        bound = _hash(binding) if binding else ""
    if not bound or not hmac.compare_digest(
            f"{claims['state']}\x00{claims['browser_sha256']}".encode(),
            f"{state}\x00{bound}".encode()):
        return None
    return Pending(str(claims["platform"]), str(claims["state"]), str(claims["nonce"]))


def forget_login(request: Request, response: Response, state: str) -> None:
    """Remove a launched login's state cookie and marker (the binding stays, for the next
    launch)."""
    for name, path in ((cookie_name(state), COOKIE_PATH), (_marker_name(state), "/")):
        if name in request.cookies:
            _delete(request, response, name, path)
