"""Review DB: `POST /v1/cohorts/{id}/invites` without a body was 422 "Field required",
naming an empty field, though every field of its body has a default; a body that is
missing where one is needed is named `body` in the details too, not "" ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forge.identity.roles import record_role

from ..spawn.conftest import SpawnEnv, make_spawn, spawn_env  # noqa: F401  (fixtures)
from ..spawn.test_spawn_api import key_for


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_invite_needs_no_body_and_a_missing_body_is_named(
        spawn_env: SpawnEnv) -> None:  # noqa: F811
    record_role(spawn_env.state.ctx.db, "acme", "ann", "instructor", source="test")
    ann = key_for(spawn_env, "acme", "ann")
    with spawn_env.client() as client:
        cohort = client.post("/v1/cohorts", json={"name": "c"}, headers=ann).json()["cohort_id"]
        made = client.post(f"/v1/cohorts/{cohort}/invites", headers=ann)
        assert made.status_code == 201, made.text
        expires = datetime.fromisoformat(made.json()["expires_at"].replace("Z", "+00:00"))
        assert timedelta(days=13) < expires - datetime.now(UTC) <= timedelta(days=14)
        bad = client.post(f"/v1/cohorts/{cohort}/invites", json={"days": "x"}, headers=ann)
        assert bad.status_code == 422 and bad.json()["details"][0]["field"] == "days"
        missing = client.post("/v1/cohorts", headers=ann)
        assert missing.status_code == 422, missing.text
        assert [d["field"] for d in missing.json()["details"]] == ["body"], missing.text
