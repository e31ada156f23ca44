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

What a single sign-on session must not outlive: a person signed in through the provider
cannot make a personal sign-in key (before: one that never expires, outliving their removal
at the provider, and replacing keys the operator issued them); an operator role from single
sign-on ends at sign-out and at a later sign-in without it (before: the /ops cookie stayed
valid for up to an hour on that browser).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.classroom.cohort_invites import make_invite
from forge.classroom.cohorts import Manager, create_cohort, enrol_subjects, enrolled_cohorts
from forge.config import load_settings
from forge.identity.roles import groups_of, role_of
from forge.services.spawn.app import build_app
from forge.services.spawn.web.errors import has_jargon
from forge.services.spawn.web.security import csrf_token
from forge.store.models import ApiKey, TenantRole

from ..services.conftest import prod_environ
from ..support.oidc_provider import OTHER_CLIENT, LocalProvider, authorize_query, local_provider

ORIGIN = "http://localhost"
CLIENT_ID = "forge-acme"
CLIENT_SECRET = "acme-client-secret-for-tests-0123456789"
USERS = {"ada": {"sub": "ada", "groups": ["teachers", "netplus-2026"]},
         "otto": {"sub": "otto", "groups": ["forge-admins"]},
         "kim": {"sub": "kim", "groups": ["case-2026"]},
         **{name: {"sub": name, "groups": ["netplus-2026"]}
            for name in ("ivy", "lea", "max", "sam", "tom", "uma", "zoe")}}


@pytest.fixture(scope="module")
def op() -> Iterator[LocalProvider]:
    """One provider for the module; each test restores any knob it turns."""
    with local_provider([f"{ORIGIN}/signin/oidc/acme/callback"], CLIENT_ID, CLIENT_SECRET,
                        USERS) as provider:
        yield provider


@contextmanager
def platform(tmp: Path, nats: NatsServer, op: LocalProvider, store: str = ""
             ) -> Iterator[TestClient]:
    """spawn_service with tenants `acme` (the provider) and `mixup` (the same provider under
    a name it does not publish), on the store `store` (default: SQLite under `tmp`)."""
    secret = tmp / "acme-oidc-secret"
    secret.write_text(CLIENT_SECRET + "\n")
    common = {"client_id": CLIENT_ID, "client_secret_file": str(secret),
              "role_claim": "groups", "group_claim": "groups",
              "roles": {"instructor": ["teachers"], "operator": ["forge-admins"]}}
    oidc = {"tenants": {
        "acme": {"display_name": "Acme Login", "issuer": op.issuer,
                 "redirect_uri": f"{ORIGIN}/signin/oidc/acme/callback", **common},
        "mixup": {"display_name": "Mixup Login", "issuer": op.issuer.replace("127.0.0.1",
                                                                              "localhost"),
                  "redirect_uri": f"{ORIGIN}/signin/oidc/mixup/callback", **common},
    }}
    path = tmp / "oidc.yaml"
    path.write_text(yaml.safe_dump(oidc))
    extra = {"FORGE_DB_URL": store} if store else {}
    settings = load_settings(prod_environ(
        tmp / "storage", **nats.client_env(), FORGE_ENV="dev", FORGE_OIDC_FILE=str(path),
        ORCHESTRATOR_URL="http://127.0.0.1:9", SCOREBOARD_URL="http://127.0.0.1:9", **extra))
    with TestClient(build_app(settings), base_url=ORIGIN, follow_redirects=False) as client:
        yield client


@pytest.fixture
def app(tmp_path: Path, nats: NatsServer, op: LocalProvider, db_url: str
        ) -> Iterator[TestClient]:
    """A platform of its own, on each engine (single use of a nonce is a store property)."""
    with platform(tmp_path, nats, op, db_url) as client:
        yield client


@pytest.fixture(scope="module")
def shared_platform(tmp_path_factory: pytest.TempPathFactory, op: LocalProvider
                    ) -> Iterator[TestClient]:
    """One SQLite platform for the attacks (each uses its own browser and its own person)."""
    server = NatsServer()
    server.start()
    try:
        with platform(tmp_path_factory.mktemp("oidc"), server, op) as client:
            yield client
    finally:
        server.close()


@pytest.fixture
def shared(shared_platform: TestClient, sqlite_only_store: str) -> TestClient:
    """The shared SQLite platform's own client (its event loop holds the app's pooled
    connections to the provider), as a fresh browser: no cookies from an earlier test."""
    shared_platform.cookies.clear()
    return shared_platform


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


def recorded(app: TestClient, subject: str) -> bool:
    """True once a sign-in of `subject` (tenant acme) recorded a role."""
    with app.app.state.spawn.ctx.db.read() as sess:  # type: ignore[attr-defined]
        return sess.get(TenantRole, ("acme", subject)) is not None


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
    db = app.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    # A cohort naming one of ada's IdP groups enrols her at sign-in (issue 18 item 2).
    cohort = create_cohort(db, Manager("acme", "olga", "operator"), "Net 2026",
                           idp_group="netplus-2026")
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
    assert role_of(db, "acme", "ada") == "instructor"
    assert groups_of(db, "acme", "ada") == ["netplus-2026", "teachers"]
    assert enrolled_cohorts(db, "acme", "ada") == [cohort.cohort_id]
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


