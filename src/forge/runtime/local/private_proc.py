"""A private procfs instance, to write a new network namespace's sysctls through.

Every live network namespace has its own ``ipv4`` (and ``ipv6``) directory under the
machine's ``/proc/sys/net``, and the dentries of all of them sit in one hash chain (same
parent, same name). The first lookup in a new namespace walks that whole chain, taking
the sysctl lock for each entry (``proc_sys_compare``): 10 us with no lab alive, 1.24 ms
with 800 namespaces (200 labs), twice per namespace, four namespaces per lab, so a
create's system time grew from 17 to 31 ms at 200 live labs. A procfs mounted with the
new mount API (``fsopen``/``fsmount``, Linux 5.2; its own superblock since 5.8) has a
dentry tree of its own, never attached to any mount namespace and gone when its fd is
closed: the same lookup there costs about 15 us at any number of namespaces, and the
private instance about 110 us to make and drop. ``/proc/sys/net`` follows the network
namespace of the thread that opens through it, whichever procfs instance it is.

Where the kernel refuses the new mount API (older kernels, a seccomp policy), the
machine's ``/proc`` is used, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import threading
from collections.abc import Iterator

# The numbers every architecture shares (the calls came in Linux 5.2), but alpha, ia64 and the MIPS
# ABIs (offset tables): there the private procfs is not tried.
SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT = 430, 431, 432
OFFSET_ARCHES = ("alpha", "ia64", "mips")
FSOPEN_CLOEXEC = 0x1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
# A kernel without the call, or a policy (seccomp, LSM) refusing it; anything else is a
# fault and raises.
REFUSED = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES})

log = logging.getLogger("forge.runtime.private_proc")
_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_refused = platform.machine().startswith(OFFSET_ARCHES)


def _fail(what: str) -> OSError:
    err = ctypes.get_errno()
    return OSError(err, f"{what}: {os.strerror(err)}")


def _mount_proc() -> int:
    """A detached procfs mount's fd (raises OSError with the kernel's errno)."""
    fs = _libc.syscall(SYS_FSOPEN, b"proc", FSOPEN_CLOEXEC)
    if fs < 0:
        raise _fail("fsopen proc")
    try:
        if _libc.syscall(SYS_FSCONFIG, fs, FSCONFIG_CMD_CREATE, None, None, 0) != 0:
            raise _fail("fsconfig create proc")
        mnt = _libc.syscall(SYS_FSMOUNT, fs, FSMOUNT_CLOEXEC, 0)
        if mnt < 0:
            raise _fail("fsmount proc")
        return int(mnt)
    finally:
        os.close(fs)


@contextlib.contextmanager
def proc_root() -> Iterator[int]:
    """A directory fd of a private procfs instance's root (closed on exit), or of the
    machine's ``/proc`` once the kernel has refused a private one."""
    global _refused
    fd = -1
    if not _refused:
        try:
            fd = _mount_proc()
        except OSError as exc:
            if exc.errno not in REFUSED:
                raise
            with _lock:
                first, _refused = not _refused, True
            if first:
                log.warning("sysctls are written through the machine's /proc (slower with "
                            "many live labs): a private procfs is refused: %s", exc)
    if fd < 0:
        fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
