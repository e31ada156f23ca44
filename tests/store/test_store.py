"""State store on SQLite and PostgreSQL: migrations match the models, replay is once-only."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from forge.config.db_url import with_connect_timeout
from forge.store import Database, normalize_url, upgrade
from forge.store.consumed_tokens import SqlReplayStore
from forge.store.migrate import MIGRATIONS_DIR, alembic_config, at_head, head_revision
from forge.store.models import Base
from forge.store.store_file import StoreFileGone, StoreFileReadOnly, StoreFileRewound
from forge.tokens import TokenReplayed
from forge.tokens.replay import consume_once

from ..conftest import ENGINES, SQLITE_ONLY
from ..support.postgres import PostgresCluster


@pytest.fixture(params=ENGINES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema yet) on each engine, so the migrations themselves run."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'forge.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    url = cluster.create_database(migrated=False)
    try:
        yield url
    finally:
        cluster.drop_database(url)


@pytest.fixture
def db(empty_url: str) -> Iterator[Database]:
    upgrade(empty_url)
    database = Database(empty_url)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'state' / 'forge.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def test_migrations_create_every_model_table(db: Database) -> None:
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_migrations_match_models_exactly(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent(db: Database) -> None:
    upgrade(db.url)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()


def test_a_database_at_head_is_recognised_without_alembic(empty_url: str) -> None:
    # Every service start and store command calls upgrade(); at head it must not load
    # Alembic (~0.3 s of CPU each time), and anything short of head still migrates.
    assert not at_head(empty_url)
    upgrade(empty_url)
    assert at_head(empty_url)
    probe = ("import sys; from forge.store.migrate import upgrade; upgrade(sys.argv[1]); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))")
    out = subprocess.run([sys.executable, "-c", probe, empty_url], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"
    command.downgrade(alembic_config(empty_url), "-1")
    assert not at_head(empty_url)
    upgrade(empty_url)
    assert at_head(empty_url)


def test_a_database_stamped_by_a_newer_release_still_refuses_to_start(empty_url: str) -> None:
    # A revision this release does not know (a newer release migrated the store) is not
    # "at head": the full upgrade runs and refuses, as it did before the shortcut.
    upgrade(empty_url)
    database = Database(empty_url)
    try:
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        database.dispose()
    assert not at_head(empty_url)
    with pytest.raises(CommandError, match="9999"):
        upgrade(empty_url)


@pytest.mark.no_store
def test_a_missing_sqlite_file_is_not_at_head_and_is_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'forge.db'}"
    assert not at_head(url)
    assert not (tmp_path / "state" / "forge.db").exists()


def test_sqlite_runs_in_wal_with_busy_timeout(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 15000


def test_ping(db: Database) -> None:
    db.ping()


def test_ping_answers_while_a_writer_holds_the_sqlite_lock(sqlite_db: Database) -> None:
    # /readyz pings the store: a long write elsewhere must not make it wait (up to the 15 s
    # busy timeout) and then report the store down.
    database = sqlite_db.engine.url.database
    assert database is not None
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        began = time.monotonic()
        sqlite_db.ping()
        assert time.monotonic() - began < 5  # a bound on waiting, not a performance figure
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_ping_fails_for_unreachable_sqlite(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(Exception):
        Database(f"sqlite:///{blocker / 'forge.db'}").ping()


def test_replay_consumes_once(db: Database) -> None:
    store = SqlReplayStore(db)
    exp = datetime.now(UTC) + timedelta(minutes=5)
    assert store.consume("jti-1", "SAT", exp) is True
    assert store.consume("jti-1", "SAT", exp) is False
    assert store.consume("jti-2", "SAT", exp) is True


def test_replay_concurrent_consumers_exactly_one_wins(db: Database) -> None:
    store = SqlReplayStore(db)
    exp = datetime.now(UTC) + timedelta(minutes=5)

    def attempt(_: int) -> bool:
        return store.consume("contested", "SAT", exp)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(attempt, range(32)))
    assert results.count(True) == 1


def test_replay_two_processes_share_one_file(db: Database) -> None:
    other = Database(db.url)  # a second engine = a second process' view of the same file
    exp = datetime.now(UTC) + timedelta(minutes=5)
    assert SqlReplayStore(db).consume("shared", "SAT", exp) is True
    assert SqlReplayStore(other).consume("shared", "SAT", exp) is False
    other.dispose()


def test_replay_purge_expired(db: Database) -> None:
    store = SqlReplayStore(db)
    now = datetime.now(UTC)
    store.consume("old", "SAT", now - timedelta(seconds=1))
    store.consume("live", "SAT", now + timedelta(minutes=5))
    assert store.purge_expired(now) == 1
    assert store.consume("old", "SAT", now + timedelta(minutes=5)) is True
    assert store.consume("live", "SAT", now + timedelta(minutes=5)) is False


def test_replay_refuses_empty_jti(db: Database) -> None:
    with pytest.raises(ValueError, match="jti"):
        SqlReplayStore(db).consume("", "SAT", datetime.now(UTC))
    with pytest.raises(ValueError, match="jti"):
        SqlReplayStore(db).consume("j" * 129, "SAT", datetime.now(UTC))


def test_tokens_layer_turns_a_second_use_into_token_replayed(db: Database) -> None:
    store = SqlReplayStore(db)
    exp = datetime.now(UTC) + timedelta(minutes=5)
    consume_once(store, "once", "ACC", exp)
    with pytest.raises(TokenReplayed, match="ACC token was already used"):
        consume_once(store, "once", "ACC", exp)
    with pytest.raises(TokenReplayed, match="no usable jti"):
        consume_once(store, "", "ACC", exp)


def test_store_imports_nothing_of_tokens() -> None:
    import grimp

    graph = grimp.build_graph("forge")
    assert not graph.chain_exists(importer="forge.store", imported="forge.tokens",
                                  as_packages=True)


def test_ping_fails_for_unreachable_postgres(tmp_path: Path) -> None:
    # No server listens on this socket directory: ping names the failure instead of hanging.
    url = f"postgresql+psycopg://postgres@/forge?host={tmp_path}&connect_timeout=2"
    with pytest.raises(OperationalError):
        Database(url).ping()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_driverless_postgres_url_uses_psycopg(
    scheme: str, postgres_url: str, tmp_path: Path
) -> None:
    # An operator writes FORGE_DB_URL=postgresql://...; without the normalisation SQLAlchemy
    # would import psycopg2 (not installed) and the services would not start.
    plain = postgres_url.replace("postgresql+psycopg://", f"{scheme}://", 1)
    assert normalize_url(plain) == postgres_url
    upgrade(plain)
    db = Database(plain)
    try:
        assert db.engine.dialect.driver == "psycopg"
        SqlReplayStore(db).consume("plain-url", "SAT", datetime.now(UTC) + timedelta(minutes=5))
        db.ping()
    finally:
        db.dispose()
    sqlite = f"sqlite:///{tmp_path / 'x.db'}"
    assert normalize_url(sqlite) == sqlite
    keeps = "postgresql+psycopg://u:p%40ss@db.example:5433/forge?sslmode=require"
    assert normalize_url(keeps) == keeps
    assert normalize_url("postgresql://u:p%40ss@db:5433/forge?sslmode=require") == (
        "postgresql+psycopg://u:p%40ss@db:5433/forge?sslmode=require")


@pytest.mark.no_store  # only URLs: no store is opened
@pytest.mark.parametrize(("url", "bounded"), [
    # SQLite has no connect timeout: the URL is left as it is.
    ("sqlite:////srv/forge/forge.db", "sqlite:////srv/forge/forge.db"),
    ("sqlite+pysqlite:///forge.db?timeout=30", "sqlite+pysqlite:///forge.db?timeout=30"),
    ("postgresql+psycopg://forge:p%40ss@db:5433/forge",
     "postgresql+psycopg://forge:p%40ss@db:5433/forge?connect_timeout=5"),
    # FORGE_DB_URL's driver-less spellings too: `store copy` did not bound `postgres://`,
    # and waited for ever on a server that takes the connection and never answers.
    ("postgres://forge:pw@db/forge", "postgres://forge:pw@db/forge?connect_timeout=5"),
    ("postgresql://forge:pw@db/forge?sslmode=require",
     "postgresql://forge:pw@db/forge?connect_timeout=5&sslmode=require"),
    # Its other options (and the password given as one) are kept.
    ("postgresql+psycopg://forge@db/forge?sslmode=require&password=pw",
     "postgresql+psycopg://forge@db/forge?connect_timeout=5&password=pw&sslmode=require"),
    # The URL's own timeout is never raised to the caller's, nor replaced.
    ("postgresql+psycopg://forge:pw@db/forge?connect_timeout=2",
     "postgresql+psycopg://forge:pw@db/forge?connect_timeout=2"),
    ("postgresql+psycopg://forge:pw@db/forge?connect_timeout=30&sslmode=require",
     "postgresql+psycopg://forge:pw@db/forge?connect_timeout=30&sslmode=require"),
])
def test_with_connect_timeout_bounds_postgres_only(url: str, bounded: str) -> None:
    assert with_connect_timeout(url, 5) == bounded


@pytest.mark.no_store  # reads the migration scripts; "sqlite://" only names a dialect
def test_migrations_form_one_numbered_chain() -> None:
    # Branches that each add a migration must be re-chained when merged: a fork would
    # leave two heads and every service's start-up upgrade would fail.
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    files = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    chain = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert chain == [name.split("_", 1)[0] for name in files]
    assert script.get_heads() == [head_revision()] == [chain[-1]]
    for older, newer in itertools.pairwise(chain):
        assert script.get_revision(newer).down_revision == older


def test_postgres_answers_times_in_utc_whatever_the_session_zone(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server (or PGTZ) in another zone: the store still hands back UTC times, so a time
    written out as `...Z` (an event's `at`, a re-announced move) is the moment it was."""
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")
    database = Database(postgres_url)
    try:
        with database.read() as sess:
            value = sess.execute(text("SELECT TIMESTAMPTZ '2026-12-02 02:14:31+00'")).scalar_one()
    finally:
        database.dispose()
    assert value == datetime(2026, 12, 2, 2, 14, 31, tzinfo=UTC)
    assert value.utcoffset() == timedelta(0)
    assert value.strftime("%H:%M:%SZ") == "02:14:31Z"


