"""Same-origin test of a request from its headers alone: a browser's session cookie rides
along on any request to this site (SameSite=Strict does not stop a same-site subdomain), so
a state-changing request that authenticates with the cookie must come from a page of this
site. Pure (headers in, bool out) so both the caller resolution and the web forms share it."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _matches_host(source: str, host: str) -> bool:
    try:
        parts = urlsplit(source)
    except ValueError:  # "http://[x": not a URL of any site, so not ours (was a 500)
        return False
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host


def same_origin(headers: Mapping[str, str]) -> bool:
    """True when the request comes from this site: Origin equals our own origin; without
    Origin, the browser's Sec-Fetch-Site says same-origin, else the Referer is ours. An
    explicit cross-site or same-site Sec-Fetch-Site, a `null` or missing source: False."""
    host = headers.get("host", "")
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = headers.get("origin")
    if origin:
        return origin != "null" and _matches_host(origin, host)
    if site == "same-origin":
        return True
    referer = headers.get("referer")
    return bool(referer) and _matches_host(str(referer), host)


def refused_by(headers: Mapping[str, str]) -> tuple[str, str]:
    """For a request `same_origin` refused: the header that decided it (its name as sent on
    the wire, for the error's field) and what is wrong with it, never its value echoed."""
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return "Sec-Fetch-Site", "this one came from another site, the browser says"
    if headers.get("origin"):
        return "Origin", "this one names another site, or none (null)"
    if headers.get("referer"):
        return "Referer", "this one names a page of another site"
    return "Origin", "this one sends neither Origin nor Referer"
