"""Warm lab pools, the engine-neutral part: what a pre-built lab may hold, and when a
machine is short of memory.

A pooled lab is built before anyone asks for it, so it may hold only what needs no
per-scenario value: its networks, addresses, hosts, capabilities, images and limits (the
lab's *shape*). Environment, service commands and seeded files (where a template's
variables land) are left out and added when a spawn claims the lab, so a lab that nobody
claimed holds no scenario value at all. Two specs with the same shape key can share a
pool; an engine that keeps pools implements ``Runtime.warm``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from forge.runtime.base import HostSpec, LabSpec, SpecError

POOL_LAB_PREFIX = "wp-"
PSI_FILE = "/proc/pressure/memory"
MEMINFO_FILE = "/proc/meminfo"


def pool_shape(spec: LabSpec) -> LabSpec:
    """``spec`` without its lab id and without anything a scenario personalises
    (environment, service command and the ports it listens on, seeded files with their
    owners and modes) but on its ``shared`` hosts, whose service takes no scenario's value:
    a pool lab runs theirs already."""
    hosts = [h if h.shared else dataclasses.replace(h, environment={}, command=None, files={},
                                                    owners={}, modes={}, ready_ports=[])
             for h in spec.hosts]
    return dataclasses.replace(spec, lab_id="", hosts=hosts)


def shape_key(spec: LabSpec, extra: object = None) -> str:
    """A digest of ``spec``'s shape (and of ``extra``, e.g. the resolved image trees): equal
    keys mean a lab built for one can be personalised for the other."""
    shape = dataclasses.asdict(pool_shape(spec))
    blob = json.dumps([shape, extra], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def poolable(spec: LabSpec) -> str | None:
    """Why ``spec`` cannot be pooled, or None. An allowlist lab's uplink is named from its
    lab id in the machine's namespace, so it is always built fresh."""
    if spec.egress != "deny":
        return "egress allowlist labs name machine-wide objects after their lab id"
    return None


def pool_targets(pools: dict[str, tuple[LabSpec, int]]) -> dict[str, tuple[LabSpec, int]]:
    """The pools to keep, by name: the shape of each named spec and its size (pools of
    size 0 left out). SpecError (``warm_pool.<name>``) for a spec that cannot be pooled
    or a negative size."""
    targets: dict[str, tuple[LabSpec, int]] = {}
    for name, (spec, size) in pools.items():
        reason = poolable(spec)
        if reason is not None:
            raise SpecError(f"warm_pool.{name}", f"cannot be pooled: {reason}")
        if size < 0:
            raise SpecError(f"warm_pool.{name}", "size must be >= 0")
        if size:
            targets[name] = (pool_shape(spec), size)
    return targets


def personal_hosts(spec: LabSpec) -> list[HostSpec]:
    """The hosts of ``spec`` that carry per-scenario values (for messages and tests)."""
    return [h for h in spec.hosts if h.environment or h.command or h.files]


@dataclass(frozen=True)
class MemoryReading:
    """The machine's memory state: available MiB, and the PSI ``some avg10`` share of time
    tasks stalled on memory (None where the kernel has no PSI, e.g. cgroup v1 machines)."""

    available_mb: int
    stall_avg10: float | None


def read_memory(psi_file: str = PSI_FILE, meminfo_file: str = MEMINFO_FILE) -> MemoryReading:
    """Read MemAvailable and, when the kernel offers it, memory PSI (cgroup v2 kernels)."""
    available_kb = 0
    with open(meminfo_file, encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                available_kb = int(line.split()[1])
                break
    stall: float | None = None
    if os.path.exists(psi_file):
        try:
            with open(psi_file, encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("some "):
                        fields = dict(f.split("=", 1) for f in line.split()[1:])
                        stall = float(fields["avg10"])
        except (OSError, ValueError, KeyError):
            stall = None
    return MemoryReading(available_kb // 1024, stall)


STALL_HEADROOM = 4  # stalls count only below this many times the available-memory floor


def pressed(reading: MemoryReading, min_available_mb: int, max_stall_avg10: float) -> bool:
    """True when pools should shrink: too little memory available, or tasks stalling while
    memory is getting short. The machine-wide PSI also counts a lab reclaiming inside its
    own memory limit: stalls alone (a learner's lab thrashing its cgroup on a machine with
    plenty free) must not drain every pool of the node."""
    if reading.available_mb < min_available_mb:
        return True
    return (reading.stall_avg10 is not None and reading.stall_avg10 > max_stall_avg10
            and reading.available_mb < STALL_HEADROOM * min_available_mb)


REFILL_MARGIN_MB = 64  # at least: refilling starts this far above the shrink floor


def refill_floor_mb(min_available_mb: int) -> int:
    """The available memory (MiB) a refill needs: above the shrink floor by a margin of
    several labs, so that destroying one lab at the floor does not let the next pass
    build it again (a build and a teardown every second, for ever)."""
    return min_available_mb + max(REFILL_MARGIN_MB, min_available_mb // 4)


def may_refill(reading: MemoryReading, min_available_mb: int, max_stall_avg10: float) -> bool:
    """True when pools may build again: enough memory above the refill floor and, while
    memory is short enough for stalls to count (with a margin), stalls well below the
    shrink threshold (half of it). Between ``pressed`` and this, pools neither shrink nor
    fill: without the gap a stall just over the threshold destroys a lab and one just
    under builds it again, pass after pass."""
    if reading.available_mb < refill_floor_mb(min_available_mb):
        return False
    # Stalls stop counting above STALL_HEADROOM floors: refilling past that line needs a
    # margin of its own (a quarter of it), or a lab built just above the line would press
    # memory just below it, with stalls high, and be destroyed.
    return (reading.stall_avg10 is None or reading.stall_avg10 <= max_stall_avg10 / 2
            or reading.available_mb >= refill_floor_mb(STALL_HEADROOM * min_available_mb))


MemoryProbe = Callable[[], MemoryReading]

MAX_RETRY_S = 60.0


class PoolRetries:
    """When each pool may try a build again: after a failed build, a wait that doubles
    with each failure in a row (from ``base_s``, up to ``MAX_RETRY_S``), so one template
    whose labs cannot be built never starves the other pools. Not thread-safe: the pool
    calls it under its lock."""

    def __init__(self, base_s: float) -> None:
        self.base_s = base_s
        self._state: dict[str, tuple[int, float]] = {}  # pool -> (failures, next try)

    def due(self, name: str, now: float) -> bool:
        """True when pool ``name`` is not waiting out a failure."""
        return self._state.get(name, (0, 0.0))[1] <= now

    def succeeded(self, name: str) -> None:
        self._state.pop(name, None)

    def failed(self, name: str, now: float) -> None:
        failures = self._state.get(name, (0, 0.0))[0] + 1
        wait = min(MAX_RETRY_S, self.base_s * 2 ** min(failures - 1, 16))
        self._state[name] = (failures, now + wait)

    def clear(self) -> None:
        """Forget every failure (a new configuration, e.g. an image rebuilt: try at once)."""
        self._state.clear()
