"""Forge state store: SQLAlchemy models, engine setup, migrations and repositories."""

from forge.store.db import Database, make_db_engine, normalize_url
from forge.store.migrate import upgrade

__all__ = ["Database", "make_db_engine", "normalize_url", "upgrade"]