@pytest.mark.parametrize("engine", [SQLITE_ONLY])
def test_the_lms_ids_of_earlier_launches_are_kept_by_the_upgrade(tmp_path: Path,
                                                                 engine: str) -> None:
    """0014 adds lti_users: the ids learned from launches before it (lti_grade_links) are
    copied in, so a learner who launched once is owed grades at once after an upgrade."""
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    upgrade(url, "0013")
    with sqlite3.connect(path) as raw:  # foreign keys off: the link rows alone matter here
        raw.executemany(
            "INSERT INTO lti_grade_links (assignment_id, subject, platform, lti_user, "
            "lineitem, updated_at) VALUES (?, ?, 'lms', ?, 'https://lms/li', ?)",
            [("asg-1", "lea", "u-lea", "2026-11-01 10:00:00"),
             ("asg-2", "lea", "u-lea", "2026-11-02 10:00:00"),
             ("asg-1", "leo", "u-leo", "2026-11-01 11:00:00")])
    upgrade(url)
    with sqlite3.connect(path) as raw:
        rows = raw.execute("SELECT platform, subject, lti_user FROM lti_users "
                           "ORDER BY subject").fetchall()
    assert rows == [("lms", "lea", "u-lea"), ("lms", "leo", "u-leo")]


def test_ping_fails_when_the_sqlite_file_is_moved_or_replaced_under_it(
        sqlite_db: Database) -> None:
    # An operator moved forge.db away while the services ran: they went on writing to the
    # moved file, /readyz said "reachable", and the next command opened an empty store at
    # the path.
    path = Path(str(sqlite_db.engine.url.database))
    sqlite_db.ping()
    moved = path.with_name("moved.db")
    path.rename(moved)
    with pytest.raises(StoreFileGone, match=r"is gone .*put the file back"):
        sqlite_db.ping()
    path.write_bytes(b"")  # a new, empty store at the path: not the one this service has
    with pytest.raises(StoreFileGone, match="is another file than the one this service opened"):
        sqlite_db.ping()
    moved.replace(path)  # put back
    sqlite_db.ping()


