"""Starting lab sandboxes cheaply: absolute tool paths and a small mount namespace.

A sandbox's bubblewrap reads ``/proc/self/mountinfo`` for every bind it makes, so its
cost grew with every live lab's mounts (four ``/run/netns`` mounts and a lab disk per
lab) when it started in the machine's mount namespace. Sandboxes now start from a copy
of one *base* namespace made once per process: the machine's mounts without
``/run/netns`` and without any lab's disk. Each spawn clones just its own lab's disk
(``open_tree``) into a fresh copy of the base and starts bwrap there, so the mount table
bwrap reads is the same size at 0 and at 1,000 live labs. The machine's namespace is
never changed. Tools are run by absolute path, resolved once: no PATH search.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from forge.runtime.local.netns import NETNS_DIR, netns_path, run_in_thread, tool

__all__ = ["base_namespace", "enter_lab_namespace", "log_tail", "popen_clean", "read_until",
           "spawn_in_netns", "stop_sandbox", "tool", "trim_mounts"]

T = TypeVar("T")
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


LAB_DISK_SOURCE = "forge-lab"  # disk.mount_lab_disk's tmpfs source name
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # the same number on every architecture
OPEN_TREE_CLONE, AT_RECURSIVE, AT_FDCWD = 1, 0x8000, -100
MOVE_MOUNT_F_EMPTY_PATH, CLONE_FS = 4, 0x200
_base_lock = threading.Lock()
_base_fd = -1


def _lab_disks(mountinfo: str) -> list[str]:
    """Mount points of every lab disk in a mountinfo text, deepest first."""
    points = []
    for line in mountinfo.splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[1:2] == [LAB_DISK_SOURCE]:
            points.append(fields[0].split()[4].replace("\\040", " "))
    return sorted(points, key=len, reverse=True)


def base_namespace() -> int:
    """An fd of the process's base mount namespace (made on first use): the machine's
    mounts, private, minus ``/run/netns`` and every lab disk."""
    global _base_fd
    with _base_lock:
        if _base_fd < 0:

            def make() -> int:
                trim_mounts()
                with open("/proc/thread-self/mountinfo", encoding="utf-8") as fh:
                    disks = _lab_disks(fh.read())
                for point in disks:
                    _libc.umount2(point.encode(), MNT_DETACH)  # a parent's may have gone
                return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)

            _base_fd = run_in_thread(make)
        return _base_fd


def enter_lab_namespace(data_root: str) -> None:
    """Move the calling (throw-away) thread into a fresh copy of the base namespace
    holding the lab's own disk at ``data_root`` (cloned from the machine's namespace,
    with the image overlays mounted inside it)."""
    tree = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, data_root.encode(),
                         OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC)
    if tree < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"clone lab disk {data_root}: {os.strerror(err)}")
    try:
        _check(_libc.unshare(CLONE_FS), "unshare fs")
        _check(_libc.setns(base_namespace(), CLONE_NEWNS), "enter base mount namespace")
        _check(_libc.unshare(CLONE_NEWNS), "copy base mount namespace")
        if _libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, data_root.encode(),
                         MOVE_MOUNT_F_EMPTY_PATH) != 0:
            err = ctypes.get_errno()
            raise _NotInBase(err, f"attach lab disk {data_root}: {os.strerror(err)}")
    finally:
        os.close(tree)


def trim_mounts() -> None:
    """Give the calling thread a private mount namespace without ``/run/netns``.

    Mounts are made private first, so the unmount never propagates back to the machine.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare mount namespace")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    if _libc.umount2(NETNS_DIR.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL: not a mount point; ENOENT: no such directory
            raise OSError(err, f"hide {NETNS_DIR}: {os.strerror(err)}")


def popen_clean(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` from a fresh thread with no signal blocked, so the process
    starts with an empty signal mask whatever the caller's thread blocks (ignored signals
    are reset further down the chain, by ``env --default-signal``)."""

    def start() -> subprocess.Popen[bytes]:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        return subprocess.Popen(argv, **kwargs)

    return run_in_thread(start)


def spawn_in_netns(name: str, fn: Callable[[], T], data_root: str | None = None) -> T:
    """Run ``fn()`` (which starts a process) in a worker thread inside network namespace
    ``name`` and a small mount namespace: the base plus the lab disk at ``data_root``
    (``enter_lab_namespace``), or without one a private copy of the machine's namespace
    minus ``/run/netns`` (``trim_mounts``)."""

    def work(root: str | None) -> T:
        fd = os.open(netns_path(name), os.O_RDONLY)
        try:
            if root is None:
                trim_mounts()
            else:
                enter_lab_namespace(root)
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
        finally:
            os.close(fd)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # the sandbox inherits this mask
        return fn()

    if data_root is not None:
        try:
            return run_in_thread(lambda: work(data_root))
        except _NotInBase:
            pass  # e.g. the state directory is on a file system mounted after the base
    return run_in_thread(lambda: work(None))


class _NotInBase(OSError):
    """The lab's disk cannot be placed in a copy of the base namespace."""


def stop_sandbox(proc: subprocess.Popen[bytes], pid: int) -> None:
    """Kill a sandbox not (yet) in its cgroup: its init ``pid`` (pid 1 of its namespace,
    so the kernel kills the rest) while bwrap still waits for it, then bwrap."""
    if pid > 0 and proc.poll() is None:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            if parent == proc.pid:  # still bwrap's child: not a recycled pid
                os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)  # bwrap reaps the init, then ends
        except (OSError, ValueError, IndexError):
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def log_tail(path: str, size: int = 400) -> str:
    """The end of a service log, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - size))
            return fh.read().decode("utf-8", "replace").strip() or "(no output)"
    except OSError:
        return "(no log)"


def read_until(fd: int, deadline: float, end: bytes) -> bytes:
    """Read from ``fd`` until ``end`` was seen (returns what was read), EOF or deadline."""
    buf = b""
    while end not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("timed out")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf
