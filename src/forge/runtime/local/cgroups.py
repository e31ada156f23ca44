"""Per-lab and per-host cgroups with memory, cpu and pids limits (cgroup v1 and v2).

Layout (v2 shown; v1 repeats it under each controller hierarchy, but for the one leaf
noted below):
``<root>/<lab cgroup>/<host>/<leaf>`` where the lab and host levels carry limits (the CPU
quota the lab level alone: a host's would equal it) and the leaves hold processes
(``init`` for the host's sandbox, one per exec/tty), which also satisfies v2's "no
processes in inner nodes" rule. Killing every pid listed in a subtree
is the teardown: it also catches processes that left their session or pid namespace.

Under v1 the ``pids`` hierarchy is the one that is read: a process joins it first (the
order of ``procs_files``), a child is born in its parent's cgroups, a lab process cannot
move itself, and a subtree is created there first and removed there last. So every
process and every directory of a lab's v1 cgroups is found in its pids subtree, with a
third of the reads of all three hierarchies (the cost of a teardown was mostly these).

Memory is limited and accounted at the lab level only: a host's limits are its lab's, so a
memory cgroup per host (or per exec and tty leaf) would bound nothing more, and each one
costs its removal the kernel's walk of every memory-aware cache list of the machine
(``memcg_reparent_list_lrus``, one list per mounted filesystem: 26 per live lab here),
under the locks the next create's mkdir and mounts wait for. At 200 live labs that walk
was the largest part of the extra time a create took. So under v1 the memory hierarchy
holds the lab's cgroup alone (``paths``), where every process of the lab sits
(``procs_files``); under v2 the lab's cgroup enables only pids and cpu for its children,
whose processes are then charged to it. The cpu hierarchy keeps every level and leaf:
v1's cpu controller weighs each task of an inner node against the child cgroups, so a
service with many runnable threads in the host's cgroup would starve the grader's, exec
and tty leaves. Exec and tty leaves are removed on their own by ``seal``.

That fast path assumes nothing else migrates lab processes. A host root agent may move
one hierarchy at a time (systemd re-migrating a unit's processes when a controller mask
changes, cgclassify/cgrulesengd), leaving a process in a lab's memory/cpu cgroups but a
pids cgroup elsewhere (or a lab's pids tree gone while another still holds it). ``remove``
catches that slow path: when a directory of another hierarchy is busy, it kills what that
hierarchy's subtree lists and returns those pids.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from dataclasses import dataclass

from forge.runtime.base import Limits
from forge.runtime.local.cgroup_tree import (
    empty_subtree,
    kill_until_empty,
    migrate,
    read_control,
    rmdir_if_empty,
    rmdir_retrying,
    walk,
    write_control,
)

CGROUP_ROOT = "/sys/fs/cgroup"
V1_CONTROLLERS = ("pids", "memory", "cpu")  # pids first: the one read (module docstring)
# v1 hierarchies holding only a lab's top-level cgroup (module docstring).
V1_TOP_ONLY = frozenset({"memory"})
LAB_CONTROLLERS = ("memory", "pids", "cpu")  # v2: enabled for labs (the root's children)
INNER_CONTROLLERS = ("pids", "cpu")  # v2: enabled for a lab's hosts and their leaves
CPU_PERIOD_US = 100_000
OPTIONAL_V2 = frozenset({"memory.swap.max"})  # absent on a kernel without swap accounting


def v2_limit_values(limits: Limits) -> dict[str, str]:
    """What a lab's or host's v2 cgroup files hold for ``limits`` (``_limit`` writes them,
    ``move`` copies them)."""
    quota = max(1000, int(limits.cpu * CPU_PERIOD_US))
    return {"memory.max": str(limits.memory_mb * 1024 * 1024), "memory.swap.max": "0",
            "pids.max": str(limits.pids), "cpu.max": f"{quota} {CPU_PERIOD_US}"}


def v1_tcp_limit(limits: Limits) -> int:
    """Bytes of socket buffers a lab may hold under cgroup v1: a quarter of its memory
    (at least 4 MiB), beside the memory limit, so a lab holds at most 1.25 times it."""
    return max(4 << 20, limits.memory_mb * 1024 * 1024 // 4)


LIMIT_FILES_V2 = tuple(v2_limit_values(Limits()))
INNER_LIMIT_FILES_V2 = frozenset({"pids.max"})  # what a host's v2 cgroup holds (``_limit``)


def detect_version(root: str = CGROUP_ROOT) -> int:
    """2 when ``root`` is a cgroup2 mount, else 1 (v1 or hybrid with v1 controllers)."""
    return 2 if os.path.exists(os.path.join(root, "cgroup.controllers")) else 1


@dataclass(frozen=True)
class Cgroups:
    """Cgroup operations under a fixed root, for one cgroup version."""

    version: int
    root: str = CGROUP_ROOT

    @classmethod
    def detect(cls, root: str = CGROUP_ROOT) -> Cgroups:
        """Build for whatever version is mounted at ``root``."""
        return cls(detect_version(root), root)

    def problems(self) -> list[str]:
        """What is missing for this engine (empty when usable)."""
        if self.version == 2:
            ctrl = read_control(os.path.join(self.root, "cgroup.controllers")).split()
            missing = [c for c in ("memory", "pids", "cpu") if c not in ctrl]
            return [f"cgroup v2 controller {c!r} not available" for c in missing]
        return [
            f"cgroup v1 controller {c!r} not mounted at {self.root}/{c}"
            for c in V1_CONTROLLERS
            if not os.path.isdir(os.path.join(self.root, c))
        ]

    def bases(self) -> list[str]:
        """Hierarchy roots in use (one for v2, one per controller for v1, the pids one
        first)."""
        if self.version == 2:
            return [self.root]
        return [os.path.join(self.root, c) for c in V1_CONTROLLERS]

    def paths(self, *parts: str) -> list[str]:
        """The directory of cgroup ``parts`` in every hierarchy that has it: under v1 the
        memory hierarchy has the top level alone (module docstring)."""
        if self.version == 2:
            return [os.path.join(self.root, *parts)]
        return [os.path.join(self.root, c, *parts) for c in V1_CONTROLLERS
                if len(parts) == 1 or c not in V1_TOP_ONLY]

    def list_top(self) -> list[str]:
        """Names of top-level cgroups (in any hierarchy in use)."""
        names: set[str] = set()
        for base in self.bases():
            with contextlib.suppress(FileNotFoundError):
                names.update(e.name for e in os.scandir(base) if e.is_dir())
        return sorted(names)

    def create(self, parts: tuple[str, ...], limits: Limits | None) -> None:
        """Create cgroup ``parts`` (parents must exist) and apply ``limits`` if given."""
        if self.version == 2:
            self._enable_controllers(os.path.join(self.root, *parts[:-1]),
                                     LAB_CONTROLLERS if len(parts) == 1 else INNER_CONTROLLERS)
        for path in self.paths(*parts):
            os.mkdir(path, 0o755)
        if limits is not None:
            self._limit(parts, limits)

    def _enable_controllers(self, path: str, controllers: tuple[str, ...]) -> None:
        """Enable ``controllers`` for the children of v2 cgroup ``path``."""
        _enable_controllers(path, controllers)

    def _limit(self, parts: tuple[str, ...], limits: Limits) -> None:
        mem = limits.memory_mb * 1024 * 1024
        quota = max(1000, int(limits.cpu * CPU_PERIOD_US))
        # The CPU quota and memory only on a top-level (lab) cgroup: a host's would equal
        # its lab's, which bounds it anyway; each write of a quota walks every cgroup of the
        # machine (tg_set_bandwidth: 1.6 ms of a create's 4 writes at 200 live labs), and
        # memory has no cgroup below a lab (module docstring).
        top = len(parts) == 1
        if self.version == 2:
            path = os.path.join(self.root, *parts)
            for name, value in v2_limit_values(limits).items():
                if name not in INNER_LIMIT_FILES_V2 and not top:
                    continue
                if name in OPTIONAL_V2:
                    _write_optional(os.path.join(path, name), value)
                else:
                    write_control(os.path.join(path, name), value)
            return
        write_control(os.path.join(self.root, "pids", *parts, "pids.max"), str(limits.pids))
        if top:
            memory = os.path.join(self.root, "memory", *parts)
            write_control(os.path.join(memory, "memory.limit_in_bytes"), str(mem))
            _write_optional(os.path.join(memory, "memory.memsw.limit_in_bytes"), str(mem))
            # v1 charges socket buffers to a counter of their own, unlimited unless set (v2
            # charges them to memory.max): without it one lab queuing data on its own TCP
            # connections could take the machine's whole tcp_mem, and every connection of
            # the machine (services, other labs) with it.
            _write_optional(os.path.join(memory, "memory.kmem.tcp.limit_in_bytes"),
                            str(v1_tcp_limit(limits)))
            # Only the quota: the period of a cgroup just made is the kernel's fixed
            # default, CPU_PERIOD_US (tests/runtime/test_limits.py checks it).
            write_control(os.path.join(self.root, "cpu", *parts, "cpu.cfs_quota_us"), str(quota))

    def move(self, old: str, new: str, deadline_s: float = 5.0) -> None:
        """Give the top-level cgroup subtree ``old`` (a lab's, with its processes) the
        name ``new`` in every hierarchy; a hierarchy without ``old`` is skipped. v1 renames
        it. cgroup v2 refuses a rename (EPERM), so there ``new`` is made like ``old``
        (directories, enabled controllers, limits), every process is migrated to its
        counterpart and ``old`` removed. Memory already charged stays with ``old`` (v2
        moves no charges): what a pool lab used while it waited, a few MiB at most."""
        if self.version != 2:
            for base in self.bases():
                with contextlib.suppress(FileNotFoundError):
                    os.rename(os.path.join(base, old), os.path.join(base, new))
            return
        src, dst = os.path.join(self.root, old), os.path.join(self.root, new)
        dirs = walk(src)[0]
        if not dirs:
            return
        for rel in dirs:  # top-down: os.walk lists a directory before its children
            made = os.path.join(dst, rel) if rel else dst
            os.mkdir(made, 0o755)
            was = os.path.join(src, rel) if rel else src
            for name in LIMIT_FILES_V2:
                if name == "cpu.max" and rel:  # the lab's alone (``_limit``)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    write_control(os.path.join(made, name),
                                  read_control(os.path.join(was, name)).strip())
            on = read_control(os.path.join(was, "cgroup.subtree_control")).split()
            if on:
                write_control(os.path.join(made, "cgroup.subtree_control"),
                              " ".join(f"+{c}" for c in on))
        end = time.monotonic() + deadline_s
        for rel in sorted(dirs, key=len, reverse=True):
            migrate(os.path.join(src, rel) if rel else src,
                    os.path.join(dst, rel) if rel else dst, end)
            if not rmdir_retrying(os.path.join(src, rel) if rel else src, end, lambda: None):
                raise OSError(errno.EBUSY, f"a cgroup was made in {src} while it moved")

    def procs_files(self, *parts: str) -> list[str]:
        """The ``cgroup.procs`` files a process must write its pid to, to join ``parts``
        (the pids hierarchy's first; under v1 the lab's own in the memory hierarchy)."""
        if self.version == 2:
            return [os.path.join(self.root, *parts, "cgroup.procs")]
        return [os.path.join(self.root, c, *(parts[:1] if c in V1_TOP_ONLY else parts),
                             "cgroup.procs") for c in V1_CONTROLLERS]

    def pids(self, *parts: str) -> set[int]:
        """Every pid in the subtree ``parts`` (read in the first hierarchy, see above)."""
        return self._subtree(*parts)[1]

    def _subtree(self, *parts: str) -> tuple[list[str], set[int]]:
        """(directories relative to ``parts``, ``""`` for itself, and pids) of the subtree
        ``parts`` in the first hierarchy; both empty when it does not exist there."""
        return walk(self.paths(*parts)[0])

    def signal_all(self, *parts: str) -> None:
        """SIGKILL every process in subtree ``parts`` once, without waiting for them."""
        if self._kill_files(*parts):
            return
        for pid in self.pids(*parts):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _kill_files(self, *parts: str) -> bool:
        """Write ``cgroup.kill`` of subtree ``parts`` (v2, kernel >= 5.14); False when
        that is not available or failed, so the caller kills each pid instead."""
        if self.version != 2:
            return False
        done = True
        for top in self.paths(*parts):
            kill_file = os.path.join(top, "cgroup.kill")
            if not os.path.exists(kill_file):
                done = False
                continue
            try:
                write_control(kill_file, "1")
            except OSError:
                done = False
        return done

    def kill(self, *parts: str, deadline_s: float = 5.0) -> bool:
        """SIGKILL every process in subtree ``parts`` until it is empty; True if emptied.
        On v1 this reads the pids hierarchy only (the fast path, module docstring)."""
        self._kill_files(*parts)
        return not kill_until_empty(lambda: self.pids(*parts),
                                    time.monotonic() + deadline_s, set())

    def remove(self, *parts: str, deadline_s: float = 5.0) -> set[int]:
        """Remove subtree ``parts`` bottom-up (killing what is left); missing is fine.
        Returns the pids found only by the slow path (module docstring) and killed.

        The directories below ``parts`` are those listed in the first hierarchy, which
        is done last (so after a crash midway it still lists them); whatever else a
        hierarchy holds (a tree made by other means) is found by walking what is left.
        A directory still busy gets its hierarchy's subtree emptied (SIGKILL, re-read
        until empty) before the next try; raises ``SurvivorsError`` if that fails.

        This is a lab teardown's one walk of its cgroups: a hierarchy's top is walked again
        only when its removal finds it busy (a listing there reads every control file's
        entry, ~30 per directory in the memory hierarchy)."""
        dirs, pids = self._subtree(*parts)
        if pids:
            self.kill(*parts, deadline_s=deadline_s)
        end = time.monotonic() + deadline_s
        below = sorted((d for d in dirs if d), key=len, reverse=True)
        killed: set[int] = set()
        for top in reversed(self.paths(*parts)):
            empty = functools.partial(empty_subtree, top, end, killed)
            for rel in below:
                if not rmdir_retrying(os.path.join(top, rel), end, empty):
                    break  # it has a child the listing did not show: walk instead
            if rmdir_if_empty(top):
                continue
            # What the first hierarchy does not list: e.g. a lab of an earlier release,
            # which had memory cgroups below its top (an exec leaf a seal no longer sees).
            for path in sorted((d for d, _s, _f in os.walk(top)), key=len, reverse=True):
                if not rmdir_retrying(path, end, empty):
                    raise OSError(errno.EBUSY, f"a cgroup was made in {path} while "
                                  "its lab was being removed")
        return killed


def _write_optional(path: str, value: str) -> None:
    if os.path.exists(path):
        with contextlib.suppress(OSError):
            write_control(path, value)


def _enable_controllers(path: str, controllers: tuple[str, ...]) -> None:
    control = os.path.join(path, "cgroup.subtree_control")
    enabled = read_control(control).split()
    wanted = [f"+{c}" for c in controllers if c not in enabled]
    if wanted:
        write_control(control, " ".join(wanted))
