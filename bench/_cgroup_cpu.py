"""CPU of a bench's measured processes from a cgroup made for them (needs root).

The machine figure (/proc/stat less an idle baseline) counts every process on the machine,
so on a shared machine it measures the other work too (recorded "not measured" when busy).
A cgroup counts only the processes put in it and every child they start afterwards: on
cgroup v1 a ``cpuacct`` group (``cpuacct.usage``), on v2 a group's ``cpu.stat``
(``usage_usec``).

What it cannot count: kernel threads, which belong to no cgroup. The kernel frees a
destroyed lab's network namespaces later in its ``netns`` workqueue (``cleanup_net``), so
that teardown is outside the figure, as is softirq work the kernel charges to whichever
task it interrupts. Lab processes: the local runtime moves them into the lab's own cgroups
under v2 and, on v1, in the ``cpu`` hierarchy; when ``cpuacct`` is a hierarchy of its own
(not co-mounted with ``cpu``) they stay in ours and are counted (``includes_labs``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_path(hierarchy: str) -> str:
    """This process's cgroup path in ``hierarchy`` ("cpuacct" on v1, "" for v2)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (hierarchy and hierarchy in controllers.split(",")) or \
                (not hierarchy and controllers == ""):
            return path
    return "/"


class CpuCgroup:
    """A cgroup ``<name>-<pid>`` counting CPU of the processes moved in and their children."""

    def __init__(self, name: str) -> None:
        cpuacct = ROOT / "cpuacct"
        if (cpuacct / "cpuacct.usage").exists():
            self.version, base, self._home = 1, cpuacct, _own_path("cpuacct")
            # cpu and cpuacct co-mounted: the runtime's lab cgroups take the labs out of ours.
            self.includes_labs = (ROOT / "cpu").resolve() != cpuacct.resolve()
        else:
            unified = ROOT if (ROOT / "cgroup.controllers").exists() else ROOT / "unified"
            if not (unified / "cgroup.controllers").exists():
                raise RuntimeError("neither a cgroup v1 cpuacct nor a cgroup v2 hierarchy")
            self.version, base, self._home = 2, unified, _own_path("")
            self.includes_labs = False
        self._base = base
        # This process's own group: another bench's (same name) is never shared or closed.
        self.path = base / f"{name}-{os.getpid()}"
        self.path.mkdir()

    def usage_s(self) -> float:
        """CPU seconds (user and system) charged to the group so far."""
        if self.version == 1:
            return int((self.path / "cpuacct.usage").read_text()) / 1e9
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
        raise RuntimeError(f"no usage_usec in {self.path}/cpu.stat")

    def enter(self, pid: int | None = None) -> None:
        """Move ``pid`` (default: this process, every thread) into the group."""
        (self.path / "cgroup.procs").write_text(str(pid or os.getpid()))

    def leave(self, pid: int | None = None) -> None:
        """Move ``pid`` (default: this process) back where this process came from; its
        children started meanwhile stay in the group."""
        home = self._base / self._home.lstrip("/")
        (home / "cgroup.procs").write_text(str(pid or os.getpid()))

    def close(self) -> None:
        """Move whatever is left back home and remove the group."""
        if not self.path.exists():
            return
        for pid in (self.path / "cgroup.procs").read_text().split():
            try:
                self.leave(int(pid))
            except OSError:
                continue  # gone meanwhile
        with contextlib.suppress(OSError):  # a child still in it: left for the operator
            self.path.rmdir()

    def includes(self) -> str:
        """What the figure counts, said in a result line."""
        which = "cpuacct.usage" if self.version == 1 else "cpu.stat usage_usec"
        labs = ("the labs' processes too" if self.includes_labs
                else "not the labs' processes (in the labs' own cgroups)")
        return (f"cgroup v{self.version} {which}: the measured processes and their "
                f"children, {labs}; not kernel threads (the kernel's namespace teardown)")
