"""Data handed to bubblewrap through inheritable memfds rather than its command line.

A process's command line is world-readable on the machine (/proc/PID/cmdline), so a
lab's environment values (flags, rendered variables) and its service command never go
there: they reach bubblewrap as options read from a descriptor (``--args FD``: options
separated by NUL bytes, which bwrap reads and closes before it runs anything, so the
descriptor never reaches the sandbox). The seccomp program travels the same way
(``--seccomp FD``, see ``seccomp``). The variables' names are no secret: the shells that
give a command its environment take them on their command lines (``exec_size``).
"""

from __future__ import annotations

import fcntl
import os

from forge.durable import write_all
from forge.runtime.base import RuntimeFault

# Descriptors below this are kept clear (stdio and the few pipes a sandbox start passes
# to bwrap; the init's join script moves its own pipes onto descriptors 3 and 4, which
# would silently replace data that happened to get one of those numbers).
FIRST_FREE_FD = 10
# Far above what a valid lab gives (see templates.exec_size: a host's environment and
# command together must fit the kernel's exec limits).
MAX_OPTIONS_BYTES = 8 << 20


def data_fd(name: str, data: bytes) -> int:
    """A new (inheritable) memfd holding ``data``, positioned at 0, numbered at least
    ``FIRST_FREE_FD``; the caller passes it to bubblewrap and closes it once bubblewrap
    started."""
    fd = os.memfd_create(name, 0)
    try:
        if fd < FIRST_FREE_FD:
            low, fd = fd, fcntl.fcntl(fd, fcntl.F_DUPFD, FIRST_FREE_FD)
            os.close(low)
        write_all(fd, data, sync=False)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def options_fd(options: list[str]) -> int:
    """A memfd for bubblewrap's ``--args FD`` holding ``options`` (see ``data_fd``)."""
    if any("\x00" in opt for opt in options):
        raise RuntimeFault("a sandbox option holds a NUL byte")
    data = b"".join(opt.encode("utf-8", "surrogateescape") + b"\x00" for opt in options)
    if len(data) > MAX_OPTIONS_BYTES:
        raise RuntimeFault(f"sandbox options are {len(data)} bytes; at most "
                           f"{MAX_OPTIONS_BYTES}")
    return data_fd("forge-bwrap-args", data)
