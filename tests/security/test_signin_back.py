"""Attacks on signing back in after a self-serve checkout: "Continue with your purchase" in the
same browser, and the personal sign-in key for another device.

Before: a buyer's session ended after 8 hours (or at sign-out) and nothing let them back in
short of pasting the receipt's long code (which sign-out had also deleted); no key, and the
plan lived only in that receipt. After: the sign-in page offers to continue with the purchase
kept in this browser (HttpOnly cookie, verified server-side, same-origin POST with a CSRF
token bound to that purchase); a personal sign-in key, made at checkout and shown exactly
once on the account page, signs in anywhere; making a new one revokes the old; the plan is
granted in the store, so a session on another device has it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import load_settings
from forge.config.keyring import HmacKeyring
from forge.content import content_path
from forge.services.spawn.app import build_app
from forge.services.spawn.web.security import csrf_token
from forge.tokens import RECEIPT, mint_token

from ..services.conftest import prod_environ
from .test_checkout_signin import ORIGIN, complete, start

KEY = re.compile(r"fgk_[0-9a-f]{16}_[A-Za-z0-9_-]{32,64}")
WORDS = ("jwt", "token", "receipt keyring", "jws", "hmac")  # never on these pages
SIGNED_IN = "Choose a lab"


def _changed(token: str) -> str:
    """``token`` with one signature character replaced by another (never by itself; not the
    last one, whose low bits base64 may not carry)."""
    return token[:-10] + ("B" if token[-10] == "A" else "A") + token[-9:]


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    """The main journey runs on both engines (keys and grants live in the store)."""
    if "db_url" in request.fixturenames:
        return str(request.getfixturevalue("db_url"))
    request.getfixturevalue("sqlite_only_store")
    return ""


@contextmanager
def spawn_site(storage: Path, nats: NatsServer, store: str) -> Iterator[TestClient]:
    """spawn_service in dev with the stand-in payment gateway (lab calls go nowhere)."""
    extra = {"FORGE_DB_URL": store} if store else {}
    settings = load_settings(prod_environ(
        storage, **nats.client_env(), FORGE_ENV="dev", BILLING_MODE="stub",
        FORGE_TEMPLATE_DIR=str(content_path("templates")),
        ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL="http://127.0.0.1:9", **extra))
    with TestClient(build_app(settings), follow_redirects=False) as client:
        yield client


@pytest.fixture
def app(tmp_path: Path, nats: NatsServer, store: str) -> Iterator[TestClient]:
    with spawn_site(tmp_path / "storage", nats, store) as client:
        yield client


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One site on SQLite for the tests that need no engine of their own (each of them
    uses its own browsers, `device(shared)`)."""
    server = NatsServer()
    server.start()
    try:
        with spawn_site(tmp_path_factory.mktemp("signin-back") / "storage", server, "") as site:
            yield site
    finally:
        server.close()


def device(app: TestClient) -> TestClient:
    """Another browser or device on the same app (its own cookies)."""
    return TestClient(app.app, follow_redirects=False)


def buy(client: TestClient) -> None:
    done = complete(client, start(client))
    assert done.status_code == 303 and done.headers["location"] == "/tracks"  # type: ignore[attr-defined]


def field(html: str, name: str, form_action: str) -> str:
    """The value of hidden field `name` in the form posting to `form_action`."""
    form = re.search(rf'action="{re.escape(form_action)}"(.*?)</form>', html, re.S)
    assert form is not None, form_action
    found = re.search(rf'name="{name}" value="([^"]*)"', form.group(1))
    assert found is not None
    return found.group(1)


def sign_out(client: TestClient) -> None:
    csrf = field(client.get("/tracks").text, "csrf", "/signout")
    assert client.post("/signout", data={"csrf": csrf},
                       headers={"origin": ORIGIN}).status_code == 303


def plain(html: str) -> bool:
    text = re.sub(r"<[^>]+>", " ", html).lower()
    return not any(word in text for word in WORDS)


def key_sign_in(client: TestClient, key: str) -> int:
    return client.post("/signin", data={"api_key": key},
                       headers={"origin": ORIGIN}).status_code


