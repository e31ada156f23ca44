"""The background refill of warm pools: one niced thread builds labs until each pool is
at its size and, under memory pressure, destroys ready labs one by one instead.

It waits while creates miss the pools and for a moment after each claim (spawns come
first), backs off a pool whose builds fail (``warm.PoolRetries``), drops ready labs built
for an image since rebuilt and those whose uids the name service came to know.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import threading
import time

from forge.runtime.base import BuildsStopped
from forge.runtime.local.pool_accounts import known_labs
from forge.runtime.local.pool_labs import PoolLabs, log
from forge.runtime.local.rootfs import host_roots
from forge.runtime.plan import plan_lab
from forge.runtime.warm import (
    POOL_LAB_PREFIX,
    STALL_HEADROOM,
    MemoryReading,
    may_refill,
    pressed,
    refill_floor_mb,
    shape_key,
)


class PoolRefill(PoolLabs):
    """The refill thread's side of the pools (``_run`` is its body)."""

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # this thread and the sandboxes it starts
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while not self._stopping.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            # Once claims settle, whatever else holds the refill back (memory pressure,
            # fresh builds): not while a claim binds its names (an unmount takes the same
            # mount lock), never for longer, as they keep ended labs' namespaces alive.
            if self._last_claim + self.settle_s <= time.monotonic():
                self._drop_old_names()
            if self._recheck:
                self._drop_stale()
            self._sweep_accounts()
            reading = self._reading()
            if reading is not None and pressed(reading, self.min_available_mb,
                                               self.max_stall_avg10):
                self._shrink_one(reading)
                continue
            quiet = max(self._last_miss + self.quiet_s,
                        self._last_claim + self.settle_s) - time.monotonic()
            if quiet > 0:
                self._stopping.wait(min(quiet, self.poll_s))
                self._wake.set()
                continue
            name = self._short_pool()
            if name is not None and reading is not None and not may_refill(
                    reading, self.min_available_mb, self.max_stall_avg10):
                continue  # between shrinking and refilling: neither (no flapping)
            if name is not None:
                if self._shrinking:
                    self._shrinking = False
                    log.info("memory available again (%d MiB): refilling warm pools",
                             reading.available_mb if reading is not None else -1)
                with self._lock:
                    generation = self._generation
                built = self._build_one(name)
                self._note_build(name, built, generation)
                if built or self._short_pool() is not None:
                    self._wake.set()

    def _reading(self) -> MemoryReading | None:
        """The machine's memory now; None when it cannot be read (nothing is shrunk or
        held back for a probe that fails)."""
        try:
            return self.probe()
        except (OSError, ValueError):
            return None

    def _short_pool(self) -> str | None:
        """The first pool below its size that is not waiting to retry a failed build."""
        now = time.monotonic()
        with self._lock:
            for name, (_spec, size) in self._targets.items():
                if (len(self._ready.get(name, [])) < size
                        and self._retry.due(name, now)):
                    return name
        return None

    def _note_build(self, name: str, built: bool | None, generation: int) -> None:
        """Clear a pool's failures after a build, or put its next try off (doubling) after
        a failed one. A lab built but not kept (its pool gone, the pool stopping) and a
        build started under an earlier configuration (an image since rebuilt) say nothing
        about the pool as it is now."""
        with self._lock:
            if built is None or generation != self._generation:
                return
            if built:
                self._retry.succeeded(name)
            else:
                self._retry.failed(name, time.monotonic())

    def _build_one(self, name: str) -> bool | None:
        """Build one lab for pool ``name``: True when kept, False when the build failed,
        None when there was nothing to build or the lab was not kept."""
        with self._lock:
            spec = self._targets[name][0] if name in self._targets else None
        if spec is None:
            return None
        lab_id = POOL_LAB_PREFIX + secrets.token_hex(8)
        spec = dataclasses.replace(spec, lab_id=lab_id)
        try:
            plan = plan_lab(spec)
            rt = self._rt
            key = shape_key(spec, host_roots(plan, rt.rootfs, rt.images, rt._resolve_image,
                                             rt.default_image))
            rt.create(spec)
        except BuildsStopped:  # shutting down: not a failure, and refilling ends here
            self._stopping.set()
            return None
        except Exception:
            log.exception("warm pool %s: building a lab failed", name)
            with self._lock:
                self.stats.failed += 1
            return False
        with self._lock:
            if name in self._targets and not self._stopping.is_set():
                self._ready.setdefault(name, []).append((lab_id, key))
                self._pool_keys[name] = key
                self.stats.built += 1
                return True
        self._destroy(lab_id)
        return None

    def _drop_stale(self) -> None:
        """After a create missed with a key no pool has: recompute each pool's key and
        destroy its ready labs built for another (an image rebuilt since: its tree has a
        new content address, so no claim would ever match them while they fill the pool)."""
        with self._lock:
            self._recheck = False
            targets = dict(self._targets)
        keys = {name: self._current_key(spec) for name, (spec, _size) in targets.items()}
        stale: list[str] = []
        with self._lock:
            for name, key in keys.items():
                if key is None or name not in self._targets:
                    continue
                self._pool_keys[name] = key
                ready = self._ready.get(name, [])
                gone = [lab for lab, lab_key in ready if lab_key != key]
                if gone:
                    log.warning("warm pool %s: %d ready lab(s) built for an older image of "
                                "its template: destroyed, the pool refills", name, len(gone))
                    ready[:] = [(lab, lab_key) for lab, lab_key in ready if lab_key == key]
                    stale += gone
        self._destroy_all(stale)

    def _sweep_accounts(self) -> None:
        """Every ``account_sweep_s``: destroy the ready labs whose uids the name service
        came to know while they waited (``pool_accounts``); the pools refill."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.account_sweep_s
        known = known_labs(self._rt.names, self.ready_ids())
        if not known:
            return
        with self._lock:  # only those still ready: a claim may have taken one meanwhile
            gone = [lab for ready in self._ready.values() for lab, _key in ready
                    if lab in known]
            for ready in self._ready.values():
                ready[:] = [(lab, key) for lab, key in ready if lab not in known]
            self.stats.exposed += len(gone)
        for lab in gone:
            log.warning("pool lab %s waited with lab uids the name service now knows (%s): "
                        "destroyed, the pool refills", lab, known[lab])
        self._destroy_all(gone)

    def _shrink_one(self, reading: MemoryReading) -> None:
        lab = self._pop_one()
        if lab is not None:
            self.stats.shrunk += 1
            if not self._shrinking:  # once per episode, then one line per lab at INFO
                self._shrinking = True
                log.warning("memory pressure (%d MiB available, floor %d MiB, stalls %s): "
                            "destroying warm pool labs one by one; refilling once %d MiB "
                            "are available and, below %d MiB, stalls (PSI some avg10) are "
                            "at most %g", reading.available_mb, self.min_available_mb,
                            "n/a" if reading.stall_avg10 is None else reading.stall_avg10,
                            refill_floor_mb(self.min_available_mb),
                            refill_floor_mb(STALL_HEADROOM * self.min_available_mb),
                            self.max_stall_avg10 / 2)
            log.info("memory pressure: destroying warm pool lab %s", lab)
            self._destroy(lab)
