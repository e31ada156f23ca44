"""Has anything been committed to a SQLite store since the last look? A cheap, exact answer.

A loop that re-reads the same rows on a timer (the orchestrator's node heartbeat, every 2
s) may skip a read when nothing changed: SQLite's `PRAGMA data_version` changes whenever
another connection (of any process) commits to the file, and this watcher's own
connection never writes. A look costs one statement on a connection kept open for it (no
thread hop, no ORM session): on an idle orchestrator the heartbeat's store read was about a
quarter of its CPU (issue 19).

Anything uncertain counts as a change: PostgreSQL (no such counter), the first look, a
look that fails or would wait for a lock (the busy timeout is 0: the caller's event loop
never waits), a file replaced under the same path (a restored backup: another inode).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from forge.store.sqlite_files import store_sqlite_file


class DataVersion:
    """`changed()`: True unless the store is a SQLite file nothing committed to since the
    previous call (False only then: the caller may reuse what it read last time)."""

    def __init__(self, url: str) -> None:
        self._path: Path | None = store_sqlite_file(url)
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) the connection reads
        self._seen: int | None = None

    @property
    def tracks(self) -> bool:
        """Whether `changed()` can ever be False (a SQLite file; never for PostgreSQL)."""
        return self._path is not None

    def changed(self) -> bool:
        """True when something may have been committed since the last call."""
        seen, self._seen = self._seen, None
        if self._path is None:
            return True
        try:
            st = os.stat(self._path)
            fresh = self._conn is None or self._file != (st.st_dev, st.st_ino)
            if fresh:
                self.close()
                # mode=rw: never makes a file; timeout=0: never waits for a lock (a busy
                # file counts as changed).
                self._conn = sqlite3.connect(f"file:{quote(str(self._path))}?mode=rw",
                                             uri=True, timeout=0, check_same_thread=False,
                                             isolation_level=None)
                self._conn.execute("PRAGMA query_only = 1")
                self._file = (st.st_dev, st.st_ino)
            assert self._conn is not None
            row = self._conn.execute("PRAGMA data_version").fetchone()
        except (OSError, sqlite3.Error):
            self.close()
            return True
        self._seen = int(row[0])
        # A new connection's first version compares to nothing of its own.
        return fresh or self._seen != seen

    def close(self) -> None:
        """Close the watcher's connection (the next look opens one again)."""
        conn, self._conn, self._file = self._conn, None, None
        if conn is not None:
            conn.close()