def test_ping_fails_when_an_older_copy_is_written_over_the_sqlite_file_in_place(
        sqlite_db: Database) -> None:
    # `cp backup/forge.db STORAGE/` with the services running keeps the inode: the store
    # went back in time under them (rows gone, the WAL's pages mixed in) and every /readyz
    # said "reachable".
    path = Path(str(sqlite_db.engine.url.database))
    backup = path.read_bytes()  # made before this service started, as the runbook says
    sqlite_db.ping()
    insert = text("INSERT INTO rate_counters (scope, window_start, count) VALUES (:s, 1, 1)")
    for n in range(3):  # writes and checkpoints of a running store are no alarm
        with sqlite_db.session() as sess:
            sess.execute(insert, {"s": f"after-{n}"})
        with closing(sqlite3.connect(path)) as raw:
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
        sqlite_db.ping()
    restarted = Database(sqlite_db.url)  # another service starting on the same store
    try:
        restarted.ping()
        sqlite_db.ping()
        with path.open("r+b") as fh:  # what cp does to an existing file: same inode
            fh.truncate(0)
            fh.write(backup)
        for database in (sqlite_db, restarted):
            with pytest.raises(StoreFileRewound, match=r"went back in time while this "
                               r"service runs .*restore the backup with them stopped"):
                database.ping()
    finally:
        restarted.dispose()
    started_after = Database(sqlite_db.url)  # a service started on the restored file
    try:
        started_after.ping()
        started_after.ping()
    finally:
        started_after.dispose()


