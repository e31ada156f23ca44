"""Attack: read an installation's internals from the public readiness probe.

Before issue 12 an anonymous `GET /readyz` returned every check's detail: the storage root
path, the database, the key ids in force for every secret (so an outsider could tell when a
secret rotated, and match services), policy hashes. Now the public answer is the status and
the names of failed checks; the detail needs the operator token (keyring-aware).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.services.common.serving import ServiceName, build_service

from ..services.conftest import SECRETS, prod_environ, with_signing_key

PUBLIC_KEYS = {"status", "service", "failed", "error", "message"}
OPERATOR = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}


@pytest.fixture
def settings(tmp_path: Path, nats: NatsServer, db_url: str) -> Settings:
    """A prod installation on each store engine (the database is one of the internals)."""
    storage = with_signing_key(tmp_path / "storage")
    return load_settings(prod_environ(storage, **nats.client_env(), FORGE_DB_URL=db_url))


@pytest.fixture(params=list(ServiceName), ids=lambda s: s.value)
def client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[TestClient]:
    with TestClient(build_service(request.param, settings)) as c:
        yield c


def _secrets_of_the_installation(settings: Settings) -> list[str]:
    rings = (settings.sat, settings.et, settings.receipt, settings.operator)
    return [str(settings.storage_root), settings.db_url, *(r.current_kid for r in rings)]


def test_public_readyz_names_status_only(client: TestClient, settings: Settings) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) <= PUBLIC_KEYS
    assert body["status"] == "ready" and body["failed"] == []
    for internal in _secrets_of_the_installation(settings):
        assert internal not in resp.text


def test_operator_token_shows_the_detail(client: TestClient, settings: Settings) -> None:
    resp = client.get("/readyz", headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    keyring = resp.json()["checks"]["config"]["detail"]["keyring"]
    assert keyring["SAT_HMAC_SECRET"]["current"] == settings.sat.current_kid


def test_wrong_token_is_refused_without_detail(client: TestClient, settings: Settings) -> None:
    for header in ("Bearer not-the-operator-token-0123456789", "Basic abc", "Bearer "):
        resp = client.get("/readyz", headers={"Authorization": header})
        assert resp.status_code == 401
        assert resp.json()["error"] == "unauthorized"
        assert "checks" not in resp.json()
        for internal in _secrets_of_the_installation(settings):
            assert internal not in resp.text


@pytest.mark.usefixtures("sqlite_only_store")
def test_rotated_operator_token_still_sees_detail(tmp_path: Path) -> None:
    # During a rotation the previous (or next) token is accepted as for every operator route.
    env = prod_environ(tmp_path / "s", OPERATOR_TOKEN="new-operator-token-0123456789-abcdef",
                       OPERATOR_TOKEN_PREVIOUS=SECRETS["OPERATOR_TOKEN"])
    with TestClient(build_service(ServiceName.scoreboard, load_settings(env))) as c:
        assert "checks" in c.get("/readyz", headers=OPERATOR).json()


@pytest.mark.usefixtures("sqlite_only_store")
def test_failed_check_named_without_its_detail(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    env = prod_environ(blocker / "storage", FORGE_DB_URL=f"sqlite:///{tmp_path / 'ok.db'}")
    with TestClient(build_service(ServiceName.scoreboard, load_settings(env))) as c:
        public = c.get("/readyz")
        detailed = c.get("/readyz", headers=OPERATOR)
    assert public.status_code == 503 and detailed.status_code == 503
    assert set(public.json()) <= PUBLIC_KEYS
    assert "storage" in public.json()["failed"]
    assert public.json()["error"] == "not_ready" and "storage" in public.json()["message"]
    assert str(blocker) not in public.text
    assert "not writable" in detailed.json()["checks"]["storage"]["detail"]
