"""A provider's discovery document must not turn spawn_service against its own network.

Whoever runs a tenant's identity provider writes its discovery document, which names the
endpoints spawn_service then calls with the client secret and the sign-in code. Before:
any https host, or http on loopback, was accepted, so a document could point the token
exchange at `http://127.0.0.1:8082/...`, `http://localhost:4222/` or the cloud metadata
address `https://169.254.169.254/...`. After: an endpoint on this machine or an internal
address is refused unless the configured issuer itself lives there (a provider run on this
machine); public https endpoints on other hosts (common: Google's token endpoint is not
on its issuer's host) stay allowed.

The discovery document is served by a real HTTP server on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest

from forge.identity.oidc import OidcRefused, ProviderCache
from forge.identity.oidc_config import endpoint_allowed

from ..support.http_stub import serving


@pytest.fixture
def provider() -> Iterator[tuple[str, dict[str, Any]]]:
    """An issuer on loopback whose discovery document the test writes."""
    doc: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    with serving(Handler) as url:
        yield url, doc


def _discover(issuer: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return await ProviderCache().discovery(client, issuer)
    return asyncio.run(run())


@pytest.mark.parametrize("endpoint", [
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://10.0.0.7/token",                      # the internal network
    "http://localhost:8082/v1/spawn",              # this machine, another name
    "http://[::1]:4222/",
    "https://192.168.1.1/",
])
def test_a_discovery_document_naming_internal_endpoints_is_refused(
        provider: tuple[str, dict[str, Any]], endpoint: str) -> None:
    issuer, doc = provider
    doc.update(issuer=issuer, authorization_endpoint=f"{issuer}/authorize",
               token_endpoint=endpoint, jwks_uri=f"{issuer}/jwks")
    with pytest.raises(OidcRefused) as refused:
        _discover(issuer)
    assert refused.value.code == "oidc_provider_unusable"
    assert "token_endpoint" in refused.value.reason


def test_a_provider_on_this_machine_and_public_endpoints_elsewhere_are_allowed(
        provider: tuple[str, dict[str, Any]]) -> None:
    issuer, doc = provider
    doc.update(issuer=issuer, authorization_endpoint=f"{issuer}/authorize",
               token_endpoint=f"{issuer}/token", jwks_uri=f"{issuer}/jwks")
    assert _discover(issuer)["token_endpoint"] == f"{issuer}/token"
    public = "https://idp.example.org"
    assert endpoint_allowed("https://oauth2.example.com/token", public)
    assert not endpoint_allowed("http://oauth2.example.com/token", public)  # never plain http
    assert not endpoint_allowed("https://127.0.0.1/token", public)
