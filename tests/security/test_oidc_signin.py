"""Attacks on sign-in with a tenant's identity provider (OpenID Connect, code + PKCE).

The provider is real: pyop's OpenID Provider on loopback (tests/support/oidc_provider.py),
serving discovery, keys, a login form and a token endpoint that checks client credentials
and PKCE; spawn_service is the real app. Before: no OIDC sign-in existed (`/signin/oidc/...`
was a 404 page). After: a good sign-in lands signed in with the role the provider's claims
map to, and each attack below gets a plain page, no session and no recorded role:
another site sending the browser to the provider,
wrong issuer (in the discovery document, or in the ID token after discovery was cached),
an ID token signed by a key the provider does not publish, wrong audience, expired ID token, a replayed callback (same code, or a second code carrying
the same nonce), unknown tenant, a callback opened in another browser, and a stolen code
redeemed without the PKCE verifier.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.config import load_settings
from forge.identity.roles import groups_of, role_of
from forge.services.spawn.app import build_app
from forge.services.spawn.web.errors import has_jargon
from forge.store.models import TenantRole

from ..services.conftest import prod_environ
from ..support.oidc_provider import OTHER_CLIENT, LocalProvider, authorize_query, local_provider

ORIGIN = "http://localhost"
CLIENT_ID = "forge-acme"
CLIENT_SECRET = "acme-client-secret-for-tests-0123456789"
USERS = {"ada": {"sub": "ada", "groups": ["teachers", "netplus-2026"]},
         "otto": {"sub": "otto", "groups": ["forge-admins"]},
         "lea": {"sub": "lea", "groups": ["netplus-2026"]}}


@pytest.fixture(scope="module")
def op() -> Iterator[LocalProvider]:
    """One provider for the module; each test restores any knob it turns."""
    with local_provider([f"{ORIGIN}/signin/oidc/acme/callback"], CLIENT_ID, CLIENT_SECRET,
                        USERS) as provider:
        yield provider


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """The sign-in and replay test runs on both engines (single use is a store property);
    the other attacks on SQLite."""
    if "db_url" in request.fixturenames:
        return str(request.getfixturevalue("db_url"))
    request.getfixturevalue("sqlite_only_store")
    return ""


@pytest.fixture
def app(tmp_path: Path, nats: NatsServer, op: LocalProvider, store: str) -> Iterator[TestClient]:
    secret = tmp_path / "acme-oidc-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    common = {"client_id": CLIENT_ID, "client_secret_file": str(secret),
              "role_claim": "groups", "group_claim": "groups",
              "roles": {"instructor": ["teachers"], "operator": ["forge-admins"]}}
    oidc = {"tenants": {
        "acme": {"display_name": "Acme Login", "issuer": op.issuer,
                 "redirect_uri": f"{ORIGIN}/signin/oidc/acme/callback", **common},
        # the same provider under a name it does not publish (http://localhost:PORT)
        "mixup": {"display_name": "Mixup Login", "issuer": op.issuer.replace("127.0.0.1",
                                                                              "localhost"),
                  "redirect_uri": f"{ORIGIN}/signin/oidc/mixup/callback", **common},
    }}
    path = tmp_path / "oidc.yaml"
    path.write_text(yaml.safe_dump(oidc))
    extra = {"FORGE_DB_URL": store} if store else {}
    settings = load_settings(prod_environ(
        tmp_path / "storage", **nats.client_env(), FORGE_ENV="dev", FORGE_OIDC_FILE=str(path),
        ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL="http://127.0.0.1:9", **extra))
    with TestClient(build_app(settings), base_url=ORIGIN, follow_redirects=False) as client:
        yield client


def browser(app: TestClient) -> TestClient:
    """Another browser on the same app (its own cookie jar)."""
    return TestClient(app.app, base_url=ORIGIN, follow_redirects=False)


def begin(client: TestClient, tenant: str = "acme") -> str:
    """Press "Sign in with Acme Login": the provider's authorization URL."""
    resp = client.get(f"/signin/oidc/{tenant}/start?next=/tracks",
                      headers={"sec-fetch-site": "same-origin"})
    assert resp.status_code == 303, resp.text
    return str(resp.headers["location"])


def login(op: LocalProvider, authorize_url: str, user: str) -> str:
    """A person logs in at the provider; the callback URL it sends the browser back to."""
    with httpx.Client(timeout=30) as idp:
        form = idp.get(authorize_url)
        assert form.status_code == 200, form.text
        back = idp.post(f"{op.issuer}/login",
                        data={"request": authorize_url.split("?", 1)[1], "user": user})
    assert back.status_code == 303
    return str(back.headers["location"])


def roles(app: TestClient) -> int:
    with app.app.state.spawn.ctx.db.read() as sess:  # type: ignore[attr-defined]
        return int(sess.scalar(select(func.count()).select_from(TenantRole)) or 0)


def refused(resp: Any, status: int, words: str) -> None:
    """A plain page for people, with no session cookie set."""
    assert resp.status_code == status, resp.text
    assert "text/html" in resp.headers["content-type"]
    text = re.sub(r"<[^>]+>", " ", resp.text)
    assert words in text, text
    assert not has_jargon(text) and "token" not in text.lower()
    assert "forge_session" not in resp.headers.get("set-cookie", "")


