"""A small mount namespace to start a lab's sandboxes from, the same size at any scale.

bubblewrap reads ``/proc/self/mountinfo`` for each of its ~30 binds, so starting a sandbox
in the machine's mount namespace cost more with every live lab (each adds four
``/run/netns`` mounts and a lab disk): 5.9 ms at 0 live labs, 22 ms at 100. A sandbox now
starts from a fresh copy of one *base* namespace, made once per process: the machine's
mounts, private, without ``/run/netns``, without any lab's disk and without the mounts
below ``/proc`` and ``/dev`` (bwrap mounts its own). A host's base also leaves out
``/sys`` (11 of the 20 mounts here are cgroup file systems, read by bwrap at each bind):
the runtime moves a host's sandbox into its cgroups from outside, while a check joins
its cgroup by path before bwrap starts (``JOIN_SH``), so the checks' base keeps it.
A burst of 50 creates took 48-49 ms of machine CPU per lab with the machine's mounts
and 43-47 ms without them; on a machine with more mounts, the gap grows. The spawning
thread clones its own lab's disk (with the image overlays mounted in it) from the machine's
namespace (``open_tree``) and attaches the clone at the same path in its copy, so bwrap
sees the lab's files and nothing of other labs. When the lab is destroyed its sandboxes
die, and with them the copy and the clone. A grading check's sandbox starts the same way,
and its copy ends with it. The machine's namespace is never changed.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import TypeVar

from forge.runtime.local.netns import CLONE_NEWNET, NETNS_DIR, ensure_rundir, in_thread, netns_path

T = TypeVar("T")

CLONE_FS = 0x00000200
CLONE_NEWNS = 0x00020000
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # one number on every architecture
OPEN_TREE_CLONE, AT_RECURSIVE, AT_FDCWD = 1, 0x8000, -100
MOVE_MOUNT_F_EMPTY_PATH = 4
LAB_SOURCES = ("forge-lab", "forge-root")  # the lab disk's, image and /etc overlays' sources

log = logging.getLogger("forge.runtime.launch")
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_base_fds: dict[bool, int] = {}  # with /sys (for checks) or without (for hosts) -> fd


_unusable = False  # set once the kernel refused the base (ENOSYS, EPERM): not retried
UNSUPPORTED = (errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP)
_OCTAL = re.compile(rb"\\([0-7]{3})")


class NotInBase(OSError):
    """The lab cannot be placed in a copy of the base namespace (e.g. its state directory
    is on a file system mounted after the base was made)."""


class LabGone(OSError):
    """The lab's network namespace or disk could not be entered: it is gone or being
    removed (a check racing the lab's teardown)."""


class BaseUnusable(NotInBase):
    """The kernel refuses what the base namespace needs (an old kernel without
    open_tree/move_mount, a container's seccomp policy): no lab can use it."""


def _check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        kind = BaseUnusable if err in UNSUPPORTED else OSError
        raise kind(err, f"{what}: {os.strerror(err)}")


def unescape_mount_point(field: bytes) -> str:
    """A mountinfo mount point as a path: the kernel's octal escapes (space, tab, newline,
    backslash) decoded on the bytes, the rest kept as the file system's bytes."""
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def _mounts(mountinfo: bytes) -> list[tuple[str, bytes]]:
    """(mount point, file system source) of each line of a mountinfo text."""
    entries = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(b" - ")
        fields, source = left.split(), right.split()[1:2]
        if sep and len(fields) > 4 and source:
            entries.append((unescape_mount_point(fields[4]), source[0]))
    return entries


def mount_points(mountinfo: bytes) -> list[str]:
    """Every mount point of a mountinfo text."""
    return [point for point, _source in _mounts(mountinfo)]


def lab_mounts(mountinfo: str | bytes) -> list[str]:
    """Mount points of lab disks and image overlays in a mountinfo text, deepest first."""
    data = os.fsencode(mountinfo) if isinstance(mountinfo, str) else mountinfo
    sources = {s.encode() for s in LAB_SOURCES}
    points = [point for point, source in _mounts(data) if source in sources]
    return sorted(points, key=len, reverse=True)


def system_mounts(mountinfo: bytes, keep_sys: bool) -> list[str]:
    """Mount points below ``/proc`` and ``/dev``, and ``/sys`` with everything below it
    unless ``keep_sys``: what no sandbox start reads."""
    return [point for point, _source in _mounts(mountinfo)
            if point.startswith(("/proc/", "/dev/"))
            or (not keep_sys and (point == "/sys" or point.startswith("/sys/")))]


def _make_base(keep_sys: bool) -> int:
    """In a throw-away thread: a private copy of the machine's mounts minus /run/netns,
    every lab mount and the system mounts (``system_mounts``); returns an fd holding it."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    # Private first, so the unmounts below never reach the machine's namespace.
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    with open("/proc/thread-self/mountinfo", "rb") as fh:
        data = fh.read()
    points = [NETNS_DIR, *lab_mounts(data), *system_mounts(data, keep_sys)]
    for point in sorted(points, key=len, reverse=True):
        _libc.umount2(os.fsencode(point), MNT_DETACH)  # a parent's detach may have taken it
    return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)


def base_namespace(keep_sys: bool = False) -> int:
    """The fd of the process's base mount namespace for hosts (or, ``keep_sys``, for
    checks), made on first use."""
    with _lock:
        if keep_sys not in _base_fds:
            ensure_rundir()  # /run/netns must be a mount point to be left out
            _base_fds[keep_sys] = in_thread(lambda: _make_base(keep_sys))
        return _base_fds[keep_sys]


def base_usable() -> bool:
    """False once the kernel refused the base namespace (every start then uses the
    machine's mount namespace)."""
    return not _unusable


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def enter_lab_namespace(data_root: str, needed: dict[str, tuple[int, int] | None],
                        keep_sys: bool = False) -> None:
    """Move the calling thread (one about to start a sandbox, then discarded) into a fresh
    copy of a base namespace (``base_namespace(keep_sys)``) holding only the lab's own
    disk at ``data_root``; raises ``NotInBase`` when a ``needed`` path is not the same
    file there as on the machine (device and inode: a file system mounted after the base
    was made shows its mount point's empty directory in the base), ``LabGone`` when the
    disk is gone (the lab torn down meanwhile)."""
    base = base_namespace(keep_sys)
    tree = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, data_root.encode(),
                         OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC)
    if tree < 0 and ctypes.get_errno() == errno.ENOENT:  # torn down meanwhile
        raise LabGone(errno.ENOENT, f"lab disk {data_root} is gone")
    _check(tree, f"clone lab disk {data_root}")
    try:
        _check(_libc.unshare(CLONE_FS), "unshare fs")
        _check(_libc.setns(base, CLONE_NEWNS), "enter base mount namespace")
        _check(_libc.unshare(CLONE_NEWNS), "copy base mount namespace")
        if _libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, data_root.encode(),
                         MOVE_MOUNT_F_EMPTY_PATH) != 0:
            err = ctypes.get_errno()
            kind = BaseUnusable if err in (errno.ENOSYS, errno.EPERM) else NotInBase
            raise kind(err, f"attach lab disk at {data_root}: {os.strerror(err)}")
    finally:
        os.close(tree)
    for path, ident in needed.items():
        if _identity(path) != ident:
            raise NotInBase(f"{path} is not the machine's in the base mount namespace")


