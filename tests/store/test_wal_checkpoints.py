"""SQLite's WAL is checkpointed by a service's background task, not inside a commit.

SQLite's default checkpointed in the commit that took the WAL past 1000 pages: that
request's commit copied ~4 MiB into the database file and synced it (measured: one commit
in ~200 took 4-37 ms instead of well under one, and every write queued behind it on the
single writer thread waited as long)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from sqlalchemy import event, text

from forge.store.db import Database
from forge.store.wal_checkpoints import checkpoint, checkpoint_periodically

PAGE = 4096


def _write_pages(db: Database, pages: int) -> None:
    """Commits of 25 pages each, `pages` in all."""
    with db.session() as sess:
        sess.execute(text("CREATE TABLE IF NOT EXISTS blobs (n INTEGER, b BLOB)"))
    for n in range(pages // 25):
        with db.session() as sess:
            sess.execute(text("INSERT INTO blobs VALUES (:n, :b)"),
                         {"n": n, "b": os.urandom(25 * PAGE)})


@pytest.mark.usefixtures("sqlite_only_store")  # PostgreSQL checkpoints on its own
def test_commits_leave_the_checkpoint_to_the_background_and_it_starts_the_wal_over(
        tmp_path: Path) -> None:
    path = tmp_path / "forge.db"
    db = Database(f"sqlite:///{path}")
    try:
        _write_pages(db, 1500)
        # No commit copied the WAL into the database file (1500 pages were past SQLite's
        # default of 1000: the commit that crossed it did).
        assert path.stat().st_size < 100 * PAGE
        busy, logged, copied = checkpoint(db) or (1, 0, 0)
        assert busy == 0 and logged >= 1500 and copied == logged
        assert path.stat().st_size > 1500 * PAGE
        # All of it copied: the next commit starts the WAL over instead of growing it.
        _write_pages(db, 25)
        busy, logged, copied = checkpoint(db) or (1, 0, 0)
        assert busy == 0 and 0 < logged < 100 and copied == logged
        with db.read() as sess:
            assert sess.execute(text("SELECT count(*) FROM blobs")).scalar_one() == 61
    finally:
        db.dispose()


def test_a_postgresql_store_has_no_wal_to_checkpoint(postgres_url: str) -> None:
    """The background task starts only for a SQLite file: on PostgreSQL it sent `PRAGMA`
    to the server every second (a syntax error each time, and a service's shutdown then
    failed), since a PostgreSQL URL's database name read as a SQLite file's path."""
    db = Database(postgres_url)
    try:
        assert checkpoint(db) is None
    finally:
        db.dispose()


@pytest.mark.usefixtures("sqlite_only_store")
def test_an_idle_store_is_not_checkpointed_again(tmp_path: Path) -> None:
    """A pass ran every second whatever happened: a thread hop, a pooled connection and two
    PRAGMAs cost every idle service about 0.5 % of a core (the idle bench: spawn 0.37 →
    0.80 %). A pass now runs only when the WAL changed since the last one."""
    db = Database(f"sqlite:///{tmp_path / 'forge.db'}")
    checkouts: list[int] = []
    event.listen(db.engine, "checkout", lambda *_: checkouts.append(1))

    async def watch() -> tuple[int, int]:
        task = asyncio.create_task(checkpoint_periodically(db, every_s=0.01))
        try:
            _write_pages(db, 25)
            written = len(checkouts)
            for _ in range(500):  # the pass after the write (bounded: 5 s)
                if len(checkouts) > written:
                    break
                await asyncio.sleep(0.01)
            after_pass = len(checkouts)
            await asyncio.sleep(0.3)  # about 30 more ticks, nothing written
            return after_pass - written, len(checkouts) - after_pass
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        passed, idle = asyncio.run(watch())
        assert passed >= 1 and idle == 0, (passed, idle)
    finally:
        db.dispose()
