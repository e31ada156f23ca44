"""The storage-root lock of `forge up`: one supervisor per storage root, named by its pid.

Two supervisors on one storage root would run two nats-servers on one JetStream store and
two sets of services on one database. The lock is an `flock` on `forge-up.lock`, which the
kernel releases when the holder exits (even on `kill -9`), so a stale file never blocks a
start; the file's content is only the holder's pid and what it is (``forge up`` or
``forge runtime cleanup``, which holds the root while it destroys half-built labs), for the
refusal message.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

LOCK_NAME = "forge-up.lock"
UP = "forge up"
CLEANUP = "forge runtime cleanup"
HOLDERS = (UP, CLEANUP)  # what a lock file may name; anything else reads as forge up


class StorageLocked(Exception):
    """Another process holds the storage root; the message names it, its pid and the root."""

    def __init__(self, root: Path, pid: int | None, holder: str = UP) -> None:
        self.root = root
        self.pid = pid
        self.holder = holder
        who = f"pid {pid}" if pid is not None else "pid unknown"
        name = "another forge up" if holder == UP else holder
        super().__init__(f"{name} ({who}) holds {root}")


class StorageLock:
    """An exclusive, non-blocking lock on a storage root, held until `release()`."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self.path = root / LOCK_NAME
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path, holder: str = UP) -> StorageLock:
        """Take the lock and record our pid and ``holder`` (one of ``HOLDERS``), or raise
        StorageLocked naming the process that holds it."""
        if holder not in HOLDERS:
            raise ValueError(f"holder must be one of {HOLDERS}")
        root.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_file(root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, other = _read_holder(fd)
            os.close(fd)
            raise StorageLocked(root, pid, other) from None
        except BaseException:
            os.close(fd)
            raise
        # Overwrite, then cut: a reader sees the old or the new pid, never an empty file.
        record = f"{os.getpid()}\n{holder}\n".encode()
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
        return cls(root, fd)

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (the file stays; only the flock matters)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _open_lock_file(root: Path) -> int:
    """Open (or create) the root's lock file: a regular file of one link, never through a
    symlink (run as root, the pid written into it would overwrite whatever a writer of
    the storage root pointed it at). No O_TRUNC: the holder's pid must stay readable for
    the refusal message. Run as root, a file root owns in a root owned by another user
    (a cleanup run with sudo) is given to that user, whose forge up must open it."""
    path = root / LOCK_NAME
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        fd = os.open(path, flags)  # ELOOP for a symlink: an OSError, "cannot lock"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OSError(errno.EPERM, f"{LOCK_NAME} is not a plain file")
        owner = os.stat(root)
        if os.geteuid() == 0:
            if st.st_uid not in (0, owner.st_uid):
                raise OSError(errno.EPERM, f"{LOCK_NAME} belongs to neither root nor the "
                                           "storage root's owner")
            if st.st_uid == 0 and owner.st_uid != 0:
                os.fchown(fd, owner.st_uid, owner.st_gid)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_holder(fd: int) -> tuple[int | None, str]:
    """The holder's pid (None when unreadable) and name, from at most 64 bytes; a file of
    an earlier release holds only the pid, and that was a forge up."""
    try:
        lines = os.pread(fd, 64, 0).decode("ascii", errors="replace").splitlines()
    except OSError:
        return None, UP
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    holder = lines[1] if len(lines) > 1 and lines[1] in HOLDERS else UP
    return pid, holder