def test_signin_maps_the_role_and_a_replayed_callback_is_refused(
        app: TestClient, op: LocalProvider, db_url: str) -> None:
    url = begin(app)
    params = authorize_query(url)
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["client_id"] == CLIENT_ID and params["nonce"] and params["state"]
    pending = app.cookies.get("forge_oidc")
    assert pending
    first = login(op, url, "ada")
    second = login(op, url, "ada")  # the same request again: a second code, same nonce
    done = app.get(first)
    assert done.status_code == 200 and "Signed in" in done.text
    assert "forge_session" in done.headers["set-cookie"]
    tracks = app.get("/tracks")
    assert "Signed in as <strong>ada</strong>" in tracks.text
    db = app.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    assert role_of(db, "acme", "ada") == "instructor"
    assert groups_of(db, "acme", "ada") == ["netplus-2026", "teachers"]
    assert app.get("/ops", headers={"accept": "text/html"}).headers.get(
        "location") == "/ops/signin"  # an instructor is not an operator

    for replay in (second, first):  # a captured callback, replayed with its cookie
        thief = browser(app)
        thief.cookies.set("forge_oidc", pending)
        again = thief.get(replay)
        refused(again, 409 if replay == second else 401,
                "already used" if replay == second else "not accept this sign-in")
    assert roles(app) == 1

    operator = browser(app)
    operator_done = operator.get(login(op, begin(operator), "otto"))
    assert operator_done.status_code == 200
    assert role_of(db, "acme", "otto") == "operator"
    assert operator.get("/ops").status_code == 200


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_id_token_from_another_issuer_is_refused(app: TestClient, op: LocalProvider
                                                    ) -> None:
    refused(app.get("/signin/oidc/mixup/start"), 502, "did not answer as expected")
    url = begin(app)  # discovery (issuer 127.0.0.1) cached; the provider then signs as another
    config = op.provider.configuration_information
    config["issuer"] = "http://127.0.0.1:1/impostor"
    try:
        refused(app.get(login(op, url, "ada")), 401, "could not be trusted")
    finally:
        config["issuer"] = op.issuer
    assert roles(app) == 0


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_id_token_for_another_client_is_refused(app: TestClient, op: LocalProvider) -> None:
    url = begin(app)
    op.audience = OTHER_CLIENT
    try:
        refused(app.get(login(op, url, "ada")), 401, "could not be trusted")
    finally:
        op.audience = None
    assert roles(app) == 0


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_id_token_signed_by_an_unpublished_key_is_refused(app: TestClient,
                                                             op: LocalProvider) -> None:
    original = op.provider.signing_key
    op.published = original
    op.provider.signing_key = op.new_key("op-key-1")  # same key id, a key nobody published
    try:
        refused(app.get(login(op, begin(app), "ada")), 401, "could not be trusted")
        assert roles(app) == 0
        rotated = op.new_key("op-key-2", like=op.provider.signing_key)  # a real rotation: a
        # new key id, published
        op.provider.signing_key = op.published = rotated
        assert app.get(login(op, begin(app), "ada")).status_code == 200  # key set fetched again
        assert roles(app) == 1
    finally:
        op.provider.signing_key, op.published = original, None


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_expired_id_token_is_refused(app: TestClient, op: LocalProvider) -> None:
    url = begin(app)
    op.provider.id_token_lifetime = -600  # pyop signs an ID token that ended 10 minutes ago
    try:
        refused(app.get(login(op, url, "lea")), 401, "could not be trusted")
    finally:
        op.provider.id_token_lifetime = 3600
    assert roles(app) == 0


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_unknown_tenant_or_another_site_gets_a_plain_page(app: TestClient) -> None:
    html = {"accept": "text/html"}
    for resp in (app.get("/signin/oidc/nobody", headers=html),
                 app.get("/signin/oidc/nobody/start", headers=html),
                 app.get("/signin/oidc/nobody/callback?code=x&state=y", headers=html),
                 app.get("/signin/oidc?tenant=nobody", headers=html)):
        refused(resp, 404, "No organisation with this name")
    page = app.get("/signin/oidc?tenant=acme&next=/tracks")
    assert page.headers["location"] == "/signin/oidc/acme?next=/tracks"
    assert "Sign in with Acme Login" in app.get("/signin/oidc/acme").text
    for other_site in ({"sec-fetch-site": "cross-site"}, {"referer": "https://evil.example/"}):
        refused(app.get("/signin/oidc/acme/start", headers=other_site), 403,
                "must be started from this site")  # no drive-by trip to the provider


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_callback_opened_in_another_browser_is_refused(app: TestClient, op: LocalProvider
                                                        ) -> None:
    callback = login(op, begin(app), "ada")
    other = browser(app)
    refused(other.get(callback), 403, "started in another browser")
    begin(other)  # the other browser's own sign-in: its state is not this callback's
    refused(other.get(callback), 403, "started in another browser")
    assert roles(app) == 0
    assert app.get(callback).status_code == 200  # the browser that began it still can


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_stolen_code_is_useless_without_the_pkce_verifier(app: TestClient,
                                                            op: LocalProvider) -> None:
    callback = login(op, begin(app), "ada")
    code = authorize_query(callback)["code"]
    redirect = f"{ORIGIN}/signin/oidc/acme/callback"
    with httpx.Client(timeout=30) as thief:  # even holding the client's own credentials
        for extra in ({}, {"code_verifier": "x" * 64}):
            stolen = thief.post(f"{op.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                **extra})
            assert stolen.status_code == 400 and "id_token" not in stolen.text
    assert roles(app) == 0
    assert app.get(callback).status_code == 200  # the verifier lives in this browser only
    assert roles(app) == 1
