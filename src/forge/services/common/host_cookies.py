"""Forge's cookies under the ``__Host-`` (and ``__Secure-``) name prefixes over https.

A cookie named ``forge_session`` may be set for the site by any sibling subdomain
(``Domain=`` the parent), or by a plain-http page of it: "cookie tossing", which signs the
browser in as the attacker's learner (their lab then records what the victim types). A
browser keeps a ``__Host-`` cookie only when the site itself set it, Secure, with
``Path=/`` and no ``Domain``; ``__Secure-`` only when it was set over https.

Over https (the scheme, or the proxy's ``X-Forwarded-Proto``, as the cookies' Secure flag is
decided) this middleware of every service renames what goes out and comes in, so the
routes keep the one name each (``forge_session``, ``forge_ops`` …):

* a ``Set-Cookie`` of a ``forge_`` cookie marked Secure goes out as ``__Host-forge_…``
  (Path=/, no Domain) or, path-scoped (an LTI launch's sign-in state), ``__Secure-forge_…``;
* a ``Cookie`` header is read with those names unprefixed, and a plain ``forge_`` cookie is
  dropped: over https Forge sets none, so one is another site's (or an old release's, whose
  learner signs in again once). A ``__Secure-`` cookie is read only under the names Forge
  sets path-scoped (``PATH_SCOPED``): a sibling subdomain served over https may set
  ``__Secure-forge_session; Domain=`` the parent, which only ``__Host-`` rules out. Such a
  sibling may so plant an LTI launch's state too: it counts only with the ``__Host-forge_lti``
  binding of the browser that began it (spawn web lti_login_state).

Over plain http (a loopback install, the tests) nothing changes: ``__Host-`` needs Secure.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OURS = "forge_"
HOST, SECURE = "__Host-", "__Secure-"
# The cookies Forge sets path-scoped, so ``__Secure-`` over https: an LTI launch's sign-in
# state (spawn web lti_login_state.cookie_name), which a sibling may plant, so it counts
# only with the browser's ``__Host-forge_lti``. The OIDC sign-in state is the whole site's.
PATH_SCOPED = re.compile(r"forge_lti_[0-9a-f]{16}")


SECURE_SCHEMES = ("https", "wss")


def forwarded_secure(value: str) -> bool:
    """Whether a proxy's ``X-Forwarded-Proto`` says https: its first value ``https``, or
    ``wss`` (Traefik's for a websocket upgrade over TLS: the terminal's). The one judgement
    of the services, for the cookies' Secure flag as for their names here."""
    return value.split(",")[0].strip() in SECURE_SCHEMES


def over_https(scope: Scope) -> bool:
    """Whether the request came over https (or wss): its scheme, or the proxy's
    ``X-Forwarded-Proto`` (`forwarded_secure`), as the services decide the cookies' Secure."""
    if scope.get("scheme") in SECURE_SCHEMES:
        return True
    for name, value in scope.get("headers", ()):
        if name == b"x-forwarded-proto":
            return forwarded_secure(value.decode("latin-1"))
    return False


def incoming(header: str) -> str:
    """A ``Cookie`` header of an https request as the routes read it: ``__Host-forge_``
    cookies and the path-scoped ``__Secure-forge_`` ones unprefixed, other ``forge_``
    cookies left out (plain, or ``__Secure-`` where Forge sets ``__Host-``: another site's),
    every other cookie as it came."""
    kept: list[str] = []
    for part in header.split(";"):
        pair = part.strip()
        name = pair.split("=", 1)[0].strip()
        if name.startswith(OURS):
            continue  # not set by Forge over https: tossed, or an old release's
        if name.startswith(HOST + OURS):
            pair = pair[len(HOST):]
        elif name.startswith(SECURE + OURS):
            if not PATH_SCOPED.fullmatch(name[len(SECURE):]):
                continue  # Forge sets this one __Host-: a sibling subdomain's
            pair = pair[len(SECURE):]
        if pair:
            kept.append(pair)
    return "; ".join(kept)


def outgoing(set_cookie: str) -> str:
    """A ``Set-Cookie`` value of an https response with its prefix: ``__Host-`` for a
    Secure ``forge_`` cookie of Path=/ and no Domain, ``__Secure-`` for another Secure one."""
    name, _, rest = set_cookie.partition("=")
    attrs = [a.strip().lower() for a in rest.split(";")[1:]]
    if not name.strip().startswith(OURS) or "secure" not in attrs:
        return set_cookie
    whole_site = "path=/" in attrs and not any(a.startswith("domain=") for a in attrs)
    return (HOST if whole_site else SECURE) + set_cookie.lstrip()


class HostCookiesMiddleware:
    """Rename Forge's cookies to and from their prefixed names on https requests (pure
    ASGI: HTTP and the terminal's websocket)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not over_https(scope):
            await self.app(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        sent = [v.decode("latin-1") for k, v in scope["headers"] if k == b"cookie"]
        if sent:
            headers.append((b"cookie", incoming("; ".join(sent)).encode("latin-1")))
        scope = {**scope, "headers": headers}

        async def renaming(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (k, outgoing(v.decode("latin-1")).encode("latin-1"))
                    if k.lower() == b"set-cookie" else (k, v)
                    for k, v in message.get("headers", ())]}
            await send(message)

        await self.app(scope, receive, renaming)
