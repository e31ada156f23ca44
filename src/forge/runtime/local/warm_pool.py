"""Warm lab pools of the local engine: labs built ahead, claimed and personalised at create.

A pool lab is an ordinary lab of this runtime under a ``wp-`` id, built from a template's
*shape* (``forge.runtime.warm.pool_shape``): namespaces, switch, links, addresses, cgroups,
disk, its own uid pair, and host sandboxes whose inits wait for their start line.
``LocalRuntime.create`` asks ``claim`` first; a claim takes a ready lab of the same shape
key, moves every kernel object and path from the pool id to the scenario's lab id, then
personalises it (seeds, environment, services started only now; both in ``pool_claim``).
Nothing of a scenario exists in a lab before its claim, and a claimed lab is destroyed
like any lab, never returned to a pool.

A background thread (niced, one build at a time) keeps each pool at its size; it waits
while creates miss the pools and for a moment after each claim (spawns come first), backs
off a pool whose builds fail (``warm.PoolRetries``) and, under memory pressure, stops
building and destroys ready labs one by one. Pool labs hold no quota (no scenario row).
``stop`` destroys every ready lab.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import threading
import time

from forge.runtime.base import BuildsStopped, LabSpec, RuntimeFault, SpecError
from forge.runtime.local.pool_accounts import ACCOUNT_SWEEP_S, known_labs, waiting_account
from forge.runtime.local.pool_claim import (
    LocalRuntime,
    cgroups_unmovable,
    drop_names,
    personalise,
    rename_lab,
)
from forge.runtime.local.rootfs import host_roots
from forge.runtime.plan import LabPlan, plan_lab
from forge.runtime.warm import (
    POOL_LAB_PREFIX,
    STALL_HEADROOM,
    MemoryProbe,
    MemoryReading,
    PoolRetries,
    may_refill,
    pool_targets,
    poolable,
    pressed,
    read_memory,
    refill_floor_mb,
    shape_key,
)

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


class WarmPool:
    """The pools of one LocalRuntime: ``configure`` sizes them, ``claim`` serves creates.

    ``probe`` reads the machine's memory (a seam for tests); ``warm.pressed`` and
    ``warm.may_refill`` judge it against ``min_available_mb`` and ``max_stall_avg10``.
    ``quiet_s``: how long after a create missed the pools the refill waits (never competing
    with a burst of fresh creates); ``settle_s``: how long after a claim (a build's Python
    threads would take the interpreter lock from the claim's caller and the next claim).
    """

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

    # ------------------------------------------------------------- configuration
    def configure(self, pools: dict[str, tuple[LabSpec, int]]) -> None:
        """Keep ``size`` labs of each named shape ready; drop labs of pools no longer
        named or above their size. Raises SpecError for a spec that cannot be pooled."""
        targets = pool_targets(pools)
        if targets:
            self.off_reason = cgroups_unmovable(self._rt)
            if self.off_reason is not None:
                log.warning("warm pools are off on this node: %s; every lab is built at its "
                            "spawn", self.off_reason)
                targets = {}
        keys = {name: key for name, (spec, _size) in targets.items()
                if (key := self._current_key(spec)) is not None}
        with self._lock:
            self._targets = targets
            self._pool_keys = keys
            self._retry.clear()
            self._generation += 1
            extra = []
            for name, labs in self._ready.items():
                keep = targets.get(name, (None, 0))[1]
                extra += [lab for lab, _key in labs[keep:]]
                del labs[keep:]
        self._destroy_all(extra)
        if targets and self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="forge-warm-pool",
                                            daemon=True)
            self._thread.start()
        elif not targets:
            self.stop()
        self._wake.set()

    def stop(self) -> None:
        """Stop refilling and destroy every ready lab (blocking)."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        with self._lock:
            self._targets = {}
        self._destroy_all(self._take_ready())
        self._drop_old_names()

    def discard_ready(self) -> None:
        """Destroy every ready lab and keep the pools' sizes (refilled with new labs): used
        when labs that waited may have been reached by someone (``uid_clash``)."""
        self._destroy_all(self._take_ready())
        self._wake.set()

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

    # -------------------------------------------------------------------- claim
    def claim(self, plan: LabPlan, roots: dict[str, tuple[str, bool]]) -> bool:
        """Serve ``create(plan.spec)`` from a pool: True when a ready lab now *is* the
        lab ``plan.lab_id`` (renamed and personalised); False to build it fresh.

        Called by ``create`` while it holds the lab id and its (empty) state directory."""
        lab_id = plan.lab_id
        if lab_id.startswith(POOL_LAB_PREFIX) or not self._targets or poolable(plan.spec):
            return False
        key = shape_key(plan.spec, roots)
        with self._lock:
            self._last_claim = time.monotonic()
            taken = None
            for ready in self._ready.values():
                for i, (_pool_id, lab_key) in enumerate(ready):
                    if lab_key == key:
                        taken = ready.pop(i)[0]
                        break
                if taken is not None:
                    break
            if taken is None and key in self._pool_keys.values():
                self.stats.missed += 1  # a pooled shape, its pool empty: refill after a lull
                self._last_miss = time.monotonic()
            elif taken is None:  # another template's, or a pool's image rebuilt since
                self._recheck = True
        self._wake.set()
        if taken is None:
            return False
        if (account := waiting_account(self._rt.names, taken)) is not None:
            log.warning("pool lab %s waited with lab uids the name service now knows (%s): "
                        "destroyed, not handed out; %s is built fresh", taken, account, lab_id)
            with self._lock:
                self.stats.exposed += 1
            self._destroy(taken)
            return False
        try:
            old_names = rename_lab(self._rt, taken, lab_id)
            with self._lock:
                self._old_names += old_names
            personalise(self._rt, plan)
        except SpecError:
            # The template's own mistake (a seed its image's tree refuses): a fresh build
            # would refuse it the same way. Not the pool's failure; the lab is spent.
            for gone in (taken, lab_id):
                with contextlib.suppress(Exception):
                    self._rt.destroy(gone)
            raise
        except Exception:
            log.exception("pool lab %s could not become %s; building it fresh", taken, lab_id)
            with self._lock:
                self.stats.failed += 1
            # The pool id first, as before the rename: its teardown kills processes left in
            # its memory/cpu trees by a rename stopped midway (the slow path in cgroups.py)
            # before the new id's teardown releases the uid the rename moved to it.
            for gone in (taken, lab_id):
                with contextlib.suppress(Exception):
                    self._rt.destroy(gone)
            if os.path.exists(self._rt.names.lab_dir(lab_id)):  # its teardown left something
                raise RuntimeFault(f"lab {lab_id}: a failed pool claim left parts of it that "
                                   "could not be removed; not building it again") from None
            os.mkdir(self._rt.names.lab_dir(lab_id), mode=0o700)
            return False
        with self._lock:
            self.stats.claimed += 1
        return True

    # ------------------------------------------------------------------- refill
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

    def give_up_one(self) -> bool:
        """Destroy one ready lab (of the fullest pool) now, so that its uid pair is free for
        a scenario's lab; False when none is ready."""
        lab = self._pop_one()
        if lab is None:
            return False
        log.warning("no free lab uid pair: ready pool lab %s destroyed for a learner's lab "
                    "(FORGE_LAB_UID_RANGE holds fewer pairs than the labs and pools want)",
                    lab)
        self._destroy(lab)
        return True

    def _pop_one(self) -> str | None:
        """Take a ready lab of the fullest pool out of it; None when none is ready."""
        with self._lock:
            pools = [ready for ready in self._ready.values() if ready]
            return max(pools, key=len).pop()[0] if pools else None

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
