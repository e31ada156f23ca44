"""`forge roles`: where people sign in with API keys alone (no identity provider, no LMS),
an operator makes someone an instructor, who can then run a class through the API (probe
AT: there was no way to make an instructor without an identity provider or LMS). Bad ids
and roles are refused naming the option, and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from forge.cli import app
from forge.store.models import TenantRole

from .conftest import SpawnEnv
from .test_spawn_api import key_for


def _run(env: dict[str, str | None], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=env)
    assert result.exit_code == code, (args, result.output)
    return result.output


def test_an_operator_makes_an_instructor_who_then_runs_a_class(
        spawn_env: SpawnEnv, db_url: str, tmp_path: Path) -> None:
    env: dict[str, str | None] = {"FORGE_ENV": "dev", "STORAGE_ROOT": str(tmp_path / "cli"),
                                  "FORGE_DB_URL": db_url}
    ann = key_for(spawn_env, "acme", "ann")
    with spawn_env.client() as client:
        refused = client.post("/v1/cohorts", json={"name": "Networking 101"}, headers=ann)
        assert (refused.status_code, refused.json()["error"]) == (403, "instructor_required")

        for args, option in ((("--tenant", "ac me", "--subject", "ann", "--role",
                               "instructor"), "--tenant"),
                             (("--tenant", "acme", "--subject", "x" * 129, "--role",
                               "instructor"), "--subject"),
                             (("--tenant", "acme", "--subject", "ann", "--role", "admin"),
                              "--role")):
            assert option in _run(env, "roles", "set", *args, code=2)
        with spawn_env.state.ctx.db.read() as sess:
            assert sess.query(TenantRole).count() == 0  # nothing written by a refusal

        said = _run(env, "roles", "set", "--tenant", "acme", "--subject", "ann", "--role",
                    "instructor")
        # What it was before, never read as the state now ("…is now instructor; no role
        # recorded" contradicted itself).
        assert ("acme/ann is now instructor; was a learner (no role recorded before)"
                in said)
        shown = json.loads(_run(env, "roles", "show", "--tenant", "acme", "--subject", "ann",
                                "--json"))
        assert (shown["role"], shown["source"]) == ("instructor", "operator")
        made = client.post("/v1/cohorts", json={"name": "Networking 101"}, headers=ann)
        assert made.status_code == 201, made.text

        # Taken back: a learner again, refused again.
        _run(env, "roles", "set", "--tenant", "acme", "--subject", "ann", "--role", "learner")
        again = client.post("/v1/cohorts", json={"name": "Networking 102"}, headers=ann)
        assert again.status_code == 403
    assert "learner (no role recorded)" in _run(env, "roles", "show", "--tenant", "acme",
                                                "--subject", "bob")
