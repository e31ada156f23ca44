"""Schema migrations (Alembic), run by every service at start and by `forge db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import text
from sqlalchemy.engine import make_url

from forge.config.db_url import normalize_url
from forge.store.db import make_db_engine, sqlite_file

# pg_advisory_xact_lock key serialising migrations of replicas starting at once ("forgemig").
_PG_MIGRATION_LOCK = 0x666F7267656D6967

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The one head of the packaged migrations (Alembic raises if the chain forked)."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    if head is None:
        raise RuntimeError("the packaged migrations have no head")
    return head


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`; concurrent starts queue on a lock.

    SQLite: a file lock next to the database. PostgreSQL: a transaction-scoped advisory lock,
    taken in the transaction that runs the DDL and the version stamp (PostgreSQL DDL is
    transactional), so a replica that waited finds the schema at head.
    """
    url = normalize_url(url)
    parsed = make_url(url)
    cfg = alembic_config(url)
    db_path = sqlite_file(url) if parsed.get_backend_name() == "sqlite" else None
    if db_path is not None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db_path) + ".migrate.lock", timeout=60):
            command.upgrade(cfg, revision)
        return
    if parsed.get_backend_name() == "postgresql":
        engine = make_db_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            engine.dispose()
        return
    command.upgrade(cfg, revision)
