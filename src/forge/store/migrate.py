"""Schema migrations (Alembic), run by every service at start and by every operator command
that opens the store.

A database already at the packaged head is recognised without Alembic: importing it and
loading the migration scripts cost ~0.3 s of CPU, paid by every service start and every
`forge …` command that opens the store, almost always for nothing to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from forge.config.db_url import normalize_url
from forge.private_lock import private_lock
from forge.store.db_engine import make_db_engine
from forge.store.sqlite_files import sqlite_file

if TYPE_CHECKING:
    from alembic.config import Config

# pg_advisory_xact_lock key serialising migrations of replicas starting at once ("forgemig").
_PG_MIGRATION_LOCK = 0x666F7267656D6967

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and `url`."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _revisions() -> list[str]:
    """The packaged migrations' revision ids: the numbers their file names start with."""
    return [path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("0*.py")]


def head_revision() -> str:
    """The newest packaged migration: the number its file name starts with.

    The migrations form one numbered chain whose revision ids are those numbers
    (tests/store/test_store.py checks it against Alembic's own head), so the file names
    say which is last without loading a script.
    """
    numbers = _revisions()
    if not numbers:
        raise RuntimeError("the packaged migrations have no head")
    return max(numbers)


def at_head(url: str) -> bool:
    """Whether the database at `url` already records the packaged head, and nothing else.

    False for no database file yet, no version table, or any other revision: the full
    upgrade then migrates or says what is wrong. A server that cannot be reached raises
    here as it would there, so a start waits for one connection timeout, not two.
    """
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None or not path.is_file():
            return False
    return _stored_revisions(url) == [head_revision()]


def _stored_revisions(url: str) -> list[str] | None:
    """The revisions the database at `url` records; None without a version table."""
    engine = make_db_engine(url, for_writes=False)
    try:
        with engine.connect() as conn:
            try:
                versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            except SQLAlchemyError:
                return None
    finally:
        engine.dispose()
    return [str(row[0]) for row in versions]


def refuse_unknown_revisions(url: str, setting: str = "FORGE_DB_URL") -> None:
    """CommandError naming a revision this release does not know (a newer release migrated
    the store: Forge was rolled back), instead of Alembic's bare "Can't locate revision";
    a store another setting than FORGE_DB_URL names (`forge store copy --from`) is named
    by that setting."""
    from alembic.util import CommandError

    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None or not path.is_file():
            return  # nothing recorded yet (and no file made here)
    known = set(_revisions())
    unknown = sorted(set(_stored_revisions(url) or []) - known)
    if unknown:
        raise CommandError(
            f"the state store {_named_by(setting)}is at schema revision {', '.join(unknown)}, "
            "which this release "
            f"does not know (its newest is {head_revision()}): a newer release of Forge "
            "migrated it. Run that release, or restore a backup of the store made before "
            "it; schema downgrades are not supported")


_SQLITE_HEADER = b"SQLite format 3\x00"


def _named_by(setting: str) -> str:
    """How a message names the store: as before for FORGE_DB_URL, else "SETTING names "."""
    return "" if setting == "FORGE_DB_URL" else f"{setting} names "


def refuse_not_a_database(url: str, setting: str = "FORGE_DB_URL") -> None:
    """CommandError naming FORGE_DB_URL (or `setting`, the option that gave `url`) when its
    SQLite path holds something that is not a SQLite database (a folder, another file, a
    damaged copy), instead of SQLAlchemy's "file is not a database" traceback or a refusal
    that named STORAGE_ROOT."""
    if make_url(url).get_backend_name() != "sqlite":
        return
    path = sqlite_file(url)
    if path is None or not os.path.lexists(path):
        return  # a new store is made there
    why = None
    if not path.is_file():
        why = "is not a file"
    else:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
        if head and head != _SQLITE_HEADER:
            why = "is not a SQLite database"
    if why is not None:
        from alembic.util import CommandError  # only then: a start at head needs no alembic

        raise CommandError(
            f"the state store {path} ({setting}) {why}: point {setting} at the "
            "state database, or put it back from a backup (see \"Backup and restore\" in "
            "the operator runbook)")


