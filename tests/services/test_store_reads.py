"""A request handler's store reads (`read_call`): inline on SQLite, never a write there,
never waiting for a writer; on PostgreSQL on a worker thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forge.identity.apikeys import create_api_key, verify_api_key
from forge.services.common.store_reads import read_call
from forge.store import Database, upgrade
from forge.store.db_engine import WriteInInlineRead


def _thread_of_read(db: Database, presented: str) -> tuple[int, bool]:
    """(thread the read ran on, whether the key verified)."""
    return threading.get_ident(), verify_api_key(db, presented) is not None


def test_a_read_runs_on_the_loop_thread_on_sqlite_and_on_a_worker_elsewhere(
        db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        key = create_api_key(db, "tenant-a", "learner-1")

        async def main() -> tuple[int, int, bool]:
            ran_on, verified = await read_call(db, _thread_of_read, db, key.plaintext)
            return threading.get_ident(), ran_on, verified

        loop_thread, ran_on, verified = asyncio.run(main())
        assert verified
        assert (ran_on == loop_thread) is db_url.startswith("sqlite")
    finally:
        db.dispose()


def test_a_write_inside_an_inline_read_is_refused_and_writes_nothing(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        async def main() -> None:
            await read_call(db, create_api_key, db, "tenant-a", "learner-1")

        def engine_write() -> None:
            with db.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM api_keys")

        async def around_session() -> None:  # a write lock taken past `session()`
            await read_call(db, engine_write)

        if db_url.startswith("sqlite"):
            with pytest.raises(WriteInInlineRead):
                asyncio.run(main())
            with pytest.raises(WriteInInlineRead):
                asyncio.run(around_session())
            with db.read() as sess:
                assert sess.connection().exec_driver_sql(
                    "SELECT count(*) FROM api_keys").scalar() == 0
        else:  # on a worker thread a write stalls no event loop: nothing to refuse
            asyncio.run(main())
        # the refusal is the inline read's only: the same thread writes afterwards
        assert verify_api_key(db, create_api_key(db, "tenant-a", "learner-2").plaintext)
    finally:
        db.dispose()


@pytest.mark.parametrize("engine", [pytest.param("sqlite", id="sqlite_only")])
def test_an_inline_read_never_waits_for_a_writer_holding_the_lock(
        tmp_path: Path, engine: str) -> None:
    # Another process's open write transaction (BEGIN IMMEDIATE, an uncommitted row): an
    # inline read must answer from its snapshot at once, or it would stall the whole loop.
    path = f"{tmp_path}/forge.db"
    upgrade(f"sqlite:///{path}")
    db = Database(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        key = create_api_key(db, "tenant-a", "learner-1")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE api_keys SET revoked_at = ?", (datetime.now(UTC).isoformat(),))

        async def main() -> bool:
            _, verified = await read_call(db, _thread_of_read, db, key.plaintext)
            return verified

        began = time.monotonic()
        assert asyncio.run(main())  # the committed snapshot: the key is live
        # A read that waited for the writer would wait for good here (until SQLite's 15 s
        # busy timeout): a bound on waiting, not a performance figure.
        assert time.monotonic() - began < 5
        holder.execute("COMMIT")
        assert verify_api_key(db, key.plaintext) is None
    finally:
        holder.close()
        db.dispose()


def test_a_sqlite_store_that_refused_wal_is_read_on_a_worker_thread(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SQLite without WAL (here through its dot-file VFS, which has no shared memory, as
    some network filesystems) makes a read wait for a write in progress: such a store is
    never read on the event loop, and the log says so once, naming the file. A store in
    WAL mode is. A `file:` URI names its file, not a directory called `file:`."""
    refusing = tmp_path / "nowal" / "forge.db"
    urls = {False: f"sqlite:///file:{refusing}?vfs=unix-dotfile&uri=true",
            True: f"sqlite:///{tmp_path / 'wal.db'}"}
    for inline, url in urls.items():
        upgrade(url)
        db = Database(url)
        try:
            key = create_api_key(db, "tenant-a", "learner-1")

            async def main(db: Database = db, plaintext: str = key.plaintext) -> list[bool]:
                on_loop = []
                for _ in range(3):
                    ran_on, verified = await read_call(db, _thread_of_read, db, plaintext)
                    assert verified
                    on_loop.append(ran_on == threading.get_ident())
                return on_loop

            assert asyncio.run(main()) == [inline] * 3
            assert db.reads_inline is inline
        finally:
            db.dispose()
    with sqlite3.connect(refusing) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal"
    assert (tmp_path / "nowal" / "forge.db-writelock").exists()
    assert caplog.text.count("refused WAL mode") == 1
    assert str(refusing) in caplog.text
