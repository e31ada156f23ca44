"""Image root filesystems for lab hosts: a shared read-only image under a private overlay.

A host on an image sees the image's whole tree as ``/`` through an overlay: the lower
layer is one directory of the machine-wide image cache, shared by every lab using that
image (the kernel shares its page cache too) and never written; the upper and work
layers are directories of the lab's disk (``disk``: the size-capped tmpfs), so whatever
the host writes into its root counts against ``limits.disk_mb`` and stays in that host.
The overlay is mounted nosuid,nodev and goes away with the lab's disk (its lazy unmount
detaches the whole subtree). The image's files keep their owners (root), so the lab user
writes only where the image lets it and into the seeds it owns (``seeds``). Nothing of
the machine's own ``/etc`` or userland is visible. /home, /workspace, /srv, /tmp and
/var/tmp stay per-host binds as for every host (``host_dirs.DATA_BINDS``), /run a tiny
tmpfs holding the image's /run directories.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Callable, Mapping

from forge.images.definitions import HOST_USERLAND
from forge.images.lookup import TemplateImageError
from forge.runtime.base import RuntimeFault, SpecError
from forge.runtime.plan import LabPlan

# Under the host's data dir: the root overlay's upper and work dirs and its mount point.
ROOT_UPPER, ROOT_WORK, ROOT_MERGED = ".root-upper", ".root-work", ".root"
SSHD = "usr/sbin/sshd"
MS_NOSUID, MS_NODEV = 2, 4
# Characters an overlay's lowerdir option cannot carry.
OVERLAY_UNSAFE = (",", ":", "\\", "\n")

_libc = ctypes.CDLL(None, use_errno=True)


def configured_image(name: str) -> str:
    """The built tree of image ``name`` in the cache the settings name (FORGE_IMAGE_DIR,
    FORGE_IMAGE_CACHE), read at each create; raises naming what to do when not built."""
    from forge.config.settings import load_settings
    from forge.images import resolve_image

    settings = load_settings()
    return str(resolve_image(name, settings.images_dir, settings.image_cache))


# Reads any file whose owner the host's user namespace maps: on the machine's userland
# that is the machine's own /etc and /usr (the secrets of /etc are masked, but not every
# root-only file is a known secret: ``machine_etc``).
MACHINE_READ_CAP = "DAC_READ_SEARCH"


def host_roots(
    plan: LabPlan, rootfs: str, images: Mapping[str, str],
    resolve: Callable[[str], str] | None, default: str | None = None,
) -> dict[str, tuple[str, bool]]:
    """Each host's (root filesystem, is an image), decided before anything is created.

    No image: the ``default`` image (the configured engine's is ``base``), or without one
    (a runtime built directly, e.g. by tests) the machine's userland; ``host``: the
    machine's userland (``rootfs``); a name in ``images``: that tree; else
    ``resolve(name)`` (the image cache). An image that is unknown or not built is a
    SpecError naming the host's field, never a silent fall back to the machine, and so is
    MACHINE_READ_CAP on a host on the machine's userland. Each name is resolved once per
    call: the hosts of a lab naming one image share one lookup (and one build of it), where
    a lookup per host cost the default resolver (``configured_image``, which reads the
    settings) about 2 ms of CPU per host.
    """
    roots: dict[str, tuple[str, bool]] = {}
    resolved: dict[str, str] = {}
    for i, host in enumerate(plan.hosts):
        name = host.spec.image if host.spec.image is not None else default
        if name is None or name == HOST_USERLAND:
            if MACHINE_READ_CAP in host.caps:
                raise SpecError(f"hosts[{i}].capabilities",
                                f"{MACHINE_READ_CAP} on a host on the machine's userland would "
                                "let its learner read the machine's root-only files; give "
                                "the host an image")
            roots[host.spec.name] = (rootfs, False)
        elif name in images:
            roots[host.spec.name] = (images[name], True)
        elif name in resolved:
            roots[host.spec.name] = (resolved[name], True)
        elif resolve is not None:
            try:
                resolved[name] = resolve(name)
                roots[host.spec.name] = (resolved[name], True)
            except TemplateImageError as exc:  # its message says what to do
                raise SpecError(f"hosts[{i}].image", str(exc)) from None
            except Exception as exc:  # the node's own: e.g. a definitions file it cannot
                # read (its message names the file's path on the node), the cache, a tool
                raise RuntimeFault(f"hosts[{i}].image: image {name}: {exc}") from None
        else:
            raise SpecError(f"hosts[{i}].image", f"image {name} is not known to this runtime")
    return roots


def image_root_args(root: str, writable: bool) -> list[str]:
    """bwrap arguments making ``root`` (a host's overlay) the root: writable for the host
    (permissions still apply), read-only for its grader."""
    return ["--bind" if writable else "--ro-bind", root, "/"]


def merged_root(data_dir: str) -> str:
    """Where a host's root overlay is mounted (under its data dir, on the lab's disk)."""
    return os.path.join(data_dir, ROOT_MERGED)


def mount_image_root(host: str, rootfs: str, data_dir: str) -> str:
    """Mount ``host``'s root overlay over the image ``rootfs``; returns its mount point.

    The lower layer is the image's real path (what ``ImageCache.in_use`` looks for); the
    upper layer's top is root-owned 0755 like the image's own ``/``.
    """
    lower = os.path.realpath(rootfs)
    paths = [os.path.join(data_dir, d) for d in (ROOT_UPPER, ROOT_WORK, ROOT_MERGED)]
    if any(c in p for p in (lower, *paths) for c in OVERLAY_UNSAFE):
        raise RuntimeFault(f"host {host}: image path {rootfs!r} has characters an overlay "
                           "cannot name")
    if not os.path.isdir(os.path.join(lower, "etc")):
        raise RuntimeFault(f"host {host}: image {rootfs} has no /etc: not a root filesystem")
    for path in paths:
        os.makedirs(path, mode=0o755, exist_ok=True)
        os.chmod(path, 0o755)  # noqa: S103 - like the image's own /
    upper, work, merged = paths
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}".encode()
    if _libc.mount(b"forge-root", merged.encode(), b"overlay", MS_NOSUID | MS_NODEV,
                   opts) != 0:
        err = ctypes.get_errno()
        raise RuntimeFault(f"host {host}: mount the image's root overlay: {os.strerror(err)}")
    return merged


def run_dir_args(root: str) -> list[str]:
    """bwrap arguments recreating the image's /run directories (e.g. /run/lock, and
    /run/sshd for an image with sshd) in the host's fresh /run tmpfs, which hides them."""
    argv: list[str] = []
    run = os.path.join(root, "run")
    found: list[tuple[str, int]] = []
    for base, dirs, _files in os.walk(run):
        depth = base.count("/") - run.count("/")  # 0 for /run itself; kept: 3 levels
        for name in sorted(dirs):
            full = os.path.join(base, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                found.append(("/run/" + os.path.relpath(full, run), stat.S_IMODE(st.st_mode)))
        # Never below the third level (nothing there is kept), never through a link.
        dirs[:] = [d for d in dirs
                   if depth < 2 and not os.path.islink(os.path.join(base, d))]
    if os.path.exists(os.path.join(root, SSHD)) and "/run/sshd" not in dict(found):
        found.append(("/run/sshd", 0o755))
    for path, mode in sorted(found):
        argv += ["--perms", f"{mode & 0o1777:04o}", "--dir", path]
    return argv
