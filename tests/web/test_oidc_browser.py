"""Sign-in with an identity provider in Chromium, across sites as in real life.

Forge is served as http://localhost:P and the provider (pyop, tests/support/oidc_provider.py)
as http://127.0.0.1:Q: two different sites, so the browser applies SameSite rules the way it
does between a real Forge and a real identity provider. The sign-in cookie of the browser
that began (SameSite=Lax) must come back on the provider's redirect, and the session cookie
(SameSite=Strict) must be sent to the page after the callback: a redirect chain started by
the provider would not carry it, which is why the callback answers with a page that moves
on from this site.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect

from forge.bus import NatsServer
from forge.config import load_settings
from forge.identity.roles import role_of
from forge.services.spawn.app import build_app

from ..live_server import live_server, reserve_port
from ..services.conftest import prod_environ
from ..support.oidc_provider import LocalProvider, local_provider

SECRET = "browser-client-secret-0123456789abcdef"


@pytest.fixture
def forge_and_provider(tmp_path: Path, nats: NatsServer
                       ) -> Iterator[tuple[str, LocalProvider, object]]:
    sock = reserve_port()  # held until served: the settings name it
    port = sock.getsockname()[1]
    site = f"http://localhost:{port}"
    callback = f"{site}/signin/oidc/acme/callback"
    users = {"ada": {"sub": "ada", "groups": ["teachers"]}}
    with local_provider([callback], "forge-acme", SECRET, users) as op:
        (tmp_path / "secret").write_text(SECRET)
        (tmp_path / "oidc.yaml").write_text(yaml.safe_dump({"tenants": {"acme": {
            "display_name": "Acme Login", "issuer": op.issuer, "client_id": "forge-acme",
            "client_secret_file": str(tmp_path / "secret"), "redirect_uri": callback,
            "role_claim": "groups", "roles": {"instructor": ["teachers"]}}}}))
        settings = load_settings(prod_environ(
            tmp_path / "storage", **nats.client_env(), FORGE_ENV="dev",
            FORGE_OIDC_FILE=str(tmp_path / "oidc.yaml"),
            ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL="http://127.0.0.1:9"))
        app = build_app(settings)
        with live_server(app, sock=sock):
            yield site, op, app.state.spawn.ctx.db


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_person_signs_in_through_the_provider_in_a_real_browser(
        page: Page, forge_and_provider: tuple[str, LocalProvider, object]) -> None:
    site, op, db = forge_and_provider
    page.goto(f"{site}/signin")
    page.fill("#tenant", "acme")
    page.get_by_role("button", name="Continue to your organisation's sign-in").click()
    page.get_by_role("link", name="Sign in with Acme Login").click()
    page.wait_for_url(f"{op.issuer}/authorize?**")
    page.fill("input[name=user]", "ada")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site}/tracks")
    expect(page.locator("header .who")).to_contain_text("Signed in as ada")
    assert role_of(db, "acme", "ada") == "instructor"  # type: ignore[arg-type]
