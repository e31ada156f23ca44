"""The SQLite file a running store opened, known by its (device, inode) once seen.

A file moved, deleted or replaced under a running service still takes that service's
writes, which no process opening the path (another service, an operator command) sees any
more: `Database.ping` asks `StoreFile.check`, so readiness says so.
"""

from __future__ import annotations

import os
from pathlib import Path


class StoreFileGone(RuntimeError):
    """The SQLite file this store opened is no longer at its path (`Database.ping`)."""


class StoreFile:
    """One store's SQLite file at ``path``; the first (device, inode) seen there is noted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

    def check(self) -> None:
        """StoreFileGone when the file at the path is gone or another one than the store
        saw there first."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._seen is None:
                return
            found = "is gone (moved or deleted)"
        else:
            if self._seen is None:
                self._seen = (st.st_dev, st.st_ino)
                return
            if self._seen == (st.st_dev, st.st_ino):
                return
            found = "is another file than the one this service opened (replaced)"
        raise StoreFileGone(
            f"the state store {self.path} {found} while this service runs: its writes go to "
            "a file nothing else sees, and a command run now starts an empty store there; "
            "stop the services, put the file back (or restore a backup), start them again")
