"""FORGE_DB_URL naming a SQLite path that holds no SQLite database.

A damaged copy of forge.db, another file, or a folder at that path: operator commands
printed SQLAlchemy's 488-line "file is not a database" traceback (or, for a folder,
"refusing storage root … choose another STORAGE_ROOT"), the services died with it in the
log, and `forge config check` said "configuration OK". Now each says, in one line naming
FORGE_DB_URL, what the path holds and what to do, and the file is left as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# A SQLite path's content is what is judged: PostgreSQL has no such path.
pytestmark = pytest.mark.usefixtures("sqlite_only_store")

def _forge(tmp_path: Path, db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORGE_", "NATS_"))}
    env.update(STORAGE_ROOT=str(tmp_path / "storage"), FORGE_DB_URL=f"sqlite:///{db}")
    return subprocess.run([sys.executable, "-m", "forge", *args], capture_output=True,
                          text=True, timeout=120, env=env)


@pytest.mark.parametrize("kind", ["other_file", "folder"])
def test_a_path_that_is_not_a_database_is_named_in_one_line(tmp_path: Path,
                                                            kind: str) -> None:
    db = tmp_path / "forge.db"
    if kind == "folder":
        db.mkdir()
        why = "is not a file"
    else:
        db.write_bytes(b"FORGE_ENV=prod\n" * 10)
        why = "is not a SQLite database"
    said = f"the state store {db} (FORGE_DB_URL) {why}: point FORGE_DB_URL at the state " \
           "database, or put it back from a backup"
    listed = _forge(tmp_path, db, "completions", "list")
    assert listed.returncode == 1, listed.stderr
    assert f"forge: not done, {said}" in listed.stderr, listed.stderr
    assert "Traceback" not in listed.stderr and "refusing storage root" not in listed.stderr
    checked = _forge(tmp_path, db, "config", "check")
    assert checked.returncode == 1 and said in checked.stderr, checked.stderr
    if kind == "other_file":
        assert db.read_bytes() == b"FORGE_ENV=prod\n" * 10


def test_a_damaged_database_is_named_in_one_line(tmp_path: Path) -> None:
    # A real store whose pages were damaged after the header (a bad copy, a disk fault):
    # the header check passes, SQLite then says "database disk image is malformed", which
    # was a traceback.
    db = tmp_path / "forge.db"
    assert _forge(tmp_path, db, "completions", "list").returncode == 0  # made and migrated
    with db.open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff" * 3000)
    listed = _forge(tmp_path, db, "completions", "list")
    assert listed.returncode == 1, listed.stderr
    assert "forge: not done, the state store FORGE_DB_URL names is damaged (database disk " \
           "image is malformed): stop the services and put it back from a backup" \
        in listed.stderr, listed.stderr
    assert "Traceback" not in listed.stderr
    # `forge config check` (and `forge up`, which runs the same start checks) says so too:
    # it said "configuration OK", and `forge up` restarted every service in a loop on it
    # until --ready-timeout.
    checked = _forge(tmp_path, db, "config", "check")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "the state store FORGE_DB_URL names is damaged (database disk image is " \
           "malformed)" in checked.stderr, checked.stderr
    assert "Traceback" not in checked.stderr
