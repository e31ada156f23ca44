"""A SQLite writer waits for the cross-process lock file at most the busy timeout.

Before, it waited with a blocking flock and no timeout: a process stopped (SIGSTOP, a hung
debugger) while holding the lock blocked every writer of every process for good, with no
error anywhere. Now a writer gets SQLite's own "database is locked" after the timeout, and
writes again as soon as the holder lets go.
"""

from __future__ import annotations

import fcntl
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from forge.store import Database, upgrade


def _write(db: Database) -> int:
    with db.session() as sess:
        return int(sess.execute(text("SELECT 1")).scalar_one())


@pytest.mark.sqlite_only  # the lock file exists for SQLite only
def test_writer_gives_up_on_a_held_lock_file_and_resumes_after(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'forge.db'}"
    upgrade(url)
    db = Database(url)
    db.lock_timeout_s = 0.05
    holder = os.open(tmp_path / "forge.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process's writer, stopped mid-write
        with ThreadPoolExecutor(1) as pool:
            attempt = pool.submit(_write, db)
            try:
                with pytest.raises(OperationalError, match="database is locked"):
                    attempt.result(timeout=20)  # the old code blocks here for good
            finally:
                fcntl.flock(holder, fcntl.LOCK_UN)
        assert _write(db) == 1
    finally:
        os.close(holder)
        db.dispose()
