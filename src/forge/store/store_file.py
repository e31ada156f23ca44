"""The SQLite file a running store opened, known by its (device, inode) once seen.

A file moved, deleted or replaced under a running service still takes that service's
writes, which no process opening the path (another service, an operator command) sees any
more: `Database.ping` asks `StoreFile.check`, so readiness says so. So is a file this
service may no longer write (made read-only, immutable, or on a filesystem remounted
read-only): SQLite opens it read-only then, answers every read and fails every write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DisconnectionError


class StoreFileGone(RuntimeError):
    """The SQLite file this store opened is no longer at its path (`Database.ping`)."""


class StoreFileReadOnly(RuntimeError):
    """The SQLite file at the store's path cannot be written by this service
    (`Database.ping`)."""


class StoreFile:
    """One store's SQLite file at ``path``; the first (device, inode) seen there is noted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

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
                return
            if self._seen == (st.st_dev, st.st_ino):
                self._check_writable()
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
