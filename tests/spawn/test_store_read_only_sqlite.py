"""A SQLite store file that became read-only under spawn_service (made immutable, or its
filesystem remounted read-only, then the service restarted).

Before, every spawn was 500 `internal_error` ("internal error; see the service log") while
/readyz was green, and making the file writable again changed nothing until the service
was restarted. Now /readyz fails its `store` check naming the file and the fix, a spawn is
503 `store_unavailable` with Retry-After (as a read-only PostgreSQL is) and keeps nothing,
and the same request succeeds once the file is writable, with no restart.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from forge.entitlements.grants import grant
from forge.store.models import IdempotencyRecord

from ..conftest import SQLITE_ONLY
from ..services.conftest import SECRETS
from .conftest import MakeSpawn
from .test_spawn_api import count, key_for, spawn


@pytest.mark.root
@pytest.mark.parametrize("db_url", [SQLITE_ONLY], indirect=True)
def test_a_read_only_sqlite_file_fails_readiness_and_a_spawn_is_503_until_writable(
        make_spawn: MakeSpawn) -> None:
    env = make_spawn()
    db = env.state.ctx.db
    grant(db, "acme", "PRO", subject="alice")
    headers = key_for(env)
    operator = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
    path = Path(str(db.engine.url.database))
    before = count(env, IdempotencyRecord)
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        db.engine.dispose()  # as a restart: every connection opened again, read-only now
        with env.client() as client:
            ready = client.get("/readyz", headers=operator)
            assert ready.status_code == 503, ready.text
            assert "store" in ready.json()["failed"]
            assert f"{path} is read-only" in ready.json()["checks"]["store"]["detail"]
            refused = spawn(client, headers, request_id="req-sqlite-read-only-1")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "store_unavailable"
            assert refused.headers["retry-after"] == "5"

            subprocess.run(["chattr", "-i", str(path)], check=True)
            assert client.get("/readyz", headers=operator).json()["checks"]["store"]["ok"]
            again = spawn(client, headers, request_id="req-sqlite-read-only-1")
            assert again.status_code in (201, 202), again.text
        assert count(env, IdempotencyRecord) == before + 1
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
