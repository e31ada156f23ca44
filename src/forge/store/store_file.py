"""The SQLite file a running store opened, known by its (device, inode) once seen.

A file moved, deleted or replaced under a running service still takes that service's
writes, which no process opening the path (another service, an operator command) sees any
more: `Database.ping` asks `StoreFile.check`, so readiness says so. So is a file this
service may no longer write (made read-only, immutable, or on a filesystem remounted
read-only): SQLite opens it read-only then, answers every read and fails every write.
So is an older copy written over it in place (`cp backup/forge.db STORAGE/`, a backup
restored while the services run), which keeps the inode: the store went back in time
under them. Each service, when it first checks the file, adds one to SQLite's
`user_version` (nothing else in Forge uses it) and checkpoints; the value the main file
holds (read past the WAL) only grows from then on, whatever is written or checkpointed,
so a lower one is a copy from before this service started.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DisconnectionError


class StoreFileGone(RuntimeError):
    """The SQLite file this store opened is no longer at its path (`Database.ping`)."""


class StoreFileReadOnly(RuntimeError):
    """The SQLite file at the store's path cannot be written by this service
    (`Database.ping`)."""


class StoreFileRewound(RuntimeError):
    """An older copy of the SQLite file was written over it in place (`Database.ping`)."""


class StoreFile:
    """One store's SQLite file at ``path``; the first (device, inode) seen there is noted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None
        self._mark: int | None = None  # the highest start mark seen in the main file

    def check(self) -> None:
        """StoreFileGone when the file at the path is gone or another one than the store
        saw there first; StoreFileReadOnly when this process may not write it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._seen is None:
                return
            found = "is gone (moved or deleted)"
        else:
            if self._seen is None:
                self._seen = (st.st_dev, st.st_ino)
                self._check_writable()
                if st.st_size:  # a store made, not a file SQLite has yet to begin
                    _add_start_mark(self.path)
                self._check_mark()
                return
            if self._seen == (st.st_dev, st.st_ino):
                self._check_writable()
                self._check_mark()
                return
            found = "is another file than the one this service opened (replaced)"
        raise StoreFileGone(
            f"the state store {self.path} {found} while this service runs: its writes go to "
            "a file nothing else sees, and a command run now starts an empty store there; "
            "stop the services, put the file back (or restore a backup), start them again")

    def writable(self) -> bool:
        """Whether SQLite's next open of the file gets it read-write. access(2), not
        open(2): closing a descriptor of the file would drop the POSIX locks SQLite holds on
        it in this process. It sees what that open sees: a mode without write, an immutable
        file (even for root), a read-only mount. A missing file is SQLite's to make."""
        if not os.path.lexists(self.path):
            return True
        return os.access(self.path, os.W_OK,
                         effective_ids=os.access in os.supports_effective_ids)

    def note_read_only(self, _dbapi_conn: Any, record: Any) -> None:
        """Engine `connect` hook: whether SQLite opened this connection read-only."""
        record.info["opened_read_only"] = not self.writable()

    def replace_read_only(self, _dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """Engine `checkout` hook: a connection SQLite opened read-only answers "attempt to
        write a readonly database" to every write even after the file was made writable
        again, so the pool drops it and opens a new one (DisconnectionError)."""
        if record.info.get("opened_read_only") and self.writable():
            raise DisconnectionError("the SQLite file is writable again: reopened")

    def _check_writable(self) -> None:
        if self.writable():
            return
        raise StoreFileReadOnly(
            f"the state store {self.path} is read-only here (file mode, immutable flag or "
            "read-only mount): every write fails; make it writable (chmod u+w, chattr -i, "
            "or remount read-write) and the services reopen it by themselves")

    def _check_mark(self) -> None:
        """StoreFileRewound when the main file's start mark is lower than one seen before
        (read twice: a checkpoint writing the page as it is read is no restore)."""
        now = _start_mark(self.path)
        if now is not None and self._mark is not None and now < self._mark:
            now = _start_mark(self.path)
            if now is not None and now < self._mark:
                raise StoreFileRewound(
                    f"the state store {self.path} went back in time while this service runs "
                    f"(start mark {now}, was {self._mark}): an older copy was written over "
                    "it, so what was stored since is gone and the file mixes both; stop the "
                    "services, restore the backup with them stopped (the runbook's Backup "
                    "and restore: the whole storage root), start them again")
        if now is not None and (self._mark is None or now > self._mark):
            self._mark = now


def _start_mark(path: Path) -> int | None:
    """SQLite's user_version as the main file holds it (``immutable``: past the WAL, no
    lock taken); None when it is no SQLite database. Opened through SQLite, which keeps
    the descriptor open while this process's connections hold locks on the file (a plain
    close would drop them)."""
    try:
        conn = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _add_start_mark(path: Path) -> None:
    """Add one to the file's user_version and checkpoint it into the main file, so a copy
    made before this start has a lower mark. Skipped when the store is busy past a second
    (no mark: no alarm, and the next start adds one)."""
    try:
        conn = sqlite3.connect(str(path), timeout=1.0, isolation_level=None)
    except sqlite3.Error:
        return
    try:
        conn.execute("BEGIN IMMEDIATE")
        mark = int(conn.execute("PRAGMA user_version").fetchone()[0])
        conn.execute(f"PRAGMA user_version = {mark + 1}")
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.rollback()
    finally:
        conn.close()
