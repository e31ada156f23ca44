"""SQLite WAL checkpoints off the request path: a service's background task, not a commit.

SQLite's default checkpoints the WAL inside the commit that takes it past 1000 pages: that
commit copies ~4 MiB into the database file and syncs it. Measured with spawn-like
transactions at a steady pace, one commit in ~200 took 4-37 ms instead of 0.05 ms, and on
the single writer thread every write queued behind it waited as long. A service now
checkpoints every CHECKPOINT_EVERY_S (PASSIVE: it never waits for, nor blocks, readers or
writers); a commit checkpoints only past SQLITE_AUTOCHECKPOINT_PAGES, a backstop that bounds the
WAL when no service runs (a CLI alone) or the background task falls behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from forge.second_grid import sleep_to_tick
from forge.store.db import Database
from forge.store.db_engine import SQLITE_AUTOCHECKPOINT_PAGES
from forge.store.sqlite_files import store_sqlite_file

log = logging.getLogger("forge.store")
CHECKPOINT_EVERY_S = 1.0


def _passive(conn: Any) -> tuple[int, int, int]:
    """PRAGMA wal_checkpoint(PASSIVE) on a driver connection outside any transaction."""
    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (1, -1, -1)


def _data_version(conn: Any) -> int:
    """SQLite's count of other connections' commits as this connection sees it."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def checkpoint(db: Database) -> tuple[int, int, int] | None:
    """Checkpoint a SQLite store's WAL; SQLite's answer (busy, WAL pages, pages copied),
    None for a store that is no SQLite file. Busy (another process checkpointing) is an
    answer, not an error: the next one copies what is left.

    The bulk is copied while writers go on; what they appended meanwhile (a few pages),
    with writers held. Only a checkpoint that leaves no page behind lets the next commit
    start the WAL over: one racing the writers never did, and the WAL grew to the
    backstop. Nothing committed meanwhile (an idle service): writers are not held."""
    if store_sqlite_file(db.url) is None:
        return None
    pooled = db.engine.raw_connection()
    try:
        conn = pooled.driver_connection
        before = _data_version(conn)
        first = _passive(conn)
        if first[0] or first[1] <= 0 or (
                first[1] == first[2] and _data_version(conn) == before):
            return first  # busy, nothing in the WAL, or all of it copied
        with db.session():  # BEGIN IMMEDIATE elsewhere: no commit appends meanwhile
            return _passive(conn)
    finally:
        pooled.close()


async def checkpoint_periodically(db: Database, every_s: float | None = None) -> None:
    """Checkpoint `db` every `every_s` (CHECKPOINT_EVERY_S) on a thread until cancelled.
    A failure (a full disk, a read-only file) is logged once until a checkpoint works
    again; the commits' backstop keeps the WAL bounded meanwhile."""
    failing = False
    wal = _wal_of(db)
    seen: tuple[int, int] | None = None
    while True:
        await sleep_to_tick(every_s or CHECKPOINT_EVERY_S)  # with the Date tick's wake-up
        if wal is not None and not failing and _signature(wal) == seen:
            continue  # nothing written since the last pass (an idle service: no CPU)
        try:
            await asyncio.to_thread(checkpoint, db)
            seen = _signature(wal) if wal is not None else None
        except (sqlite3.Error, DBAPIError, OSError) as exc:
            if not failing:
                log.warning("SQLite store: background WAL checkpoint failed (%s: %s); "
                            "commits checkpoint past %d pages meanwhile",
                            type(exc).__name__, exc, SQLITE_AUTOCHECKPOINT_PAGES)
            failing = True
            continue
        if failing:
            log.info("SQLite store: background WAL checkpoint works again")
        failing = False


def _wal_of(db: Database) -> Path | None:
    """The store's WAL file (``<file>-wal``), None when it is no SQLite file."""
    path = store_sqlite_file(db.url)
    return None if path is None else path.with_name(path.name + "-wal")


def _signature(wal: Path) -> tuple[int, int] | None:
    """The WAL's size and modification time: unchanged since a pass, nothing was written
    to it, so the next pass is skipped (a pass cost an idle service ~0.5 % of a core:
    a thread hop, a pooled connection, two PRAGMAs, every second)."""
    try:
        info = os.stat(wal)
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns
