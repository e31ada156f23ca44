"""The kernel-facing steps of a lab's cgroups (`forge.runtime.local.cgroups`): walking a
subtree, killing what it holds until it is empty, migrating a cgroup's processes, and
removing a directory the kernel may still call busy.

A cgroup directory is removed only once it has neither child cgroups nor processes; a
killed process stays listed until it has exited, so removal retries while it empties the
subtree, against a deadline, and reports the processes SIGKILL did not remove.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable


class SurvivorsError(OSError):
    """Processes of a cgroup subtree that SIGKILL did not remove before the deadline."""

    def __init__(self, pids: set[int], top: str) -> None:
        super().__init__(errno.EBUSY, f"processes survived SIGKILL in {top}: "
                         + " ".join(map(str, sorted(pids))))
        self.pids = pids


def walk(top: str) -> tuple[list[str], set[int]]:
    """(directories relative to ``top``, ``""`` for itself, and pids) of the cgroup
    subtree ``top``; both empty when it does not exist."""
    dirs: list[str] = []
    found: set[int] = set()
    for dirpath, _dirs, _files in os.walk(top):
        dirs.append(dirpath[len(top) + 1:])  # "" for the top itself
        with contextlib.suppress(FileNotFoundError):
            found.update(pid for pid in map(int, read_control(f"{dirpath}/cgroup.procs").split())
                         if pid > 0)  # 0: not in our pid namespace; kill(0) = our group
    return dirs, found


SLOW_PATH_GRACE_S = 0.5  # killed processes get at least this long to exit


def empty_subtree(top: str, end: float, killed: set[int]) -> None:
    """Kill every process of the cgroup subtree ``top`` (adding them to ``killed``) until
    it lists none; ``SurvivorsError`` when some are still listed at ``end`` (or, when
    reached near it, `SLOW_PATH_GRACE_S` after the first kill)."""
    end = max(end, time.monotonic() + SLOW_PATH_GRACE_S)
    left = kill_until_empty(lambda: walk(top)[1], end, killed)
    if left:
        raise SurvivorsError(left, top)


def kill_until_empty(listed: Callable[[], set[int]], end: float,
                     killed: set[int]) -> set[int]:
    """SIGKILL the pids ``listed`` gives until it gives none or ``end`` passes; adds each
    to ``killed``; returns what is still listed (empty when emptied)."""
    pause = 0.002  # killed processes take a while to exit: back off, each look walks
    while True:
        pids = listed()
        if not pids:
            return pids
        killed |= pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > end:
            return pids
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def migrate(src: str, dst: str, end: float) -> None:
    """Move every process of cgroup ``src`` (not its children) into ``dst`` until ``src``
    holds no thread (a child forked meanwhile is born in ``src`` and moved on the next
    pass); TimeoutError at ``end``. Threads, not ``cgroup.procs``, say when it is empty:
    a process whose main thread exited stays listed there after its other threads moved.
    A process that exits first is nothing to move."""
    pause = 0.002
    while True:
        for pid in map(int, read_control(f"{src}/cgroup.procs").split()):
            if pid > 0:
                with contextlib.suppress(ProcessLookupError):
                    write_control(f"{dst}/cgroup.procs", str(pid))
        if not read_control(f"{src}/cgroup.threads").split():
            return
        if time.monotonic() > end:
            raise TimeoutError(f"threads still in {src} after migrating its processes")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def rmdir_retrying(path: str, end: float, empty: Callable[[], None]) -> bool:
    """Remove one cgroup directory without child cgroups (missing is fine): True. While
    the kernel reports it busy, ``empty`` its hierarchy (processes moved there, killed
    tasks exiting) and retry until ``end``; False, at once, when it has a child cgroup."""
    while True:
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            if has_children(path):
                return False
            if time.monotonic() > end:
                raise
            empty()
            time.sleep(0.005)


def has_children(path: str) -> bool:
    """Whether cgroup directory ``path`` has a child cgroup (a directory)."""
    with contextlib.suppress(FileNotFoundError):
        return any(e.is_dir() for e in os.scandir(path))
    return False


def rmdir_if_empty(path: str) -> bool:
    """Remove a cgroup directory that has neither child cgroups nor processes: True when
    it is gone (or was never there), False when the kernel reports it busy."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


def read_control(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read()


def write_control(path: str, value: str) -> None:
    with open(path, "w", encoding="ascii") as fh:
        fh.write(value)
