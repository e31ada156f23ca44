"""PostgreSQL outages under a running spawn_service.

A PostgreSQL server that is down (stopped for a restart, an upgrade, a failover) answers
a spawn 503 `store_unavailable` with Retry-After, keeps nothing of it, and the same
request succeeds once the server is back, without restarting the service.

Before, psycopg's "connection failed ... Connection refused" (an OperationalError without
a SQLSTATE, on a connection SQLAlchemy does not mark invalidated) was not taken for an
unreachable store: 500 `internal_error`, as if the request were at fault. A real
PostgreSQL cluster of this test's own, stopped and started; a real spawn_service and
nats-server.

A PostgreSQL that takes no writes (a standby after a failover, a database set read-only)
fails the readiness check `store`, naming it, and a spawn is 503 `store_unavailable`;
both pass once it takes writes again. Before, /readyz was green (`SELECT 1` answers) while
every spawn was 500 `internal_error` (SQLSTATE 25006 was not a store outage).

A lock held by another session (a maintenance script, an idle transaction) is waited for
at most the lock timeout, as SQLite's busy timeout: the spawn is then 503
`store_unavailable` and keeps nothing. Before, it waited with no answer for as long as the
lock was held (a client gave up after 45 s), holding one of the service's writer threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from forge.entitlements.grants import grant
from forge.store import db_engine
from forge.store.models import IdempotencyRecord, QuotaSlot, Scenario

from ..services.conftest import SECRETS
from ..support.postgres import PostgresCluster, database_name, running_cluster, set_read_only
from .conftest import MakeSpawn
from .outage_drill import spawn_across_outage
from .test_spawn_api import count, key_for, spawn

# PostgreSQL only: a server that goes away and comes back (a SQLite file has no server).
pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster this test may stop and start (the session's is shared)."""
    with running_cluster() as cluster:
        yield cluster


def test_a_spawn_while_postgres_is_down_is_503_and_succeeds_once_it_is_back(
        make_spawn: MakeSpawn, own_cluster: PostgresCluster) -> None:
    env = make_spawn(FORGE_DB_URL=own_cluster.create_database())
    spawn_across_outage(env, _stopped(own_cluster), "req-pg-down-1")


@contextmanager
def _stopped(cluster: PostgresCluster) -> Iterator[None]:
    """`cluster`'s server stopped for the block (as an operator's restart), started after."""
    cluster.stop_server()
    try:
        yield
    finally:
        cluster.start_server()


def test_a_read_only_postgres_fails_readiness_and_a_spawn_is_503(
        make_spawn: MakeSpawn, postgres_cluster: PostgresCluster, db_url: str) -> None:
    env = make_spawn()
    grant(env.state.ctx.db, "acme", "PRO", subject="alice")
    headers = key_for(env)
    operator = {"Authorization": f"Bearer {SECRETS['OPERATOR_TOKEN']}"}
    with env.client() as client:
        set_read_only(postgres_cluster, db_url, True)
        ready = client.get("/readyz", headers=operator)
        assert ready.status_code == 503, ready.text
        assert "store" in ready.json()["failed"]
        assert "read-only" in ready.json()["checks"]["store"]["detail"]
        refused = spawn(client, headers, request_id="req-pg-read-only-1")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "store_unavailable"
        assert refused.headers["retry-after"] == "5"
        set_read_only(postgres_cluster, db_url, False)
        assert client.get("/readyz", headers=operator).json()["checks"]["store"]["ok"]
        again = spawn(client, headers, request_id="req-pg-read-only-1")
        assert again.status_code in (201, 202), again.text


def test_a_spawn_waits_for_a_postgres_lock_at_most_the_lock_timeout(
        make_spawn: MakeSpawn, postgres_cluster: PostgresCluster, db_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_engine, "PG_LOCK_TIMEOUT_MS", 300)  # read at each connect
    env = make_spawn()
    grant(env.state.ctx.db, "acme", "PRO", subject="alice")
    headers = key_for(env)
    before = {model: count(env, model) for model in (Scenario, QuotaSlot, IdempotencyRecord)}
    holder = psycopg.connect(host=str(postgres_cluster.socket_dir), user="postgres",
                             dbname=database_name(db_url))
    try:
        holder.execute("LOCK TABLE scenarios IN EXCLUSIVE MODE")  # reads pass, writes wait
        with env.client() as client:
            held = spawn(client, headers, request_id="req-pg-locked-1")
            assert held.status_code == 503, held.text
            assert held.json()["error"] == "store_unavailable"
            assert {model: count(env, model) for model in before} == before
            holder.rollback()
            again = spawn(client, headers, request_id="req-pg-locked-1")
            assert again.status_code in (201, 202), again.text
    finally:
        holder.close()
