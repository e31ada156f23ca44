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

This module is the pools' configuration and claim side; the refill thread is
``pool_refill`` and the state both share is ``pool_labs``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

from forge.runtime.base import LabSpec, RuntimeFault, SpecError
from forge.runtime.local.pool_accounts import waiting_account
from forge.runtime.local.pool_claim import cgroups_unmovable, personalise, rename_lab
from forge.runtime.local.pool_labs import log
from forge.runtime.local.pool_refill import PoolRefill
from forge.runtime.plan import LabPlan
from forge.runtime.warm import POOL_LAB_PREFIX, pool_targets, poolable, shape_key


class WarmPool(PoolRefill):
    """The pools of one LocalRuntime: ``configure`` sizes them, ``claim`` serves creates.

    ``probe`` reads the machine's memory (a seam for tests); ``warm.pressed`` and
    ``warm.may_refill`` judge it against ``min_available_mb`` and ``max_stall_avg10``.
    ``quiet_s``: how long after a create missed the pools the refill waits (never competing
    with a burst of fresh creates); ``settle_s``: how long after a claim (a build's Python
    threads would take the interpreter lock from the claim's caller and the next claim).
    """

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
