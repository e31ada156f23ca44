"""Whether a folder's file system has room: for work that would only fail there (a lab
build, a command's write, a nats-server restart) to wait for room instead, and say so."""

from __future__ import annotations

import os
from pathlib import Path


def _statvfs(path: Path) -> os.statvfs_result | None:
    """`path`'s file system (that of its nearest existing parent); None if unaskable."""
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return os.statvfs(path)
    except OSError:
        return None


def free_bytes(path: Path) -> int | None:
    """Bytes an unprivileged write may still use on `path`'s file system (None: it cannot
    be asked)."""
    st = _statvfs(path)
    return None if st is None else st.f_bavail * st.f_frsize


def short_of_room(path: Path, need_bytes: int) -> bool:
    """True when `path`'s file system has less than `need_bytes` free, or no inode left
    (tmpfs counts its blocks per CPU, so "nearly full" is the most that can be known).
    A file system that cannot be asked is not said to be full."""
    st = _statvfs(path)
    if st is None:
        return False
    return st.f_bavail * st.f_frsize < need_bytes or (st.f_files > 0 and st.f_favail == 0)


__all__ = ["free_bytes", "short_of_room"]
