"""Attack: an LMS registration or launch that makes Forge call internal addresses, or
answers with endless or redirected bodies (issue 18 item 4).

Before: Forge made no call to any LMS. After: every URL Forge calls for a platform (its
key set, token endpoint, a launch's line item and roster URLs) must be https (http only on
loopback) and may point at an internal address only where the platform's issuer itself is
(a platform on this machine, as in the tests); a registration naming another internal host
stops the service at start naming the field, a launch naming one has its grade and roster
URLs dropped, a score is never posted there, and answers are read with a size bound and
without following redirects.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response

from forge.identity.lti import KeyCache, LtiRefused
from forge.identity.lti_config import LtiConfigError, LtiRegistry, generate_key, load_lti
from forge.identity.lti_services import LtiCallFailed, PlatformClient

from ..live_server import live_server


def _file(tmp: Path, **platform: object) -> Path:
    key = tmp / "tool.pem"
    if not key.exists():
        generate_key(key)
    body = {"tenant": "acme", "issuer": "https://lms.example.org", "client_id": "c1",
            "deployment_ids": ["d1"], "auth_login_url": "https://lms.example.org/auth",
            "auth_token_url": "https://lms.example.org/token",
            "key_set_url": "https://lms.example.org/jwks", **platform}
    path = tmp / "lti.yaml"
    path.write_text(yaml.safe_dump({"tool": {"base_url": "https://forge.example.org",
                                             "private_key_file": str(key)},
                                    "platforms": {"lms": body}}))
    return path


@pytest.mark.parametrize("field,url", [
    ("key_set_url", "http://169.254.169.254/latest/meta-data"),
    ("auth_token_url", "https://10.0.0.7/token"),
    ("auth_login_url", "http://lms.example.org/auth"),
    ("key_set_url", "https://localhost/jwks"),
])
def test_a_registration_naming_an_internal_or_plain_http_endpoint_is_refused(
        tmp_path: Path, field: str, url: str) -> None:
    with pytest.raises(LtiConfigError, match=f"platforms.lms.{field}"):
        load_lti(_file(tmp_path, **{field: url}))


def _registry(tmp_path: Path) -> LtiRegistry:
    return load_lti(_file(tmp_path))


async def test_no_score_or_roster_call_leaves_for_an_internal_address(tmp_path: Path) -> None:
    calls: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return httpx.Response(500)

    reg = _registry(tmp_path)
    platform = reg.platforms["lms"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(record)) as http:
        client = PlatformClient(reg, http)
        for url in ("http://10.1.2.3/lineitems/1", "https://169.254.169.254/x",
                    "http://127.0.0.1:9/lineitems/1"):
            assert not platform.allowed(url)
            with pytest.raises(LtiCallFailed) as refused:
                await client.post_score(platform, url, "u1", 1.0, 1.0, "2026-12-01T00:00:00Z")
            assert refused.value.final
            with pytest.raises(LtiCallFailed):
                await client.members(platform, url)
    assert calls == []  # not even a token was asked for


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    """A platform on loopback whose key set is endless, or a redirect elsewhere."""
    app = FastAPI()

    @app.get("/big/jwks")
    async def big() -> Response:
        return JSONResponse({"keys": [], "pad": "x" * (300 * 1024)})

    @app.get("/moved/jwks")
    async def moved() -> Response:
        return RedirectResponse("http://169.254.169.254/jwks", status_code=302)

    with live_server(app) as url:
        yield url


@pytest.mark.parametrize("path,reason", [("big", "larger than"), ("moved", "HTTP 302")])
def test_key_sets_are_bounded_and_redirects_not_followed(tmp_path: Path, hostile: str,
                                                         path: str, reason: str) -> None:
    reg = load_lti(_file(tmp_path, issuer=hostile, auth_login_url=f"{hostile}/auth",
                         auth_token_url=f"{hostile}/token",
                         key_set_url=f"{hostile}/{path}/jwks"))
    with pytest.raises(LtiRefused) as refused:
        KeyCache().get(reg.platforms["lms"])
    assert reason in refused.value.reason
