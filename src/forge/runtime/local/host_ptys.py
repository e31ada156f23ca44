"""Each host's own pseudo-terminal file system, with a cap on how many it may hold.

bubblewrap's ``--dev`` gives a sandbox a new devpts instance with no ``max``: the only
bound left is the kernel's, shared by every lab (``kernel.pty.max`` less the reserve of
the machine's own instance, 3,072 here), so one learner opening ``/dev/ptmx`` until
refused left every other lab without a terminal (``script``, ``sshd``, ``tmux``). Each
host gets an instance of its own, mounted as root in its data directory on the lab's
disk (so it goes with that disk and is cloned with it into the sandbox's starting
namespace) and bound over the sandbox's ``/dev/pts``. No lab process holds a capability
over the sandbox's mounts, so none can unmount it to reach the uncapped one below.
The browser terminal's pty is opened on the machine (``tty``), not here.
"""

from __future__ import annotations

import ctypes
import os

MS_NOSUID, MS_NOEXEC = 2, 8
PTYS_DIR = ".pts"
MAX_PTYS_PER_HOST = 32

_libc = ctypes.CDLL(None, use_errno=True)


def host_ptys_path(data_dir: str) -> str:
    """Where a host's devpts instance is mounted (under its data dir, bound nowhere else)."""
    return os.path.join(data_dir, PTYS_DIR)


def mount_host_ptys(data_dir: str) -> str:
    """Mount the host's capped devpts instance (once: a pool lab's is kept); its path."""
    path = host_ptys_path(data_dir)
    if os.path.ismount(path):
        return path
    os.makedirs(path, mode=0o755, exist_ok=True)
    options = f"newinstance,ptmxmode=0666,mode=620,max={MAX_PTYS_PER_HOST}".encode()
    if _libc.mount(b"forge-pts", path.encode(), b"devpts", MS_NOSUID | MS_NOEXEC,
                   options) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount the host's pseudo-terminals at {path}: {os.strerror(err)}")
    return path


def host_ptys_args(data_dir: str) -> list[str]:
    """bwrap arguments putting the host's capped instance over the ``/dev/pts`` that
    ``--dev`` made (they follow it)."""
    return ["--dev-bind", host_ptys_path(data_dir), "/dev/pts"]
