"""The ready labs of a warm pool and its shared state: what the claim side and the refill
thread both read and change under one lock (``warm_pool`` explains the pools).

``PoolLabs`` holds the pools' targets, ready labs, counters and the namespace names claims
left, and destroys labs taken out of a pool; ``pool_refill.PoolRefill`` builds on it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading

from forge.runtime.base import LabSpec
from forge.runtime.local.pool_accounts import ACCOUNT_SWEEP_S
from forge.runtime.local.pool_claim import LocalRuntime, drop_names
from forge.runtime.local.rootfs import host_roots
from forge.runtime.plan import plan_lab
from forge.runtime.warm import (
    POOL_LAB_PREFIX,
    MemoryProbe,
    PoolRetries,
    read_memory,
    shape_key,
)

# One logger for the pools' three modules: operators (and tests) follow one name.
log = logging.getLogger("forge.runtime.warm_pool")


@dataclasses.dataclass
class PoolStats:
    """Counters of one runtime's pools since start."""

    claimed: int = 0
    missed: int = 0
    built: int = 0
    failed: int = 0
    shrunk: int = 0
    exposed: int = 0  # destroyed: the name service came to know their uids (pool_accounts)


class PoolLabs:
    """The state of one LocalRuntime's pools (see ``warm_pool.WarmPool`` for the options)."""

    def __init__(self, runtime: LocalRuntime, *, min_available_mb: int = 512,
                 max_stall_avg10: float = 10.0, probe: MemoryProbe = read_memory,
                 quiet_s: float = 2.0, poll_s: float = 1.0, settle_s: float = 0.1,
                 account_sweep_s: float = ACCOUNT_SWEEP_S) -> None:
        self._rt = runtime
        self.account_sweep_s = account_sweep_s
        self._next_sweep = 0.0  # monotonic time of the next ``_sweep_accounts``
        self.min_available_mb = min_available_mb
        self.max_stall_avg10 = max_stall_avg10
        self.probe = probe
        self.quiet_s = quiet_s
        self.settle_s = settle_s
        self.poll_s = poll_s
        self.stats = PoolStats()
        self._targets: dict[str, tuple[LabSpec, int]] = {}
        self._ready: dict[str, list[tuple[str, str]]] = {}  # name -> [(lab id, key)]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._shrinking = False  # shrinking since the last refill (for the log)
        self._last_miss = float("-inf")  # never: nothing holds the first fill back
        self._last_claim = float("-inf")  # (monotonic time starts near 0 at boot)
        self._old_names: list[str] = []  # namespace names claimed labs no longer use
        self._retry = PoolRetries(poll_s)
        self._generation = 0  # configure() count: a build started before it is not judged
        self._pool_keys: dict[str, str] = {}  # pool -> the shape key its labs are built for
        self._recheck = False  # a create missed with a key no pool has: recompute the keys
        self.off_reason: str | None = None  # why this node keeps no pools (None: it may)

    def _take_ready(self) -> list[str]:
        """Take every ready lab out of the pools; their ids."""
        with self._lock:
            labs = [lab for ready in self._ready.values() for lab, _key in ready]
            self._ready.clear()
        return labs

    def _drop_old_names(self) -> None:
        """Unmount the namespace names claims left (``pool_claim.drop_names``)."""
        with self._lock:
            names, self._old_names = self._old_names, []
        drop_names(self._rt.names, names)

    def status(self) -> dict[str, dict[str, int]]:
        """Per pool: ``ready`` labs and ``size`` wanted."""
        with self._lock:
            return {name: {"ready": len(self._ready.get(name, [])), "size": size}
                    for name, (_spec, size) in self._targets.items()}

    def ready_ids(self) -> list[str]:
        """Lab ids of every ready (unclaimed) pool lab."""
        with self._lock:
            return [lab for ready in self._ready.values() for lab, _key in ready]

    def _current_key(self, spec: LabSpec) -> str | None:
        """The shape key a lab of ``spec`` gets now (its image trees resolved today), or
        None when it cannot be worked out (its image not built: the build will say so)."""
        rt = self._rt
        try:
            plan = plan_lab(dataclasses.replace(spec, lab_id=POOL_LAB_PREFIX + "0" * 16))
            return shape_key(spec, host_roots(plan, rt.rootfs, rt.images, rt._resolve_image,
                                              rt.default_image))
        except Exception:
            return None

    def _pop_one(self) -> str | None:
        """Take a ready lab of the fullest pool out of it; None when none is ready."""
        with self._lock:
            pools = [ready for ready in self._ready.values() if ready]
            return max(pools, key=len).pop()[0] if pools else None

    def _destroy(self, lab_id: str) -> None:
        try:
            self._rt.destroy(lab_id)
        except Exception:
            log.exception("warm pool lab %s could not be destroyed", lab_id)

    def _destroy_all(self, lab_ids: list[str]) -> None:
        """Destroy many ready labs (a drain at stop, a pool shrunk by configuration) with
        the runtime's ``destroy_many``: their teardowns overlap (most of one is waiting
        for the kernel), so draining a pool of 50 takes about what a few labs take."""
        if not lab_ids:
            return
        try:
            self._rt.destroy_many(lab_ids)
        except Exception:
            log.exception("warm pool labs not all destroyed (%d tried)", len(lab_ids))
