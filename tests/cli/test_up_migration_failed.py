"""`forge up` on a store whose next migration fails (an object already there, a row the
new schema rejects, after an upgrade of Forge): the runbook says that is one line, and the
store stays at its revision. Before, `forge up` started NATS and the services, each of
which exited at every start and was restarted until --ready-timeout (2 minutes by
default), printing three wrapped "exited with code 1 (…)" lines per round. It now
migrates the store before starting anything and refuses in that one line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forge.store.migrate import head_revision, upgrade

from ..stack.test_up import Up, make_env_file, some_ports


@pytest.mark.usefixtures("sqlite_only_store")  # forge up runs the services' default store
def test_up_refuses_in_one_line_a_migration_the_store_refuses(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    upgrade(f"sqlite:///{storage / 'forge.db'}", "0013")
    with sqlite3.connect(storage / "forge.db") as conn:  # what 0014 would create
        conn.execute("CREATE TABLE lti_users (x INTEGER)")
    before = sorted(p.name for p in storage.iterdir())

    up = Up(storage, make_env_file(tmp_path), some_ports(), extra=("--ready-timeout", "20"))
    try:
        up.proc.wait(timeout=120)  # a bound on the wait, not a timing assertion
    finally:
        up.stop()
    assert up.proc.returncode == 1, up.err[-2000:]
    assert ("forge up: not started, migrating the state store to schema revision "
            f"{head_revision()} failed (table lti_users already exists); the store is at "
            "schema revision 0013") \
        in up.err, up.err[-2000:]
    assert "exited with code" not in up.err and "Forge is up" not in up.err
    assert up.service_pids() == [] and up.nats_pids() == []
    # What it wrote to the root that was there (dev secrets, a signing key, locks) is
    # removed again; what was there is kept.
    assert sorted(p.name for p in storage.iterdir()) == before
    assert "removed what it had created in the storage root (" in up.err
    with sqlite3.connect(storage / "forge.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() \
            == [("0013",)]
