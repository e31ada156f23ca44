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

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from forge.bus import NatsServer
from forge.entitlements.grants import grant, revoke
from forge.identity.apikeys import create_api_key
from forge.store.db import Database
from forge.store.models import QuotaSlot, Scenario

from .spawn_workers import WORKERS, children, post_spawn, spawn_workers


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: processes sharing one SQLite file is the case to prove here (PostgreSQL's
    cross-process races run in tests/store/test_replicas_postgres.py), and each start of a
    two-worker service costs seconds of the suite's budget."""
    return f"sqlite:///{tmp_path}/forge.db"


@pytest.fixture
def service(tmp_path: Path, nats: NatsServer, db_url: str) -> Iterator[tuple[str, int, Database]]:
    with spawn_workers(tmp_path, nats, db_url) as running:
        yield running


def _spawn(url: str, key: str, request_id: str) -> httpx.Response:
    return post_spawn(url, {"x-api-key": key}, {"track": "netplus", "request_id": request_id})


@pytest.mark.usefixtures("sqlite_only_store")
def test_workers_never_double_grant_quota_and_honour_revocation_at_once(
        service: tuple[str, int, Database]) -> None:
    url, pid, db = service
    assert len(children(pid)) == WORKERS  # the parent runs the workers and serves nothing
    health = httpx.get(f"{url}/healthz", timeout=5).json()
    assert health["pid"] == pid and health["worker_pid"] in children(pid)
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
