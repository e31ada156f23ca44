"""spawn_service with several worker processes (FORGE_SPAWN_WORKERS) keeps every guarantee.

Attack: a learner fires many spawns at once, hoping that worker processes, each with its own
memory, each grant one more lab than the plan allows (quota), or that a worker keeps
honouring an entitlement the operator has just revoked (a stale copy). Quota, idempotency
and entitlements are read and taken in the shared store inside each request's transaction,
so the processes cannot disagree: exactly one lab for a one-lab plan, one scenario per
request id, and a revocation refused by every worker at once. Real `forge serve spawn`
with two workers, real nats-server, SQLite (processes sharing one file; PostgreSQL's
cross-process races run in tests/store/test_replicas_postgres.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.bus.server import free_port
from forge.entitlements.grants import grant, revoke
from forge.identity.apikeys import create_api_key
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import QuotaSlot, Scenario

from ..services.conftest import prod_environ

WORKERS = 2


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: processes sharing one SQLite file is the case to prove here (PostgreSQL's
    cross-process races run in tests/store/test_replicas_postgres.py), and each start of a
    two-worker service costs seconds of the suite's budget."""
    return f"sqlite:///{tmp_path}/forge.db"


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


@pytest.fixture
def service(tmp_path: Path, nats: NatsServer, db_url: str) -> Iterator[tuple[str, int, Database]]:
    upgrade(db_url)
    db = Database(db_url)
    port = free_port()
    env = {**os.environ, **prod_environ(tmp_path / "storage", **nats.client_env(),
                                        FORGE_DB_URL=db_url,
                                        FORGE_SPAWN_WORKERS=str(WORKERS))}
    proc = subprocess.Popen([sys.executable, "-m", "forge", "serve", "spawn", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        ready = False
        while not ready and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            time.sleep(0.1)
        assert ready, "spawn_service with workers did not become ready"
        yield url, proc.pid, db
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        db.dispose()


def _spawn(url: str, key: str, request_id: str) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30) as client:  # a new connection each time
        return client.post("/v1/spawn", headers={"x-api-key": key},
                           json={"track": "netplus", "request_id": request_id})


@pytest.mark.usefixtures("sqlite_only_store")
def test_workers_never_double_grant_quota_and_honour_revocation_at_once(
        service: tuple[str, int, Database]) -> None:
    url, pid, db = service
    assert len(_children(pid)) == WORKERS  # the parent runs the workers and serves nothing
    health = httpx.get(f"{url}/healthz", timeout=5).json()
    assert health["pid"] == pid and health["worker_pid"] in _children(pid)
    grant(db, "acme", "FREE", "alice")  # one lab at a time
    key = create_api_key(db, "acme", "alice").plaintext

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda i: _spawn(url, key, f"burst-{i:04d}"), range(12)))
        same = list(pool.map(lambda _: _spawn(url, key, "same-request-1"), range(6)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1 and codes.count(429) == 11, codes
    assert all(a.json()["error"] == "quota_exceeded" for a in answers if a.status_code == 429)
    assert {a.status_code for a in same} <= {429}  # the slot is taken: nothing more granted
    with db.read() as sess:
        live = sess.scalar(select(func.count()).select_from(QuotaSlot)
                           .where(QuotaSlot.released_at.is_(None)))
        scenarios = sess.scalar(select(func.count()).select_from(Scenario))
    assert (live, scenarios) == (1, 1)

    assert revoke(db, "acme", "alice")  # by another process (the operator's CLI)
    refused = [_spawn(url, key, f"after-revoke-{i}") for i in range(2 * WORKERS)]
    assert {r.status_code for r in refused} == {403}
    assert {r.json()["error"] for r in refused} == {"entitlement_not_found"}