def upgrade(url: str, revision: str = "head", *, setting: str = "FORGE_DB_URL") -> None:
    """Bring the database at `url` to `revision`; concurrent starts queue on a lock. A
    refusal names the store by `setting`, the option or variable that gave `url`.

    SQLite: a file lock next to the database. PostgreSQL: a transaction-scoped advisory lock,
    taken in the transaction that runs the DDL and the version stamp (PostgreSQL DDL is
    transactional), so a replica that waited finds the schema at head.
    """
    url = normalize_url(url)
    refuse_not_a_database(url, setting)
    if revision == "head" and at_head(url):
        return
    if revision == "head":
        refuse_unknown_revisions(url, setting)
    try:
        _upgrade(url, revision)
    except DBAPIError as exc:
        failed = _migration_failed(url, revision, exc)
        if failed is None:
            raise
        raise failed from exc


class StoreUnavailable(Exception):
    """The state store could not be used when a service started (a PostgreSQL server down or
    restarting, a lock held past the busy timeout): one line naming FORGE_DB_URL."""


def upgrade_at_start(url: str) -> None:
    """`upgrade` for a starting service: a store that cannot be used just now is
    StoreUnavailable saying so and what to do, rather than SQLAlchemy's traceback under
    uvicorn's "Application startup failed", all an operator (and `forge up`'s report of the
    service's last words) had to go on. Any other failure propagates as it is."""
    from forge.store.busy import store_busy, store_error_text

    try:
        upgrade(url)
    except DBAPIError as exc:
        if not store_busy(exc):
            raise
        said = " ".join(store_error_text(exc).split())  # psycopg's text spans lines
        raise StoreUnavailable(
            f"the state store cannot be used just now ({said}); check that the database "
            "FORGE_DB_URL names is up and reachable, then start the service again (forge up "
            "does so by itself)") from None


def _migration_failed(url: str, revision: str, exc: DBAPIError) -> Exception | None:
    """The one-line CommandError for a migration a database error stopped (a statement the
    store refused: an object already there, a row the new schema rejects), naming the
    revision the store stays at; None for a store busy, full, unreachable or damaged, which
    the callers already say in their own words."""
    import sqlite3

    from alembic.util import CommandError

    from forge.store.busy import store_busy, store_out_of_room

    if store_busy(exc) or store_out_of_room(exc):
        return None
    said = str(exc.orig)
    if isinstance(exc.orig, sqlite3.DatabaseError) and (
            "malformed" in said or "not a database" in said):
        return None
    try:
        now = ", ".join(_stored_revisions(url) or []) or "none (an empty store)"
    except SQLAlchemyError:
        now = "unknown (it could not be read again)"
    target = head_revision() if revision == "head" else revision
    first = (said.strip().splitlines() or [type(exc.orig).__name__])[0].strip()
    return CommandError(
        f"migrating the state store to schema revision {target} failed ({first}); the store "
        f"is at schema revision {now} (each migration is applied whole or not at all): fix "
        "what the error names, or restore the backup of the store made before the upgrade, "
        "and run it again")


def _upgrade(url: str, revision: str) -> None:
    """`upgrade` once the store is known to be a database at a revision this release knows."""
    from alembic import command

    parsed = make_url(url)
    cfg = alembic_config(url)
    db_path = sqlite_file(url) if parsed.get_backend_name() == "sqlite" else None
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with private_lock(str(db_path) + ".migrate.lock", timeout=60):
            command.upgrade(cfg, revision)
        return
    if parsed.get_backend_name() == "postgresql":
        engine = make_db_engine(url)
        try:
            with engine.begin() as conn:
                # A replica waits for the one migrating however long that takes (the
                # sessions' lock_timeout is for requests), and migrations wait for their locks.
                conn.execute(text("SET LOCAL lock_timeout = 0"))
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            engine.dispose()
        return
    command.upgrade(cfg, revision)