def test_an_id_token_from_another_issuer_is_refused(shared: TestClient, op: LocalProvider
                                                    ) -> None:
    refused(shared.get("/signin/oidc/mixup/start"), 502, "did not answer as expected")
    url = begin(shared)  # discovery (issuer 127.0.0.1) is cached; the provider then signs as
    config = op.provider.configuration_information  # another issuer
    config["issuer"] = "http://127.0.0.1:1/impostor"
    try:
        refused(shared.get(login(op, url, "ivy")), 401, "could not be trusted")
    finally:
        config["issuer"] = op.issuer
    assert not recorded(shared, "ivy")


def test_an_id_token_for_another_client_is_refused(shared: TestClient, op: LocalProvider
                                                   ) -> None:
    url = begin(shared)
    op.audience = OTHER_CLIENT
    try:
        refused(shared.get(login(op, url, "max")), 401, "could not be trusted")
    finally:
        op.audience = None
    assert not recorded(shared, "max")


def test_an_id_token_signed_by_an_unpublished_key_is_refused(shared: TestClient,
                                                             op: LocalProvider) -> None:
    original = op.provider.signing_key
    op.published = original
    op.provider.signing_key = op.new_key("op-key-1")  # same key id, a key nobody published
    try:
        refused(shared.get(login(op, begin(shared), "sam")), 401, "could not be trusted")
        assert not recorded(shared, "sam")
        rotated = op.new_key("op-key-2", like=op.provider.signing_key)  # a real rotation: a
        op.provider.signing_key = op.published = rotated  # new key id, published
        assert shared.get(login(op, begin(shared), "sam")).status_code == 200  # keys fetched
        assert recorded(shared, "sam")                                          # again
    finally:
        op.provider.signing_key, op.published = original, None


def test_an_expired_id_token_is_refused(shared: TestClient, op: LocalProvider) -> None:
    url = begin(shared)
    op.provider.id_token_lifetime = -600  # pyop signs an ID token that ended 10 minutes ago
    try:
        refused(shared.get(login(op, url, "lea")), 401, "could not be trusted")
    finally:
        op.provider.id_token_lifetime = 3600
    assert not recorded(shared, "lea")


def test_an_unknown_tenant_or_another_site_gets_a_plain_page(shared: TestClient) -> None:
    html = {"accept": "text/html"}
    for resp in (shared.get("/signin/oidc/nobody", headers=html),
                 shared.get("/signin/oidc/nobody/start", headers=html),
                 shared.get("/signin/oidc/nobody/callback?code=x&state=y", headers=html),
                 shared.get("/signin/oidc?tenant=nobody", headers=html)):
        refused(resp, 404, "No organisation with this name")
        # What the learner typed was a name, not an address (review DD)
        assert "Check the organisation&#39;s name" in resp.text, resp.text[-600:]
    page = shared.get("/signin/oidc?tenant=acme&next=/tracks")
    assert page.headers["location"] == "/signin/oidc/acme?next=/tracks"
    assert "Sign in with Acme Login" in shared.get("/signin/oidc/acme").text
    for other_site in ({"sec-fetch-site": "cross-site"}, {"referer": "https://evil.example/"}):
        refused(shared.get("/signin/oidc/acme/start", headers=other_site), 403,
                "must be started from this site")  # no drive-by trip to the provider


def test_a_callback_opened_in_another_browser_is_refused(shared: TestClient, op: LocalProvider
                                                        ) -> None:
    callback = login(op, begin(shared), "tom")
    other = browser(shared)
    refused(other.get(callback), 403, "started in another browser")
    begin(other)  # the other browser's own sign-in: its state is not this callback's
    refused(other.get(callback), 403, "started in another browser")
    assert not recorded(shared, "tom")
    assert shared.get(callback).status_code == 200  # the browser that began it still can
    assert recorded(shared, "tom")


def test_sign_in_state_tossed_from_a_sibling_site_is_not_read_over_https(
        shared: TestClient, op: LocalProvider) -> None:
    """Over https the sign-in state is `__Host-forge_oidc` (Path=/): as `__Secure-` on its
    own path, a sibling subdomain served over https could set it for the parent domain, and
    a victim sent to the attacker's callback was signed in as the attacker (login CSRF)."""
    https = "https://localhost"  # the attacker's browser: `shared` (its loop holds the pool)
    victim = TestClient(shared.app, base_url=https, follow_redirects=False)
    started = shared.get(f"{https}/signin/oidc/acme/start?next=/tracks",
                         headers={"sec-fetch-site": "same-origin"})
    state = started.headers["set-cookie"]
    assert state.startswith("__Host-forge_oidc=") and "Path=/;" in state, state
    callback = login(op, str(started.headers["location"]), "zoe").split("localhost", 1)[1]
    tossed = {"cookie": f"__Secure-forge_oidc={state.split(';')[0].split('=', 1)[1]}"}
    refused(victim.get(callback, headers=tossed), 403, "started in another browser")
    assert not recorded(shared, "zoe")
    assert shared.get(https + callback).status_code == 200  # its own browser, over https
    assert recorded(shared, "zoe")


