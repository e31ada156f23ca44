"""The storage-root lock of `forge up`: one supervisor per storage root, named by its pid.

Two supervisors on one storage root would run two nats-servers on one JetStream store and
two sets of services on one database. The lock is an `flock` on `forge-up.lock`, which the
kernel releases when the holder exits (even on `kill -9`), so a stale file never blocks a
start; the file's content is only the holder's pid, for the refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "forge-up.lock"


class StorageLocked(Exception):
    """Another process holds the storage root; the message names its pid and the root."""

    def __init__(self, root: Path, pid: int | None) -> None:
        self.root = root
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another forge up ({holder}) holds {root}")


class StorageLock:
    """An exclusive, non-blocking lock on a storage root, held until `release()`."""

    def __init__(self, root: Path, fd: int) -> None:
        self.root = root
        self.path = root / LOCK_NAME
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, root: Path) -> StorageLock:
        """Take the lock and record our pid, or raise StorageLocked naming the holder."""
        root.mkdir(parents=True, exist_ok=True)
        path = root / LOCK_NAME
        # No O_TRUNC: the holder's pid must stay readable for the refusal message.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StorageLocked(root, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # Overwrite, then cut: a reader sees the old or the new pid, never an empty file.
        record = f"{os.getpid()}\n".encode()
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


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None
