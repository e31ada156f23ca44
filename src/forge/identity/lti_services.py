"""Calls Forge makes to an LTI platform as its tool: an OAuth2 token by client credentials
(a client assertion JWT signed by our tool key), a score posted to a line item (Assignment
and Grade Services) and a course roster read (Names and Role Provisioning).

Every URL must pass the platform's endpoint check (`Platform.allowed`: https, internal
hosts only where the issuer is), answers are read with a size bound and a timeout and no
redirects are followed. A roster is read page by page along its `Link: <...>;
rel="next"` headers (RFC 8288: a rel is a case-insensitive, space-separated list), each
next page on the origin of the roster URL the platform gave, for at most MAX_ROSTER_PAGES
pages, MAX_ROSTER_MEMBERS members, MAX_ROSTER_BYTES bytes and ROSTER_DEADLINE_S seconds
in all (the per-read timeout alone lets slow pages hold a request for long); a page whose
Link header is over MAX_LINK_HEADER bytes is refused unparsed. Failures are
`LtiCallFailed`, `final` when retrying cannot help (the platform refused the request
itself), never carrying a token.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import jwt
from pylti1p3.grade import Grade

from forge.identity.lti_config import LtiRegistry, Platform

TIMEOUT_S = 10.0
MAX_ANSWER = 1024 * 1024
MAX_ROSTER_PAGES = 50
MAX_ROSTER_MEMBERS = 10_000
MAX_ROSTER_BYTES = 8 * 1024 * 1024  # every page's answer, summed
ROSTER_DEADLINE_S = 60.0  # one whole roster read, every page
MAX_LINK_HEADER = 8 * 1024  # a roster page's Link header values, summed
# One link-value of a Link header: <URL> then its parameters (RFC 8288 section 3). The URL
# excludes `<` as well as `>`: with `[^>]*` a header full of `<` took quadratic time.
_LINK_VALUE = re.compile(r'<([^<>]*)>((?:\s*;\s*[^;,=\s]+(?:\s*=\s*(?:"[^"]*"|[^;,]*))?)*)')
_REL_PARAM = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]*))', re.IGNORECASE)
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
MEMBERS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
FINAL_STATUSES = (400, 403, 404, 405, 410, 422)


class LtiCallFailed(Exception):
    """A call to the platform failed; `final` when it refused the request itself."""

    def __init__(self, reason: str, final: bool = False) -> None:
        super().__init__(reason)
        self.final = final


@dataclass
class _Token:
    value: str
    until: float


class PlatformClient:
    """Tokens (cached until shortly before they end) and the calls made with them."""

    def __init__(self, registry: LtiRegistry, http: httpx.AsyncClient) -> None:
        self.registry, self.http = registry, http
        self._tokens: dict[tuple[str, str], _Token] = {}

    def _check(self, platform: Platform, url: str) -> None:
        if not platform.allowed(url):
            raise LtiCallFailed(f"URL of platform {platform.name} not allowed", final=True)

    def client_assertion(self, platform: Platform) -> str:
        """The JWT that proves to the platform's token endpoint that we are its tool."""
        cfg = platform.config
        now = int(time.time())
        return jwt.encode({"iss": cfg.client_id, "sub": cfg.client_id,
                           "aud": cfg.auth_audience or cfg.auth_token_url, "iat": now,
                           "exp": now + 300, "jti": uuid.uuid4().hex},
                          self.registry.key.private_pem, algorithm="RS256",
                          headers={"kid": self.registry.key.kid})

    async def _send(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes]:
        status, body, _links = await self._exchange(method, url, **kwargs)
        return status, body

    async def _exchange(self, method: str, url: str, **kwargs: Any
                        ) -> tuple[int, bytes, list[str]]:
        """(status, body read up to MAX_ANSWER, the Link header values)."""
        try:
            async with self.http.stream(method, url, timeout=TIMEOUT_S, follow_redirects=False,
                                        **kwargs) as resp:
                body = bytearray()
                async for chunk in resp.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_ANSWER:
                        raise LtiCallFailed(f"answer larger than {MAX_ANSWER} bytes")
                return resp.status_code, bytes(body), resp.headers.get_list("link")
        except httpx.HTTPError as exc:
            raise LtiCallFailed(f"platform unreachable ({type(exc).__name__})") from None

    async def token(self, platform: Platform, scope: str) -> str:
        """An access token of the platform for `scope` (client credentials grant)."""
        key = (platform.name, scope)
        cached = self._tokens.get(key)
        if cached is not None and cached.until > time.monotonic():
            return cached.value
        url = platform.config.auth_token_url
        self._check(platform, url)
        status, raw = await self._send("POST", url, data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": self.client_assertion(platform), "scope": scope},
            headers={"Accept": "application/json"})
        if status != 200:  # never final: a key rotation or a clock hiccup passes
            raise LtiCallFailed(f"token endpoint answered HTTP {status}")
        try:
            body = json.loads(raw)
            value, lifetime = body["access_token"], int(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise LtiCallFailed("token answer is not a token") from None
        if not isinstance(value, str) or not value:
            raise LtiCallFailed("token answer is not a token")
        self._tokens[key] = _Token(value, time.monotonic() + max(0, lifetime - 30))
        return value

    async def post_score(self, platform: Platform, lineitem: str, lti_user: str,
                         score_given: float, score_maximum: float, timestamp: str) -> None:
        """Post a finished, fully graded score for `lti_user` to the line item."""
        self._check(platform, lineitem)
        parts = urlsplit(lineitem)
        url = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))
        grade = (Grade().set_score_given(score_given).set_score_maximum(score_maximum)
                 .set_activity_progress("Completed").set_grading_progress("FullyGraded")
                 .set_timestamp(timestamp).set_user_id(lti_user))
        token = await self.token(platform, SCORE_SCOPE)
        status, _ = await self._send("POST", url, content=grade.get_value().encode(), headers={
            "Authorization": f"Bearer {token}", "Content-Type": SCORE_TYPE})
        if status == 401:
            self._tokens.pop((platform.name, SCORE_SCOPE), None)
        if not 200 <= status < 300:
            raise LtiCallFailed(f"score post answered HTTP {status}",
                                final=status in FINAL_STATUSES)

    async def members(self, platform: Platform, url: str) -> list[dict[str, Any]]:
        """The course roster: every page, following each answer's `rel="next"` link.

        A next link must stay on the origin of `url` (the roster URL the platform gave in
        its launch) and pass the platform's endpoint check; a page read before (a loop),
        more than MAX_ROSTER_PAGES pages, MAX_ROSTER_MEMBERS members or MAX_ROSTER_BYTES
        bytes fail the whole read (final), never a silently cut roster; so does a read
        longer than ROSTER_DEADLINE_S."""
        self._check(platform, url)
        try:
            async with asyncio.timeout(ROSTER_DEADLINE_S):
                return await self._all_pages(platform, url)
        except TimeoutError:
            raise LtiCallFailed(f"roster took too long (over {ROSTER_DEADLINE_S:g} s)",
                                final=True) from None

    async def _all_pages(self, platform: Platform, url: str) -> list[dict[str, Any]]:
        token = await self.token(platform, NRPS_SCOPE)
        members: list[dict[str, Any]] = []
        seen: set[str] = set()
        page: str | None = url
        size = 0
        while page is not None:
            if page in seen:
                raise LtiCallFailed("roster pages link back to a page already read",
                                    final=True)
            if len(seen) == MAX_ROSTER_PAGES:
                raise LtiCallFailed(f"roster has more than {MAX_ROSTER_PAGES} pages",
                                    final=True)
            seen.add(page)
            found, page, read = await self._roster_page(platform, url, page, token)
            members.extend(found)
            size += read
            if len(members) > MAX_ROSTER_MEMBERS:
                raise LtiCallFailed(f"roster has more than {MAX_ROSTER_MEMBERS} members",
                                    final=True)
            if size > MAX_ROSTER_BYTES:
                raise LtiCallFailed(f"roster is larger than {MAX_ROSTER_BYTES} bytes",
                                    final=True)
        return members

    async def _roster_page(self, platform: Platform, first: str, url: str, token: str
                           ) -> tuple[list[dict[str, Any]], str | None, int]:
        """One page's members, the next page's URL (None on the last page) and the
        answer's size."""
        status, raw, links = await self._exchange("GET", url, headers={
            "Authorization": f"Bearer {token}", "Accept": MEMBERS_TYPE})
        if status != 200:
            raise LtiCallFailed(f"roster answered HTTP {status}", final=status in FINAL_STATUSES)
        try:
            body = json.loads(raw)
        except ValueError:
            raise LtiCallFailed("roster answer is not JSON", final=True) from None
        found = body.get("members") if isinstance(body, dict) else None
        if not isinstance(found, list):
            raise LtiCallFailed("roster has no members list", final=True)
        if sum(len(link) for link in links) > MAX_LINK_HEADER:
            raise LtiCallFailed(f"roster page's Link header larger than {MAX_LINK_HEADER} "
                                "bytes", final=True)
        following = next_link(links)
        if following is not None:
            following = urljoin(url, following)
            if _origin(following) != _origin(first) or not platform.allowed(following):
                raise LtiCallFailed("roster's next page is not on the roster's own origin",
                                    final=True)
        return [m for m in found if isinstance(m, dict)], following, len(raw)


def next_link(headers: list[str]) -> str | None:
    """The target of the first link whose rel includes `next` in Link header values: the
    rel parameter's name and values are case-insensitive and it may list several
    space-separated relations (RFC 8288 section 3.3), e.g. `rel=Next`, `rel="prev next"`."""
    for header in headers:
        for match in _LINK_VALUE.finditer(header):
            rel = _REL_PARAM.search(match.group(2))
            if rel is not None and "next" in (rel.group(1) or rel.group(2) or ""
                                              ).lower().split():
                return match.group(1).strip()
    return None


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of `url`, the default port made explicit."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", "", None)  # no URL ("https://[x") or an unusable port: matches nothing
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme)