def test_the_sign_in_key_is_shown_once_never_logged_and_the_old_one_dies_on_renewal(
        app: TestClient, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    buy(app)
    tracks = app.get("/tracks")
    assert "Show it and save it" in tracks.text and not KEY.search(tracks.text)
    sealed = app.cookies.get("forge_new_key")
    assert sealed and not KEY.search(sealed)  # sealed, not the key itself

    # A visit (a newcomer looking around) shows nothing and uses nothing up: the key
    # waits for a press of "Show my sign-in key", a same-origin form with the session's
    # token.
    for _ in range(2):
        waiting = app.get("/account")
        assert waiting.status_code == 200 and not KEY.search(waiting.text)
        assert "Show my sign-in key" in waiting.text and app.cookies.get("forge_new_key")
    show_csrf = field(waiting.text, "csrf", "/account/key/show")
    for data, origin in (({}, ORIGIN), ({"csrf": show_csrf}, "http://evil.example")):
        refused = app.post("/account/key/show", data=data, headers={"origin": origin})
        assert refused.status_code == 403 and not KEY.search(refused.text)
    shown = app.post("/account/key/show", data={"csrf": show_csrf},
                     headers={"origin": ORIGIN})
    assert shown.status_code == 200 and plain(shown.text)
    assert shown.headers["cache-control"] == "no-store"
    found = KEY.search(shown.text)
    assert found is not None and "shown only this once" in shown.text
    key = found.group(0)
    assert "Download as a text file" in shown.text and "Copy the key" in shown.text
    again = app.get("/account")  # back to the page: not shown again, nothing waits
    assert again.status_code == 200 and not KEY.search(again.text)
    assert "Show my sign-in key" not in again.text
    replayed = device(app)  # the sealed cookie replayed as it was: not shown again either
    replayed.cookies.update(app.cookies)
    replayed.cookies.set("forge_new_key", sealed)
    spent = replayed.post("/account/key/show", data={"csrf": show_csrf},
                          headers={"origin": ORIGIN}).text
    assert not KEY.search(spent) and "Show my sign-in key" not in spent

    # Another device: the key signs in and the plan bought is there (granted in the store).
    phone = device(app)
    assert key_sign_in(phone, key) == 303
    assert "plan PRO" in phone.get("/tracks").text

    # A new key: refused without the session's form token or from another site.
    csrf = field(again.text, "csrf", "/account/key")
    assert app.post("/account/key", data={}, headers={"origin": ORIGIN}).status_code == 403
    assert app.post("/account/key", data={"csrf": csrf},
                    headers={"origin": "http://evil.example"}).status_code == 403
    made = app.post("/account/key", data={"csrf": csrf}, headers={"origin": ORIGIN})
    assert made.status_code == 303 and made.headers["location"] == "/account"
    assert not KEY.search(app.get("/account").text)
    renewed = KEY.search(app.post("/account/key/show", data={"csrf": csrf},
                                  headers={"origin": ORIGIN}).text)
    assert renewed is not None and renewed.group(0) != key
    laptop = device(app)
    assert key_sign_in(laptop, key) == 401  # the old key stops working at once
    assert app.get("/v1/tracks", headers={"x-api-key": key}).status_code == 401  # API too
    assert app.get("/v1/tracks", headers={"x-api-key": renewed.group(0)}).status_code == 200
    assert key_sign_in(laptop, renewed.group(0)) == 303

    logged = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert key not in logged and renewed.group(0) not in logged
    assert all(not KEY.search(v) for r in caplog.records for v in (r.getMessage(),))


@pytest.mark.usefixtures("sqlite_only_store")
def test_continue_with_the_purchase_signs_in_only_its_own_learner(shared: TestClient) -> None:
    app = device(shared)
    buy(app)
    me = app.get("/account").text
    sign_out(app)
    assert app.get("/tracks").status_code == 303  # signed out
    page = app.get("/signin")
    assert "Continue with your purchase" in page.text and plain(page.text)
    csrf = field(page.text, "csrf", "/signin/continue")

    # Without the form's token, with another purchase's token, or from another site: refused.
    for data, origin in (({}, ORIGIN), ({"csrf": "x" * 32}, ORIGIN),
                         ({"csrf": csrf}, "http://evil.example"), ({"csrf": csrf}, None)):
        headers = {"origin": origin} if origin else {}
        refused = app.post("/signin/continue", data=data, headers=headers)
        assert refused.status_code == 403 and plain(refused.text)
        assert "forge_session" not in refused.headers.get("set-cookie", "")
    other = device(app)
    buy(other)  # someone else's purchase: its cookie with this page's form token
    other_receipt = other.cookies.get("forge_receipt")
    thief = device(app)
    thief.cookies.set("forge_receipt", other_receipt or "")
    assert thief.post("/signin/continue", data={"csrf": csrf},
                      headers={"origin": ORIGIN}).status_code == 403

    back = app.post("/signin/continue", data={"csrf": csrf, "next": "/account"},
                    headers={"origin": ORIGIN})
    assert back.status_code == 303 and back.headers["location"] == "/account"
    mine = re.search(r"You are <strong>([^<]+)</strong>", me)
    assert mine is not None and mine.group(0) in app.get("/account").text  # the same learner
    assert SIGNED_IN in app.get("/tracks").text

    # "Forget this purchase": gone from this browser, no more offer.
    sign_out(app)
    forget = field(app.get("/signin").text, "csrf", "/signin/forget")
    assert app.post("/signin/forget", data={"csrf": forget},
                    headers={"origin": ORIGIN}).status_code == 303
    assert "Continue with your purchase" not in app.get("/signin").text


@pytest.mark.usefixtures("sqlite_only_store")
def test_forged_expired_or_unproven_purchases_in_the_cookie_do_not_sign_in(
        shared: TestClient) -> None:
    app = shared
    settings = app.app.state.spawn.settings  # type: ignore[attr-defined]
    forger = HmacKeyring("RECEIPT_HMAC_SECRET", current=b"not-the-platforms-secret-0123456789")
    claims = {"tenant_id": "acme", "sub": "victim", "sub_proof": "new", "plan": "ENTERPRISE",
              "retention_days": 30, "charge_id": "ch_x"}
    unproven = {k: v for k, v in claims.items() if k != "sub_proof"}  # a buyer-named learner
    for receipt in (mint_token(forger, RECEIPT, claims),  # forged
                    mint_token(settings.receipt, RECEIPT, claims, ttl_s=-3600),  # expired
                    mint_token(settings.receipt, RECEIPT, unproven),
                    _changed(mint_token(settings.receipt, RECEIPT, claims))):  # changed
        browser = device(app)
        browser.cookies.set("forge_receipt", receipt)
        page = browser.get("/signin")
        assert "Continue with your purchase" not in page.text
        # even with the right form token for that cookie value (as the server computes it)
        refused = browser.post("/signin/continue", data={"csrf": csrf_token(settings, receipt)},
                               headers={"origin": ORIGIN})
        assert refused.status_code == 401 and plain(refused.text)
        assert "forge_session" not in refused.headers.get("set-cookie", "")
        assert browser.get("/tracks").status_code == 303