def start_in_lab(netns: str, data_root: str, needed: list[str], start: Callable[[], T],
                 keep_sys: bool = False) -> T:
    """Run ``start()`` (which starts a sandbox) in a thread inside network namespace
    ``netns`` and a copy of a base mount namespace (with ``/sys`` when ``keep_sys``: a
    start that joins cgroups by path) holding the lab's disk; when the lab cannot be
    placed there (``NotInBase``: a ``needed`` path differs there, or the kernel refuses
    the base, which is then not tried again), in the machine's mount namespace."""
    global _unusable
    seen = {p: _identity(p) for p in needed}

    def work(trim: bool) -> T:
        try:
            fd = os.open(netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise LabGone(errno.ENOENT, f"network namespace {netns} is gone") from None
        try:
            if trim:
                enter_lab_namespace(data_root, seen, keep_sys)
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                # Never BaseUnusable: a namespace being removed (unmounted, not yet
                # unlinked: an empty file, EINVAL) says nothing about the base.
                err = ctypes.get_errno()
                kind = LabGone if err in (errno.EINVAL, errno.ENOENT) else OSError
                raise kind(err, f"setns {netns}: {os.strerror(err)}")
        finally:
            os.close(fd)
        return start()

    if not _unusable:
        try:
            return in_thread(lambda: work(True))
        except BaseUnusable as exc:
            with _lock:
                first, _unusable = not _unusable, True
            if first:
                log.warning("sandboxes start from the machine's mount namespace (slower "
                            "with many live labs): the base namespace is refused: %s", exc)
        except NotInBase:
            pass
    return in_thread(lambda: work(False))
