"""Attack: reuse an /ops session after its operator signed out, or after the operator role
that opened it through single sign-on was withdrawn.

The `forge_ops` cookie opens the installation's operator console (every tenant's labs and
failed events). Signing out only dropped the cookie from that browser: a copy of it (a
shared computer's cookie store, a proxy or browser extension) kept opening /ops for the
rest of its hour, and a session opened through OIDC with an operator role kept working
after the organisation's identity provider withdrew the role (the session named nobody).
Now sign-out (/ops/signout, and the learner /signout that also ends an SSO operator
session) refuses the session everywhere, and an SSO operator session ends with the role.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import Settings
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
