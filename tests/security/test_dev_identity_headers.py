"""Attack: as another local user of a machine running `forge up` in dev (the default),
act as any learner of any tenant without a key: two request headers.

Before: in dev every service took `x-client-id`/`x-tenant-id` as the caller's identity, so
any local user reaching the loopback ports (`curl -H 'x-tenant-id: acme' -H 'x-client-id:
alice' http://127.0.0.1:8086/v1/scores/SCENARIO`) read alice's scores, evidence and labs,
submitted or destroyed them, and spawned on her plan, while the same dev install kept its
secrets 0600 and its NATS monitor closed to them. Now those headers sign nobody in unless
`DEV_ALLOW_HEADERS=true` asks for them (dev only, as DEV_ALLOW_XPLAN).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from forge.config import load_settings
from forge.config.settings import ConfigError
from forge.identity.apikeys import create_api_key

from ..spawn.conftest import MakeSpawn, make_spawn  # noqa: F401 (fixture)

ALICE = {"x-client-id": "alice", "x-tenant-id": "acme"}


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite_only", marks=pytest.mark.sqlite_only)])
def db_url(tmp_path: Path) -> str:
    """Who the caller is is decided before any row is read: SQLite only."""
    return f"sqlite:///{tmp_path / 'forge.db'}"


def test_dev_identity_headers_sign_nobody_in_unless_asked_for(
        make_spawn: MakeSpawn) -> None:  # noqa: F811
    env = make_spawn("dev")
    key = {"x-api-key": create_api_key(env.state.ctx.db, "acme", "alice").plaintext}
    with env.client() as client:
        mine = client.post("/v1/spawn", json={"track": "netplus"},
                           headers={**key, "x-plan": "PRO"})
        sid = mine.json().get("scenario_id") if mine.status_code == 201 else "scn-" + "0" * 16
        for method, path in (("GET", f"/v1/scenarios/{sid}"), ("DELETE", f"/v1/scenarios/{sid}"),
                             ("POST", "/v1/spawn")):
            resp = client.request(method, path, headers=ALICE,
                                  json={"track": "netplus"} if method == "POST" else None)
            assert resp.status_code == 401, (method, path, resp.text)
            assert resp.json()["error"] == "credentials_required"
    opted = make_spawn("dev", DEV_ALLOW_HEADERS="true")
    with opted.client() as client:
        signed_in = client.get("/v1/tracks", headers=ALICE)  # as alice: she has no plan here
        assert signed_in.status_code == 403, signed_in.text
        assert signed_in.json()["error"] == "entitlement_not_found", signed_in.text


def test_dev_identity_headers_are_refused_outside_dev(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings({"FORGE_ENV": "prod", "STORAGE_ROOT": str(tmp_path),
                       "DEV_ALLOW_HEADERS": "true"})
    assert "DEV_ALLOW_HEADERS=true is forbidden when FORGE_ENV=prod (dev only)" in \
        refused.value.problems
