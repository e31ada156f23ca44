"""Alembic environment: migrates the URL handed in by forge.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from forge.store.db_engine import make_db_engine
from forge.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the connection passed in attributes, or a fresh engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_db_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported: every Forge service and every "
                     "operator command that opens the store migrates it, e.g. "
                     "`forge apikey list` (with the services' STORAGE_ROOT and FORGE_DB_URL)")
run_migrations_online()
