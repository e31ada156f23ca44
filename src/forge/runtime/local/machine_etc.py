"""The /etc of a host on the machine's userland (``image: host``): an overlay of the lab's.

Such a host sees the machine's /etc under a read-only overlay mounted on the lab's disk
(at ``etc_view``; ``mount_etc``) whose top layer (``LAYER``) is the lab's:

* its passwd, group, hosts and resolv.conf (hard links of the identity files);
* empty ``MASKED_FILES`` (shadow, gshadow and their backups) and empty ``MASKED_DIRS``
  (ssh, sudoers.d, ssl/private: opaque, nothing of the machine's shows through);
* whiteouts for ``UNLINKED`` (the backups of passwd and group: the machine's accounts).

The overlay looks names up in that layer first, so none of it rests on a machine dentry.
Binds over the machine's own entries did: the kernel removes every mount on a dentry that
is renamed over or unlinked, in every mount namespace, so a ``useradd``, ``passwd`` or
DHCP client rewriting resolv.conf removed them in every running lab, which then saw the
machine's file (stops 53 and 54: ``whoami`` failing, the machine's accounts and shadow
showing through). One overlay is also one bind for bubblewrap instead of fourteen (each
makes it read its mountinfo again). The machine's relative links (``os-release ->
../usr/lib/os-release``) resolve as on the machine: the overlay is the host's /etc.

What the machine changes in its /etc while a lab runs is usually seen, with one rule:
the overlay keeps what it found for a name that lab looked up (until the kernel drops
it from its cache). So a file the machine replaces by a rename, or adds under a name the
lab looked for before, may not show; a file it deletes, or whose mode or owner it
changes, may stay readable in that lab as it was (in-place changes to its content do
show). The lab's own files never change. A mount inside the machine's /etc (a
container's bind over /etc/hostname) would not show through an overlay, nor would the
file it covers: its name is hidden (``hidden_mounts``, read at most every
``MOUNTS_TTL_S``). A host that could read root-only files
(``rootfs.MACHINE_READ_CAP``) is refused on the machine's userland.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import stat
import tempfile
import threading
import time

from forge.runtime.base import RuntimeFault
from forge.runtime.local.host_dirs import LAB_ETC_FILES
from forge.runtime.local.launch import mount_points
from forge.runtime.local.rootfs import OVERLAY_UNSAFE

VIEW = "merged"  # the overlay's mount point, under the lab's etc dir
LAYER = "layer"  # the lab's layer, under the lab's etc dir
MASKED_FILES = ("shadow", "gshadow", "shadow-", "gshadow-")
MASKED_DIRS = ("ssh", "sudoers.d", "ssl/private")
UNLINKED = ("passwd-", "group-")
OPAQUE = ("trusted.overlay.opaque", b"y")
MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4
# Read-only, no upper layer: no index, no inode number tricks, redirects never followed.
OPTIONS = "redirect_dir=nofollow,index=off,xino=off,metacopy=off"
MOUNTS_TTL_S = 30.0

_libc = ctypes.CDLL(None, use_errno=True)
_mount_lock = threading.Lock()
_mounts_lock = threading.Lock()
_mounts_seen: tuple[float, str, tuple[str, ...]] | None = None


def hidden_mounts(machine_etc: str) -> tuple[str, ...]:
    """Paths (relative to ``machine_etc``) of the mounts below it in the machine's mount
    namespace, which the lab's layer hides; mountinfo is read at most every MOUNTS_TTL_S
    seconds (it lists every lab's mounts: about 1 ms at 200 live labs)."""
    global _mounts_seen
    now = time.monotonic()
    with _mounts_lock:
        if (_mounts_seen is not None and _mounts_seen[1] == machine_etc
                and now - _mounts_seen[0] < MOUNTS_TTL_S):
            return _mounts_seen[2]
    with open("/proc/self/mountinfo", "rb") as fh:
        points = mount_points(fh.read())
    prefix = machine_etc.rstrip("/") + "/"
    found = tuple(sorted({os.path.relpath(p, machine_etc) for p in points
                          if p.startswith(prefix)}))
    with _mounts_lock:
        _mounts_seen = (now, machine_etc, found)
    return found


def etc_view(etc_dir: str) -> str:
    """Where a lab's /etc for hosts on the machine's userland is mounted (under
    ``etc_dir``, on the lab's disk)."""
    return os.path.join(etc_dir, VIEW)


def _whiteout(path: str) -> None:
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(0, 0))


