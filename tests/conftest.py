"""Shared pytest fixtures. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from forge.bus import NatsServer

from .support.images import ensure_default_image
from .support.postgres import PostgresCluster, running_cluster
from .support.store_engines import violation

FIXTURES = Path(__file__).parent / "fixtures"
TEMPLATE_FIXTURES = FIXTURES / "templates"
# The state-store engines every store-touching suite runs against.
ENGINES = ("sqlite", "postgres")
# A store-touching test that runs on SQLite only says so in its id: `[sqlite_only]`
# (tests/support/store_engines.py states the rule; the hook below enforces it).
SQLITE_ONLY = pytest.param("sqlite", id="sqlite_only", marks=pytest.mark.sqlite_only)


@pytest.fixture
def nats() -> Iterator[NatsServer]:
    """A real JetStream nats-server on a free loopback port, fresh for each test."""
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL for the session (started only if a test asks for it)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test; dropped afterwards."""
    url = postgres_cluster.create_database()
    try:
        yield url
    finally:
        postgres_cluster.drop_database(url)


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """FORGE_DB_URL of a fresh state store, once per engine: SQLite file, PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'forge.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(params=[SQLITE_ONLY])
def sqlite_only_store(request: pytest.FixtureRequest) -> str:
    """Names a test `[sqlite_only]`: its services keep their default SQLite store.

    Used as `pytestmark = pytest.mark.usefixtures("sqlite_only_store")` (or on one test) where
    the test is slow or not about store semantics; store semantics run through `db_url`.
    """
    return str(request.param)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a store-touching test whose id says neither both engines nor `sqlite_only`;
    before the first test that may launch a lab (marked `root`), build the default lab
    image (cached machine-wide; tests/support/images.py)."""
    reason = violation(item)
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    if item.get_closest_marker("root") is not None and os.geteuid() == 0:
        ensure_default_image()
