"""Image root filesystems for lab hosts: the shared read-only tree and a private /var.

A host on an image sees the image's whole tree as ``/``, bound read-only: one directory
of the machine-wide image cache, shared by every lab using that image (the kernel shares
its page cache too). Nothing of the machine's own ``/etc`` or userland is visible. The
image's ``/var`` is the lower layer of an overlay whose upper layer is on the lab's disk
(``disk``), so writes there count against the lab's disk limit and never reach the
image; the overlay goes away with the lab's disk (a lazy unmount detaches the whole
subtree). /home, /workspace, /srv, /tmp and /var/tmp stay per-host binds as for every
host (``sandbox.DATA_BINDS``), /run a tiny tmpfs.
"""

from __future__ import annotations

import ctypes
import os

from forge.runtime.base import RuntimeFault

# Under the host's data dir: the overlay's upper and work dirs and its mount point.
VAR_UPPER, VAR_WORK, VAR_MERGED = ".var-upper", ".var-work", ".var"
MS_NOSUID, MS_NODEV = 2, 4
_UNSAFE = (",", ":", "\\", "\n")

_libc = ctypes.CDLL(None, use_errno=True)


def image_root_args(rootfs: str) -> list[str]:
    """bwrap arguments making ``rootfs`` (an image tree) the read-only root."""
    return ["--ro-bind", rootfs, "/"]


def mount_image_var(host: str, rootfs: str, data_dir: str) -> str:
    """Mount the overlay of the image's /var for ``host``; returns its mount point.

    The upper layer is a directory of the lab's disk (size-capped tmpfs), created
    root-owned 0755 like the image's own /var.
    """
    lower = os.path.join(rootfs, "var")
    paths = [os.path.join(data_dir, d) for d in (VAR_UPPER, VAR_WORK, VAR_MERGED)]
    if any(c in p for p in (lower, *paths) for c in _UNSAFE):
        raise RuntimeFault(f"host {host}: image path {rootfs!r} has characters an overlay "
                           "cannot name")
    if not os.path.isdir(lower) or os.path.islink(lower):
        raise RuntimeFault(f"host {host}: image {rootfs} has no /var directory")
    for path in paths:
        os.makedirs(path, mode=0o755, exist_ok=True)
    upper, work, merged = paths
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"forge-var", merged.encode(), b"overlay", MS_NOSUID | MS_NODEV,
                   opts) != 0:
        err = ctypes.get_errno()
        raise RuntimeFault(f"host {host}: mount the image's /var overlay: {os.strerror(err)}")
    return merged
