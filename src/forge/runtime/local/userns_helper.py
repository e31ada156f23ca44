"""The program that forks the makers of lab hosts' user and network namespaces.

A user namespace is only made by a process with one thread, and the runtime has many. It
used to start ``setpriv``, ``unshare`` and ``cat`` for each host (three programs loaded,
linked and ended: 3.2-3.5 ms of machine CPU per namespace pair, against 2.0-2.4 ms this
way). This program runs once per runtime process, single-threaded and on the standard
library only (``python -I -S``: nothing from the runtime's environment or packages). For
each request, a 4-byte owner uid and one descriptor (a SOCK_SEQPACKET socket), it forks a
*maker* that:

1. drops every supplementary group and becomes the owner (real, effective and saved uid
   and gid), keeping CAP_SYS_ADMIN only (a kernel that bars users from making user
   namespaces, such as Debian's with ``kernel.unprivileged_userns_clone=0``, lets it
   through);
2. makes a user namespace (owned by the owner's uid) and a network namespace in it;
3. sends ``ok <pid>`` on its socket (or ``err <errno> <what>`` and ends), then waits
   for the socket to close: the runtime writes the namespace's id maps and binds the
   network namespace at its name meanwhile (``userns_holder``), then closes its end.

The program ends when the runtime's end of its socket closes (the runtime's process
ended). Children are reaped by the kernel (SIGCHLD ignored). This module imports nothing
from ``forge``: it runs outside the runtime's interpreter.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_DUMPABLE, PR_SET_KEEPCAPS = 4, 8
CAP_SYS_ADMIN = 21
CAPABILITY_VERSION_3 = 0x20080522
REQUEST = struct.Struct("=I")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def make_namespaces(libc: ctypes.CDLL, owner: int) -> None:
    """Become ``owner`` with CAP_SYS_ADMIN alone, then make a user namespace and a network
    namespace in it (steps 1 and 2 above). Never root: 0 is refused, and so is -1 (to
    ``setresuid``, "leave unchanged")."""
    if not 0 < owner < 0xFFFFFFFF:
        raise OSError(errno.EINVAL, f"owner uid {owner} refused: a lab's uid only")
    # Not dumpable: no process of the owner's uid may read or trace it (the kernel would
    # make it so at the uid change; said here, not left to a sysctl).
    _check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "not dumpable")
    _check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keep capabilities")
    try:
        os.setgroups([])
        os.setresgid(owner, owner, owner)
        os.setresuid(owner, owner, owner)
    except OSError as exc:
        raise OSError(exc.errno, f"become uid {owner}: {exc.strerror}") from None
    if os.getresuid() != (owner,) * 3 or os.getresgid() != (owner,) * 3:
        raise OSError(errno.EPERM, f"become uid {owner}: not all ids changed")
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_SYS_ADMIN
    _check(libc.capset(ctypes.byref(header), data), "keep CAP_SYS_ADMIN")
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare")


def _maker(libc: ctypes.CDLL, owner: int, channel: socket.socket) -> None:
    """The forked child: steps 1-3; never returns."""
    code = 1
    try:
        make_namespaces(libc, owner)
        channel.send(b"ok %d" % os.getpid())
        channel.recv(1)  # until the runtime closes its end
        code = 0
    except OSError as exc:
        with contextlib.suppress(OSError):
            what = exc.strerror or str(exc)
            channel.send(b"err %d %s" % (exc.errno or 0, what.encode()[:300]))
    finally:
        os._exit(code)


def serve(control: socket.socket) -> None:
    """Answer requests on ``control`` until its other end closes."""
    libc = ctypes.CDLL(None, use_errno=True)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the makers
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(control, REQUEST.size, 1)
        except InterruptedError:
            continue
        if not msg:
            return
        if len(msg) != REQUEST.size or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        (owner,) = REQUEST.unpack(msg)
        channel = socket.socket(fileno=fds[0])
        try:
            pid = os.fork()
        except OSError as exc:
            with contextlib.suppress(OSError):
                channel.send(b"err %d fork: %s" % (exc.errno or 0, os.strerror(exc.errno or 0)
                                                   .encode()))
            channel.close()
            continue
        if pid == 0:
            control.close()
            _maker(libc, owner, channel)
        channel.close()


if __name__ == "__main__":
    serve(socket.socket(fileno=int(sys.argv[1])))
