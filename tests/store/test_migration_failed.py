"""A migration the database refuses halfway through an upgrade (an object already there, a
row the new schema rejects): every operator command printed ~300 lines of rich traceback
ending in the driver's error, with no word of the revision the store was left at or what
to do. Now it is one line (exit 1) naming the revision it failed to reach, the database's
error, the revision the store is at, and what to do; the failed migration leaves nothing
behind, and the command runs once the cause is gone. Both engines, real databases."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from forge.store import Database
from forge.store.migrate import alembic_config, head_revision, upgrade

from ..cli.test_storage_option import forge


def _revision(database: Database) -> list[tuple[str]]:
    with database.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def test_a_failed_migration_is_one_line_naming_the_revision_and_leaves_nothing(
        db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    command.downgrade(alembic_config(db_url), "0013")
    database = Database(db_url)
    try:
        with database.engine.begin() as conn:  # what 0014 creates, already there
            conn.execute(text("CREATE TABLE lti_users (x INTEGER)"))
        env: dict[str, str | None] = {"FORGE_DB_URL": db_url}
        argv = ("--storage", str(tmp_path / "storage"), "apikey", "create", "--tenant",
                "acme", "--subject", "bob")
        code, out, err = forge(env, *argv)
        said = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert code == 1 and len(said) == 1 and "Traceback" not in out + err, (out, err)
        assert said[0].startswith(
            f"forge: not done, migrating the state store to schema revision {head_revision()} "
            "failed ("), err
        assert "lti_users" in said[0] and "the store is at schema revision 0013" in said[0]
        assert _revision(database) == [("0013",)]
        columns = [c["name"] for c in inspect(database.engine).get_columns("lti_users")]
        assert columns == ["x"]  # the failed migration left the table as it found it

        with database.engine.begin() as conn:  # the cause gone, the same command runs
            conn.execute(text("DROP TABLE lti_users"))
        code, out, err = forge(env, *argv)
        assert code == 0, err
        assert _revision(database) == [(head_revision(),)]
    finally:
        database.dispose()


@pytest.mark.usefixtures("sqlite_only_store")  # refused before any database is opened
def test_offline_migrations_name_a_command_that_exists(tmp_path: Path) -> None:
    """Alembic's offline mode (`--sql`) is refused; the refusal told the operator to run
    `forge db upgrade`, a command Forge does not have ("No such command 'db'")."""
    with pytest.raises(SystemExit) as refused:
        command.upgrade(alembic_config(f"sqlite:///{tmp_path / 'forge.db'}"), "head", sql=True)
    said = str(refused.value.code)
    assert said.startswith("offline migrations are not supported"), said
    named = re.findall(r"`forge ([^`]+)`", said)
    assert named, said
    for words in named:
        code, out, err = forge({}, *words.split(), "--help")
        assert code == 0, (words, out, err)
