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
import fcntl
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


def lock_now(path: str | Path) -> int | None:
    """A descriptor holding the exclusive flock on ``path`` when it is free right now, else
    None (held by another holder, or a file this will not lock on its own: a link, not this
    user's or root's, on a file system without flock). Closing the descriptor releases it.

    The uncontended case of `private_lock` in a few system calls: FileLock spends about
    0.12 ms of CPU per acquire and release on its bookkeeping. The lock is the same flock
    on the same file, so the two exclude each other; on None the caller takes
    `private_lock`, which waits (with its timeout) or refuses as it always did. The file
    is made 0600 as `private_lock` makes it."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    created = False
    try:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOCK_MODE)
            created = True
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (os.geteuid(), 0):
            raise PermissionError(path)
        if created:
            os.fchmod(fd, LOCK_MODE)  # whatever the umask, as FileLock's explicit mode
        else:
            restrict(fd)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_nlink == 0:  # unlinked before the flock: not the lock file now
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return fd
