"""File locks that no other local user can take.

A flock needs only an open descriptor, and a read-only one will do. A lock file any user
can read (0644, what a lock gets by default) under a storage root any user can traverse
let a local user of the server take it and keep it: the global audit log's lock stopped
every verdict, a new scenario's stopped that learner's lab from ever running, and the
migration lock made an upgrade fail (probe BI). A lock made here is created 0600, and an
existing one that others may open (left by an older release) is made 0600 first. A user
who opened such a file before that keeps the descriptor they hold; anyone else is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from filelock import FileLock

LOCK_MODE = 0o600


def restrict(fd: int) -> None:
    """Make the lock file open on ``fd`` 0600 when others may open it (its owner or root
    can; anyone else leaves it as it is)."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, LOCK_MODE)


def private_lock(path: str | Path, timeout: float = -1) -> FileLock:
    """A FileLock on ``path`` that only its owner (and root) can open; ``timeout`` as
    FileLock's (-1: wait for ever)."""
    with contextlib.suppress(OSError):  # missing (made 0600 at first use) or a symlink
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            restrict(fd)
        finally:
            os.close(fd)
    return FileLock(str(path), timeout=timeout, mode=LOCK_MODE)
