"""Attack: reuse an /ops session after its operator signed out, or after the operator role
that opened it through single sign-on was withdrawn.

The `forge_ops` cookie opens the installation's operator console (every tenant's labs and
failed events). Signing out only dropped the cookie from that browser: a copy of it (a
shared computer's cookie store, a proxy or browser extension) kept opening /ops for the
rest of its hour, and a session opened through OIDC with an operator role kept working
after the organisation's identity provider withdrew the role (the session named nobody).
Now sign-out (/ops/signout, and the learner /signout that also ends an SSO operator
session) refuses the session everywhere, and an SSO operator session ends with the role.

Signing in over another person's session (a shared computer: amy walked away signed in, bob
signs in) only replaced the cookie: amy's session stayed live on the server for any copy of
it until its idle limit, and an operator role amy opened through single sign-on stayed in
the browser bob now used. Now a sign-in ends another person's session as a sign-out would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import Settings
from forge.identity.apikeys import create_api_key
from forge.identity.roles import LEARNER, OPERATOR, record_role
from forge.services.spawn.app import build_app
from forge.services.spawn.web.security import operator_session

from ..services.conftest import SECRETS, shipped_spawn_settings

ORIGIN = "http://testserver"
pytestmark = pytest.mark.usefixtures("sqlite_only_store")


@pytest.fixture
def app_client(tmp_path: Path, nats: NatsServer) -> Iterator[tuple[TestClient, Settings]]:
    settings = shipped_spawn_settings(tmp_path / "storage", nats)
    with TestClient(build_app(settings), follow_redirects=False) as client:
        yield client, settings


def test_a_signed_out_ops_session_is_refused_everywhere(
        app_client: tuple[TestClient, Settings]) -> None:
    client, _ = app_client
    ok = client.post("/ops/signin", data={"token": SECRETS["OPERATOR_TOKEN"]},
                     headers={"origin": ORIGIN})
    assert ok.status_code == 303
    copied = client.cookies.get("forge_ops")
    assert copied and client.get("/ops").status_code == 200
    out = client.post("/ops/signout", headers={"origin": ORIGIN})
    assert out.status_code == 303
    client.cookies.clear()
    client.cookies.set("forge_ops", copied)  # the copy taken before sign-out
    assert client.get("/ops").headers.get("location") == "/ops/signin"


def test_an_sso_operator_session_ends_with_the_role_and_at_learner_signout(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    record_role(db, "acme", "olga", OPERATOR)
    # What the OIDC callback sets for a person the IdP calls an operator.
    client.cookies.set("forge_ops", operator_session(settings, person=("acme", "olga")))
    assert client.get("/ops").status_code == 200
    record_role(db, "acme", "olga", LEARNER)  # the IdP withdrew the role at next sign-in
    assert client.get("/ops").headers.get("location") == "/ops/signin"

    record_role(db, "acme", "olga", OPERATOR)
    sso = operator_session(settings, person=("acme", "olga"))
    client.cookies.set("forge_ops", sso)
    assert client.get("/ops").status_code == 200
    assert client.post("/signout", headers={"origin": ORIGIN}).status_code == 303
    client.cookies.clear()
    client.cookies.set("forge_ops", sso)
    assert client.get("/ops").headers.get("location") == "/ops/signin"


def test_signing_in_over_another_learners_session_ends_it(
        app_client: tuple[TestClient, Settings]) -> None:
    client, settings = app_client
    db = client.app.state.spawn.ctx.db  # type: ignore[attr-defined]
    amy, bob = (create_api_key(db, "acme", who).plaintext for who in ("amy", "bob"))
    record_role(db, "acme", "amy", OPERATOR)

    def sign_in(key: str) -> str:
        done = client.post("/signin", data={"api_key": key}, headers={"origin": ORIGIN})
        assert done.status_code == 303, done.text
        gone = 'forge_ops=""' in done.headers.get("set-cookie", "")
        signed_in_with(str(done.cookies.get("forge_session")),
                       None if gone else client.cookies.get("forge_ops"))
        return str(done.cookies.get("forge_session"))

    def signed_in_with(session: str, ops: str | None = None) -> bool:
        client.cookies.clear()
        client.cookies.set("forge_session", session)
        if ops:
            client.cookies.set("forge_ops", ops)
        return client.get("/").headers["location"] == "/tracks"

    bob_first = sign_in(bob)
    assert sign_in(bob) != bob_first and signed_in_with(bob_first)  # bob's own: kept
    amys = sign_in(amy)
    amy_ops = operator_session(settings, person=("acme", "amy"))
    token_ops = client.post("/ops/signin", data={"token": SECRETS["OPERATOR_TOKEN"]},
                            headers={"origin": ORIGIN}).cookies.get("forge_ops")
    client.cookies.clear()
    assert token_ops and signed_in_with(amys, amy_ops)
    assert client.get("/ops").status_code == 200
    sign_in(bob)  # amy's session and her single sign-on operator role end here
    assert client.cookies.get("forge_ops") is None
    assert not signed_in_with(amys, amy_ops)
    assert client.get("/ops").headers.get("location") == "/ops/signin"
    # An operator session opened with OPERATOR_TOKEN names nobody: bob's sign-in keeps it.
    signed_in_with(sign_in(amy), token_ops)
    sign_in(bob)
    assert client.get("/ops").status_code == 200
