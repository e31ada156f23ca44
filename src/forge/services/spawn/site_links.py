"""Links to this site that the spawn service hands out (a lab's access link, a class's
invite link, the sign-in address): never built from the caller's own ``Host`` header.

A client, or a proxy that forwards any Host, chose the site those links named: a spawn
answer or an invite made with ``Host: evil.example`` sent learners to evil.example with the
lab's access token or the class's invite code. The one configured public URL of this site
is the LTI tool's ``base_url`` (``FORGE_LTI_FILE``): links are absolute under it when it is
set. Without it, a JSON answer's link is relative (``/v1/access/…``, ``/join/…``: the client
joins it to the address it called), and a page shows the origin its own browser asked at,
which only that browser's Host decides and only that browser reads (pages are no-store).
"""

from __future__ import annotations

from fastapi import FastAPI, Request

_STATE = "forge_public_url"


def set_public_url(app: FastAPI, url: str | None) -> None:
    """Record this site's configured public URL (an origin without a path), or None."""
    setattr(app.state, _STATE, url.rstrip("/") if url else None)


def public_url(request: Request) -> str | None:
    """This site's configured public URL, or None when none is configured."""
    found = getattr(request.app.state, _STATE, None)
    return found if isinstance(found, str) else None


def api_link(request: Request, path: str) -> str:
    """``path`` (``/…``) as a link in a JSON answer: under the configured public URL, else
    relative; the request's Host is never used."""
    return (public_url(request) or "") + path


def page_link(request: Request, path: str) -> str:
    """``path`` as a link shown on a page: under the configured public URL, else under the
    origin this browser asked at (what it reads is what it sent)."""
    return (public_url(request) or str(request.base_url).rstrip("/")) + path
