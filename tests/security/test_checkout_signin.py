"""Attacks on the plans page's checkout, which signs the buyer in without any token shown.

Before: there was no browser checkout; a buyer pasted a receipt JWT into /signin, and a bad
one answered with token jargon ("token signature does not verify"). After: a completion is
bound to the browser that started it (nonce cookie), to the signed-in buyer if any, and is
consumed once; refusals are plain sentences; the checkout never travels in a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.config.keyring import HmacKeyring
from forge.content import content_path
from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.services.spawn.app import build_app
from forge.tokens import CHECKOUT, RECEIPT, mint_token

from ..services.conftest import prod_environ

ORIGIN = "http://testserver"
JARGON = ("jws", "jwt", "signature", "token", "orchestrator", "hmac", "jti")


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """The replay test runs on both engines (single use is a store property); the others on
    SQLite."""
    if "db_url" in request.fixturenames:
        return str(request.getfixturevalue("db_url"))
    request.getfixturevalue("sqlite_only_store")
    return ""


@pytest.fixture
def app(tmp_path: Path, nats: NatsServer, store: str) -> Iterator[TestClient]:
    extra = {"FORGE_DB_URL": store} if store else {}
    settings = load_settings(prod_environ(
        tmp_path / "storage", **nats.client_env(), FORGE_ENV="dev", BILLING_MODE="stub",
        FORGE_TEMPLATE_DIR=str(content_path("templates")),
        ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL="http://127.0.0.1:9", **extra))
    with TestClient(build_app(settings), follow_redirects=False) as client:
        yield client


def browser(app: TestClient) -> TestClient:
    """Another browser on the same app (its own cookie jar)."""
    return TestClient(app.app, follow_redirects=False)


def start(client: TestClient, plan: str = "PRO", csrf: str | None = None) -> str:
    """Choose a plan; the stand-in gateway's page (reached by a redirect, so Back and Reload
    show it again) carries the checkout in a form field."""
    data = {"plan": plan, **({"csrf": csrf} if csrf else {})}
    chosen = client.post("/checkout", data=data, headers={"origin": ORIGIN})
    assert chosen.status_code == 303 and chosen.headers["location"] == "/checkout"
    resp = client.get("/checkout")
    assert resp.status_code == 200 and "No card is charged" in resp.text
    found = re.search(r'name="checkout" value="([^"]+)"', resp.text)
    assert found is not None
    return found.group(1)


def complete(client: TestClient, checkout: str) -> object:
    return client.post("/checkout/complete", data={"checkout": checkout},
                       headers={"origin": ORIGIN})


def plain(text: str) -> bool:
    lower = re.sub(r"<[^>]+>", " ", text).lower()
    return not any(word in lower for word in JARGON)


def test_a_checkout_signs_in_once_in_its_own_browser_only(app: TestClient, db_url: str) -> None:
    checkout = start(app)
    nonce = app.cookies.get("forge_checkout")
    # The browser's binding is a nonce of its own, never derived from the checkout (which
    # the payment page's cookie keeps for that page, HttpOnly, until it is completed).
    assert nonce and nonce != checkout and nonce not in checkout
    done = complete(app, checkout)
    assert done.status_code == 303 and done.headers["location"] == "/tracks"  # type: ignore[attr-defined]
    assert "forge_checkout_page" not in app.cookies and "forge_checkout" not in app.cookies
    assert "No payment in progress" in app.get("/checkout").text  # Back after paying
    tracks = app.get("/tracks")
    assert tracks.status_code == 200 and "Start this lab: Find the server" in tracks.text
    assert "plan PRO" in tracks.text

    # Replayed with everything the first browser held: refused, nobody signed in.
    thief = browser(app)
    thief.cookies.set("forge_checkout", nonce)
    again = complete(thief, checkout)
    assert again.status_code == 409  # type: ignore[attr-defined]
    assert "already completed" in again.text and "Sign in instead" in again.text  # type: ignore[attr-defined]
    assert "forge_session" not in again.headers.get("set-cookie", "")  # type: ignore[attr-defined]
    assert thief.get("/tracks").status_code == 303

    # A checkout started in one browser cannot be finished in another (login CSRF).
    lured = start(thief)
    victim = browser(app)
    moved = complete(victim, lured)
    assert moved.status_code == 403 and "another browser" in moved.text  # type: ignore[attr-defined]
    assert "forge_session" not in moved.headers.get("set-cookie", "")  # type: ignore[attr-defined]


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_signed_in_buyers_checkout_cannot_sign_in_someone_else(app: TestClient) -> None:
    db = app.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    for who in ("alice", "bob"):
        grant(db, "acme", "FREE", who)
    alice, bob = browser(app), browser(app)
    for client, who in ((alice, "alice"), (bob, "bob")):
        key = create_api_key(db, "acme", who).plaintext
        assert client.post("/signin", data={"api_key": key},
                           headers={"origin": ORIGIN}).status_code == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', alice.get("/plans").text)
    assert csrf is not None
    checkout = start(alice, "TEAM", csrf.group(1))
    bob.cookies.set("forge_checkout", alice.cookies.get("forge_checkout") or "")
    stolen = complete(bob, checkout)
    assert stolen.status_code == 403 and "another learner" in stolen.text  # type: ignore[attr-defined]
    assert "plan FREE" in bob.get("/tracks").text  # bob did not get alice's plan
    mine = complete(alice, checkout)
    assert mine.status_code == 303  # type: ignore[attr-defined]
    assert "plan TEAM" in alice.get("/tracks").text


@pytest.mark.usefixtures("sqlite_only_store")
def test_forged_or_expired_receipts_and_checkouts_are_refused_in_plain_words(
        app: TestClient) -> None:
    settings = app.app.state.spawn.settings  # type: ignore[attr-defined]
    forger = HmacKeyring("RECEIPT_HMAC_SECRET", current=b"not-the-platforms-secret-0123456789")
    forged_checkout = mint_token(forger, CHECKOUT, {"plan": "ENTERPRISE", "nonce_sha256": "0"})
    start(app)  # this browser holds a nonce: only the token is wrong
    resp = complete(app, forged_checkout)
    assert resp.status_code == 400 and "not valid or has expired" in resp.text  # type: ignore[attr-defined]
    assert plain(resp.text) and "forge_session" not in resp.headers.get("set-cookie", "")  # type: ignore[attr-defined]

    claims = {"tenant_id": "acme", "sub": "eve", "sub_proof": "new", "plan": "ENTERPRISE",
              "retention_days": 30, "charge_id": "ch_x"}
    for receipt in (mint_token(forger, RECEIPT, claims),
                    mint_token(settings.receipt, RECEIPT, claims, ttl_s=-3600)):
        refused = app.post("/signin", data={"receipt": receipt}, headers={"origin": ORIGIN})
        assert refused.status_code == 401 and "cannot be used" in refused.text
        assert plain(refused.text.replace("receipt", ""))

    # The checkout is never accepted from a URL (logs, history): POST form only.
    assert app.get("/checkout/complete", params={"checkout": forged_checkout}).status_code in (
        404, 405)


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_payment_left_open_is_not_the_next_persons_after_sign_out(app: TestClient) -> None:
    """Review CE: signing out kept the payment page's checkout for its 15 minutes, so the
    next person at a shared browser found the previous one's "Pay for plan" page."""
    start(app, "TEAM")
    assert "Pay for the Team plan" in app.get("/checkout").text
    out = app.post("/signout", headers={"origin": ORIGIN})
    assert out.status_code == 303
    assert "forge_checkout_page" not in app.cookies and "forge_checkout" not in app.cookies
    assert "No payment in progress" in app.get("/checkout").text