def _parents(part: str, machine_etc: str, name: str) -> bool:
    """Make the directories above ``name`` in the layer ``part``, each with its machine
    directory's mode and owner (a merged directory shows the top layer's); False when one
    is not a directory on the machine (nothing below it to hide)."""
    parent = os.path.dirname(name)
    if not parent:
        return True
    made = ""
    for step in parent.split("/"):
        made = os.path.join(made, step)
        st = os.lstat(os.path.join(machine_etc, made))
        if not stat.S_ISDIR(st.st_mode):
            return False
        path = os.path.join(part, made)
        if not os.path.isdir(path):
            os.mkdir(path)
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, stat.S_IMODE(st.st_mode))
    return True


def _write_layer(etc_dir: str, machine_etc: str) -> str:
    """The lab's layer under ``etc_dir`` (see the module docstring), made aside and renamed
    into place so that a half-made one is never used; returns its path."""
    layer = os.path.join(etc_dir, LAYER)
    if os.path.isdir(layer):
        return layer
    part = tempfile.mkdtemp(prefix=".layer-", dir=etc_dir)
    try:
        os.chmod(part, 0o755)  # noqa: S103 - an /etc, read by the lab's users
        for name, target in LAB_ETC_FILES.items():
            os.link(os.path.join(etc_dir, name), os.path.join(part, target))
        for name in MASKED_FILES:
            os.close(os.open(os.path.join(part, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o644))
        for name in UNLINKED:
            _whiteout(os.path.join(part, name))
        for name in MASKED_DIRS:
            with contextlib.suppress(FileNotFoundError):  # e.g. no /etc/ssl: nothing below
                if not _parents(part, machine_etc, name):
                    continue
                path = os.path.join(part, name)
                os.mkdir(path, 0o755)
                try:
                    os.setxattr(path, *OPAQUE)
                except OSError as exc:  # no trusted xattrs here: hide the name instead
                    if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                        raise
                    os.rmdir(path)
                    _whiteout(path)
        for name in hidden_mounts(machine_etc):
            path = os.path.join(part, name)
            with contextlib.suppress(FileNotFoundError):
                if (not os.path.lexists(path) or os.path.isdir(path)) and _parents(
                        part, machine_etc, name):
                    if os.path.isdir(path):
                        shutil.rmtree(path)
                    _whiteout(path)
        os.rename(part, layer)
    except BaseException as exc:  # nothing half-made is left on the lab's disk
        shutil.rmtree(part, ignore_errors=True)
        if isinstance(exc, OSError) and os.path.isdir(layer):
            return layer  # another caller's, made meanwhile
        if isinstance(exc, OSError):
            raise RuntimeFault(f"make the lab's /etc layer: {exc}") from None
        raise
    return layer


def mount_etc(etc_dir: str, machine_etc: str) -> str:
    """Mount the lab's /etc for its hosts on the machine's userland at ``etc_view``, where
    ``write_identity`` has written the identity files under ``etc_dir``; nothing if it is
    mounted. Returns its path. A RuntimeFault names what the kernel refused."""
    view = etc_view(etc_dir)
    with _mount_lock:
        if os.path.ismount(view):
            return view
        lower = os.path.realpath(machine_etc)
        layer = _write_layer(etc_dir, lower)
        if any(c in p for p in (layer, lower, view) for c in OVERLAY_UNSAFE):
            raise RuntimeFault(f"the lab's /etc overlay cannot name {lower!r} or {layer!r}")
        with contextlib.suppress(FileExistsError):
            os.mkdir(view, 0o755)
        opts = f"lowerdir={layer}:{lower},{OPTIONS}".encode()
        if _libc.mount(b"forge-root", view.encode(), b"overlay",
                       MS_RDONLY | MS_NOSUID | MS_NODEV, opts) != 0:
            err = ctypes.get_errno()
            raise RuntimeFault(f"mount the lab's /etc overlay over {lower}: "
                               f"{os.strerror(err)}")
    return view


def machine_etc_args(rootfs: str, etc_dir: str) -> list[str]:
    """bwrap arguments giving a host on the machine's userland its /etc (``mount_etc``,
    done here if it is not: a lab started by an older release has none)."""
    return ["--ro-bind", mount_etc(etc_dir, os.path.join(rootfs, "etc")), "/etc"]