def test_a_stolen_code_is_useless_without_the_pkce_verifier(shared: TestClient,
                                                            op: LocalProvider) -> None:
    callback = login(op, begin(shared), "uma")
    code = authorize_query(callback)["code"]
    redirect = f"{ORIGIN}/signin/oidc/acme/callback"
    with httpx.Client(timeout=30) as thief:  # even holding the client's own credentials
        for extra in ({}, {"code_verifier": "x" * 64}):
            stolen = thief.post(f"{op.issuer}/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                **extra})
            assert stolen.status_code == 400 and "id_token" not in stolen.text
    assert not recorded(shared, "uma")
    assert shared.get(callback).status_code == 200  # the verifier lives in this browser only
    assert recorded(shared, "uma")


def _keys(app: TestClient) -> int:
    with app.app.state.spawn.ctx.db.read() as sess:  # type: ignore[attr-defined]
        return int(sess.scalar(select(func.count()).select_from(ApiKey)) or 0)


def _signed_in(person: TestClient, op: LocalProvider, user: str) -> TestClient:
    """`person` (the shared platform's own client: its loop holds the provider connections)
    signs in as `user` at the provider."""
    assert person.get(login(op, begin(person), user)).status_code == 200
    return person


def test_a_single_sign_on_learner_cannot_make_a_sign_in_key(shared: TestClient,
                                                            op: LocalProvider) -> None:
    person = _signed_in(shared, op, "ivy")
    account = person.get("/account")
    assert account.status_code == 200
    assert "Make a new sign-in key" not in account.text
    assert "own sign-in service" in re.sub(r"\s+", " ", account.text)
    settings = shared.app.state.spawn.settings  # type: ignore[attr-defined]
    session = person.cookies.get("forge_session")
    assert session
    before = _keys(shared)
    made = person.post("/account/key", data={"csrf": csrf_token(settings, session)},
                       headers={"origin": "http://localhost"})
    assert made.status_code == 403 and "own sign-in service" in made.text
    assert _keys(shared) == before
    assert "forge_signin_key" not in made.headers.get("set-cookie", "")


def test_an_operator_role_from_single_sign_on_ends_with_sign_out_and_with_the_role(
        shared: TestClient, op: LocalProvider) -> None:
    settings = shared.app.state.spawn.settings  # type: ignore[attr-defined]
    person = _signed_in(shared, op, "otto")  # the provider names otto an operator
    assert person.get("/ops").status_code == 200
    csrf = csrf_token(settings, person.cookies.get("forge_session") or "")
    out = person.post("/signout", data={"csrf": csrf}, headers={"origin": "http://localhost"})
    assert out.status_code == 303
    assert person.get("/ops", headers={"accept": "text/html"}).status_code == 303

    again = _signed_in(shared, op, "otto")
    ops_cookie = again.cookies.get("forge_ops")
    assert ops_cookie and again.get("/ops").status_code == 200
    # On the same browser, someone the provider does not name an operator signs in next.
    assert again.get(login(op, begin(again), "ivy")).status_code == 200
    assert again.get("/ops", headers={"accept": "text/html"}).status_code == 303


def test_joining_beside_oneself_in_other_letter_case_is_refused(
        shared: TestClient, op: LocalProvider, caplog: pytest.LogCaptureFixture) -> None:
    """A roster refuses a line naming a class member in other letter case; joining by an
    IdP group at sign-in or by an invite link did not: `kim` joined beside the enrolled
    `KIM` (or `Kim`), two learners an instructor cannot tell apart on the dashboard (one
    extended, graded or taken out for the other). Now the group's cohort is skipped (the
    sign-in goes on) and the invite is refused with a page saying what to do."""
    db = shared.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    olga = Manager("acme", "olga", "operator")
    grouped = create_cohort(db, olga, "Case 2026", idp_group="case-2026").cohort_id
    enrol_subjects(db, olga, grouped, ["KIM"])
    invited = create_cohort(db, olga, "Case invites").cohort_id
    enrol_subjects(db, olga, invited, ["Kim"])
    _, code = make_invite(db, olga, invited)
    with caplog.at_level("WARNING", logger="forge.classroom.cohorts"):
        person = _signed_in(shared, op, "kim")
    assert enrolled_cohorts(db, "acme", "kim") == []
    assert any("has them in other letter case" in r.getMessage() for r in caplog.records)
    settings = shared.app.state.spawn.settings  # type: ignore[attr-defined]
    joined = person.post(f"/join/{code}", headers={"origin": ORIGIN}, data={
        "csrf": csrf_token(settings, person.cookies.get("forge_session") or "")})
    text = re.sub(r"\s+", " ", joined.text)
    assert joined.status_code == 409 and "other letter case" in text, text
    assert enrolled_cohorts(db, "acme", "kim") == []
