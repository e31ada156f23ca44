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
from collections.abc import Callable, Mapping

from forge.images.definitions import HOST_USERLAND
from forge.runtime.base import RuntimeFault, SpecError
from forge.runtime.plan import LabPlan

# Under the host's data dir: the overlay's upper and work dirs and its mount point.
VAR_UPPER, VAR_WORK, VAR_MERGED = ".var-upper", ".var-work", ".var"
MS_NOSUID, MS_NODEV = 2, 4
_UNSAFE = (",", ":", "\\", "\n")

_libc = ctypes.CDLL(None, use_errno=True)


def host_roots(
    plan: LabPlan, rootfs: str, images: Mapping[str, str],
    resolve: Callable[[str], str] | None,
) -> dict[str, tuple[str, bool]]:
    """Each host's (root filesystem, is an image), decided before anything is created.

    No image or ``host``: the machine's userland (``rootfs``); a name in ``images``: that
    tree; else ``resolve(name)`` (the image cache). An image that is unknown or not built
    is a SpecError naming the host's field, never a silent fall back to the machine.
    """
    roots: dict[str, tuple[str, bool]] = {}
    for i, host in enumerate(plan.hosts):
        name = host.spec.image
        if name is None or name == HOST_USERLAND:
            roots[host.spec.name] = (rootfs, False)
        elif name in images:
            roots[host.spec.name] = (images[name], True)
        elif resolve is not None:
            try:
                roots[host.spec.name] = (resolve(name), True)
            except Exception as exc:  # the resolver's message says what to do
                raise SpecError(f"hosts[{i}].image", str(exc)) from None
        else:
            raise SpecError(f"hosts[{i}].image", f"image {name} is not known to this runtime")
    return roots


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
