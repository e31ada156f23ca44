"""Exec prefix that makes a child die with its supervisor, even on `kill -9` of it.

`python -m forge.stack.deathsig PARENT_PID -- PROGRAM ARGS…` asks the kernel for SIGKILL
when its parent exits (PR_SET_PDEATHSIG), checks that the parent is still PARENT_PID (it may
have died between fork and prctl), then execs PROGRAM in the same process, so the pid the
supervisor holds is the program's pid. A prefix program rather than a `preexec_fn`, because
`preexec_fn` is unsafe in a process with threads.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
MODULE = "forge.stack.deathsig"


def exec_prefix(parent_pid: int | None = None) -> list[str]:
    """The argv prefix binding a child's life to `parent_pid` (default: this process)."""
    pid = os.getpid() if parent_pid is None else parent_pid
    return [sys.executable, "-m", MODULE, str(pid), "--"]


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), ctypes.c_ulong(0),
                  ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


def main(argv: list[str]) -> int:
    """Arm the parent-death signal and exec the program; 2 on a usage error."""
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        print(f"usage: python -m {MODULE} PARENT_PID -- PROGRAM [ARGS…]", file=sys.stderr)
        return 2
    set_parent_death_signal()
    if os.getppid() != int(argv[0]):
        return 1  # the supervisor is already gone: start nothing
    try:
        os.execvp(argv[2], argv[2:])  # noqa: S606 - argv from our supervisor, no shell
    except OSError as exc:
        print(f"{MODULE}: cannot run {argv[2]!r}: {exc.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
