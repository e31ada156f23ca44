"""Forge rolled back to a release older than the one that migrated its store: every
operator command refuses in one line (exit 1) naming the store's revision, this release's
newest and what to do, and changes nothing. Before, each printed ~290 lines of rich
traceback ending in Alembic's "Can't locate revision identified by '9999'" (and each
service's start logged the same). Both engines, real databases."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from forge.store import Database
from forge.store.migrate import head_revision, upgrade

from .test_storage_option import forge


def test_commands_on_a_store_migrated_by_a_newer_release_refuse_in_one_line(
        db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    database = Database(db_url)
    try:
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        env: dict[str, str | None] = {"FORGE_DB_URL": db_url}
        code, out, err = forge(env, "--storage", str(tmp_path / "storage"), "apikey",
                               "create", "--tenant", "acme", "--subject", "bob")
        said = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert code == 1 and len(said) == 1 and "Traceback" not in err + out, (out, err)
        assert said[0].startswith("forge: not done, the state store is at schema revision "
                                  f"9999, which this release does not know (its newest is "
                                  f"{head_revision()})"), err
        with database.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() \
                == [("9999",)]
            assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0
    finally:
        database.dispose()
