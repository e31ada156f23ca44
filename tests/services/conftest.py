"""Fixtures for service-level tests: settings on a temp storage root, in-process clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forge.bus import NatsServer
from forge.config import Settings, load_settings
from forge.content import content_path
from forge.services.common.serving import ServiceName, build_service
from forge.signing.keystore import SigningKeyring, keyring_dir

from ..conftest import TEMPLATE_FIXTURES

SECRETS = {
    "SAT_HMAC_SECRET": "sat-secret-0123456789-0123456789-abcdef",
    "ET_HMAC_SECRET": "et-secret-0123456789-0123456789-abcdefgh",
    "RECEIPT_HMAC_SECRET": "receipt-secret-0123456789-0123456789-ab",
    "OPERATOR_TOKEN": "operator-token-0123456789-0123456789-abc",
}
# Placeholder bus passwords so a service can be built without a bus; a test with a real
# nats-server passes `**nats.client_env()`, which replaces them with the server's own.
NATS_PASSWORDS = {
    f"NATS_{identity.upper()}_PASSWORD": f"unused-{identity}-password-0123456789-abcdef"
    for identity in ("spawn", "orchestrator", "scoreboard")
}


def prod_environ(storage: Path, **extra: str) -> dict[str, str]:
    env = {"FORGE_ENV": "prod", "STORAGE_ROOT": str(storage), **SECRETS, **NATS_PASSWORDS,
           "FORGE_TEMPLATE_DIR": str(TEMPLATE_FIXTURES)}
    env.update(extra)
    return env


def shipped_spawn_settings(storage: Path, nats: NatsServer) -> Settings:
    """spawn_service's settings with the shipped templates and unreachable peers: its
    pages and API alone, in process."""
    return load_settings(prod_environ(storage, **nats.client_env(),
                                      FORGE_TEMPLATE_DIR=str(content_path("templates")),
                                      ORCHESTRATOR_URL="http://127.0.0.1:9",
                                      SCOREBOARD_URL="http://127.0.0.1:9"))


def with_signing_key(storage: Path) -> Path:
    """An operator's `forge keys generate` for this storage root (prod never makes one)."""
    SigningKeyring(keyring_dir(storage, {})).ensure()
    return storage


@pytest.fixture
def prod_settings(tmp_path: Path, nats: NatsServer, db_url: str) -> Settings:
    storage = with_signing_key(tmp_path / "storage")
    return load_settings(prod_environ(storage, **nats.client_env(), FORGE_DB_URL=db_url))


@pytest.fixture(params=list(ServiceName), ids=lambda s: s.value)
def service_client(request: pytest.FixtureRequest, prod_settings: Settings) -> Iterator[TestClient]:
    app = build_service(request.param, prod_settings)
    with TestClient(app) as client:
        yield client
