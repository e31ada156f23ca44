"""Forge state store: SQLAlchemy models, engine setup, migrations and repositories."""

from forge.config.db_url import normalize_url
from forge.store.db import Database
from forge.store.db_engine import make_db_engine
from forge.store.migrate import upgrade

__all__ = ["Database", "make_db_engine", "normalize_url", "upgrade"]