@pytest.mark.root
def test_ping_fails_while_the_sqlite_file_is_read_only_and_writes_resume_after(
        sqlite_db: Database) -> None:
    # An operator's store file made immutable (or its filesystem remounted read-only): every
    # service restarted on it got a connection SQLite opened read-only, each spawn answered
    # 500 ("attempt to write a readonly database"), and every /readyz said "ready". Once
    # the file was writable again the service went on failing every write until restarted.
    path = Path(str(sqlite_db.engine.url.database))
    insert = text("INSERT INTO rate_counters (scope, window_start, count) VALUES (:s, 1, 1)")
    sqlite_db.ping()
    subprocess.run(["chattr", "+i", str(path)], check=True)
    restarted = Database(sqlite_db.url)  # a service started on the read-only file
    try:
        for database in (sqlite_db, restarted):
            with pytest.raises(StoreFileReadOnly,
                               match=rf"{path} is read-only .*chattr -i.*by themselves"):
                database.ping()
        with pytest.raises(OperationalError, match="readonly"), restarted.session() as sess:
            sess.execute(insert, {"s": "while-read-only"})
        subprocess.run(["chattr", "-i", str(path)], check=True)
        restarted.ping()
        with restarted.session() as sess:  # no restart needed
            sess.execute(insert, {"s": "after"})
        with restarted.read() as sess:
            assert sess.execute(text("SELECT scope FROM rate_counters")).scalars().all() \
                == ["after"]
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True)
        restarted.dispose()
