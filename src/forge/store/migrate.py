"""Schema migrations (Alembic), run by every service at start and by `forge db upgrade`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from filelock import FileLock
from sqlalchemy.engine import make_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`; concurrent starts on one SQLite file queue."""
    parsed = make_url(url)
    cfg = alembic_config(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db_path = Path(str(parsed.database))
        db_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(db_path) + ".migrate.lock", timeout=60):
            command.upgrade(cfg, revision)
        return
    command.upgrade(cfg, revision)
