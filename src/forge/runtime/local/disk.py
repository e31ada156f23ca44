"""The lab's disk: one size-capped tmpfs holding every writable path of every host.

Each host's /home, /workspace, /srv, /tmp, /var and /run are directories of this one
filesystem, so ``spec.limits.disk_mb`` caps all of them together: filling it gives ENOSPC
inside the lab and never touches the machine's own filesystems. Inodes are capped too
(an empty file costs memory, not size). tmpfs pages are charged to the memory cgroup of
the process that writes them, so a lab's disk use also counts against its memory limit.
The hosts' state directories (read-only seeds, init pid, service log) live on it too, under
``.hosts`` (``Names.host_dir``): a service's log fills the lab's disk, never the machine's.
"""

from __future__ import annotations

import ctypes
import errno
import os

from forge.runtime.local.launch import mount_points

MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
INODES_PER_MB = 256
MIN_INODES = 4096

_libc = ctypes.CDLL(None, use_errno=True)


def mount_lab_disk(path: str, size_mb: int) -> None:
    """Mount a fresh tmpfs of ``size_mb`` MiB at ``path`` (created 0755, root-owned)."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    inodes = max(MIN_INODES, size_mb * INODES_PER_MB)
    data = f"size={size_mb}m,nr_inodes={inodes},mode=0755".encode()
    if _libc.mount(b"forge-lab", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount lab disk at {path}: {os.strerror(err)}")


def unmount_lab_disk(path: str) -> None:
    """Detach the lab's tmpfs (its pages are freed once no sandbox holds it), and every
    mount left below its mount point; idempotent. Detaching the disk takes the hosts'
    mounts on it along; but a create that went on after a destroy raced it (the disk
    already detached) made its hosts' directories and mounts (pseudo-terminals, image
    roots, the /etc view) on the machine's file system, where they kept the lab's state
    directory, and so the lab, from ever being removed."""
    while os.path.ismount(path):
        if _libc.umount2(path.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise OSError(err, f"unmount lab disk at {path}: {os.strerror(err)}")
    try:
        left = os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    if left:  # the disk's mount point is empty once the disk is gone: only then, a scan
        _unmount_below(path)


def _unmount_below(path: str) -> None:
    """Detach every mount strictly below ``path``, deepest first (stacked ones too)."""
    for _ in range(16):  # bounded: each pass detaches the top mount of each point
        with open("/proc/self/mountinfo", "rb") as fh:
            points = {p for p in mount_points(fh.read())
                      if p.startswith(path.rstrip("/") + "/")}
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            if _libc.umount2(os.fsencode(point), MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (errno.EINVAL, errno.ENOENT):  # gone with a parent's detach
                    raise OSError(err, f"unmount {point}: {os.strerror(err)}")
    raise OSError(errno.EBUSY, f"mounts below {path} are still there after 16 detaches")
