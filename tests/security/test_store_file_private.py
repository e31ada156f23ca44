"""Attack: a local user of the node reads the store's SQLite file.

`forge.db` holds every lab's values (the answers its grader checks), the SAT and ET of
each scenario and the stored spawn answers with their access links. Under the default
umask SQLite made it, and its WAL and shared-memory files, 0644: any shell account on the
node could read a verdict's answers without doing the work. The store keeps the file and
its side files 0600, also those an earlier release left open.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from forge.store.db import Database

NOBODY = 65534
pytestmark = pytest.mark.usefixtures("sqlite_only_store")  # a SQLite file's modes


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _write_and_keep_open(url: str) -> Database:
    db = Database(url)
    with db.session() as sess:  # a write: SQLite makes the WAL and shared-memory files
        sess.execute(text("CREATE TABLE IF NOT EXISTS t (x)"))
        sess.execute(text("INSERT INTO t VALUES ('answer')"))
    return db


def _modes(path: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode)
            for p in path.parent.iterdir() if p.name.startswith(path.name)}


def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "forge.db"
    db = _write_and_keep_open(f"sqlite:///{path}")
    try:
        modes = _modes(path)
        assert {"forge.db", "forge.db-wal", "forge.db-shm"} <= set(modes), modes
        assert all(mode & 0o077 == 0 for mode in modes.values()), modes
        if os.geteuid() == 0:  # as another local user: refused
            denied = subprocess.run(
                ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                 "cat", str(path)], capture_output=True, check=False)
            assert denied.returncode != 0 and not denied.stdout
    finally:
        db.dispose()


def test_a_store_an_earlier_release_left_open_is_closed(tmp_path: Path,
                                                        open_umask: None) -> None:
    path = tmp_path / "forge.db"
    db = _write_and_keep_open(f"sqlite:///{path}")
    db.dispose()
    for name in ("forge.db", "forge.db-wal", "forge.db-shm"):
        if (tmp_path / name).exists():
            os.chmod(tmp_path / name, 0o644)
    db = Database(f"sqlite:///{path}")
    try:
        assert all(mode & 0o077 == 0 for mode in _modes(path).values()), _modes(path)
    finally:
        db.dispose()
