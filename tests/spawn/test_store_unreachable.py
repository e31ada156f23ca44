"""A PostgreSQL server that is down (stopped for a restart, an upgrade, a failover) answers
a spawn 503 `store_unavailable` with Retry-After, keeps nothing of it, and the same
request succeeds once the server is back, without restarting the service.

Before, psycopg's "connection failed ... Connection refused" (an OperationalError without
a SQLSTATE, on a connection SQLAlchemy does not mark invalidated) was not taken for an
unreachable store: 500 `internal_error`, as if the request were at fault. A real
PostgreSQL cluster of this test's own, stopped and started; a real spawn_service and
nats-server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forge.entitlements.grants import grant
from forge.store.models import IdempotencyRecord, QuotaSlot, Scenario

from ..support.postgres import PostgresCluster
from .conftest import MakeSpawn
from .test_spawn_api import count, key_for, spawn

# PostgreSQL only: a server that goes away and comes back (a SQLite file has no server).
pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A cluster this test may stop and start (the session's is shared)."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_a_spawn_while_postgres_is_down_is_503_and_succeeds_once_it_is_back(
        make_spawn: MakeSpawn, own_cluster: PostgresCluster) -> None:
    env = make_spawn(FORGE_DB_URL=own_cluster.create_database())
    db = env.state.ctx.db
    grant(db, "acme", "PRO", subject="alice")
    headers = key_for(env)
    before = {model: count(env, model) for model in (Scenario, QuotaSlot, IdempotencyRecord)}
    with env.client() as client:
        own_cluster.stop_server()
        down = spawn(client, headers, request_id="req-pg-down-1")
        assert down.status_code == 503, down.text
        assert down.json()["error"] == "store_unavailable"
        assert down.headers["retry-after"] == "5"
        own_cluster.start_server()
        assert {model: count(env, model) for model in before} == before  # nothing kept
        again = spawn(client, headers, request_id="req-pg-down-1")
        assert again.status_code in (201, 202), again.text
        assert count(env, Scenario) == before[Scenario] + 1
