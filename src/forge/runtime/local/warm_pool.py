"""Warm lab pools of the local engine: labs built ahead, claimed and personalised at create.

A pool lab is an ordinary lab of this runtime under a ``wp-`` id, built from a template's
*shape* (``forge.runtime.warm.pool_shape``): namespaces, switch, links, addresses, cgroups,
disk, identity (its own uid pair, never used by any other lab) and idle host sandboxes.
``LocalRuntime.create`` asks ``claim`` first; a claim takes one ready lab of the same shape
key, renames every kernel object and path from the pool id to the scenario's lab id (so
``list``, ``exec``, ``destroy`` and a restarted orchestrator see an ordinary lab), then
personalises it: seeds, root seeds, environment, and the hosts' services, started only now
in each host's ``init`` cgroup. Nothing of a scenario exists in a lab before its claim, and
a claimed lab is never returned to a pool: it is destroyed like any lab.

A background thread (niced, one build at a time) keeps each pool at its size; it waits
while creates are missing the pools (spawns come first) and, under memory pressure, stops
building and destroys ready labs one by one. Pool labs hold no quota: they have no
scenario row. ``stop`` destroys every ready lab.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Protocol

from forge.runtime.base import LabInfo, LabSpec, SpecError
from forge.runtime.local import seccomp
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.execute import enter_argv, wrapper_env
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.netns import netns_path, remove_netns
from forge.runtime.local.reconcile import init_pid, read_meta
from forge.runtime.local.rootfs import host_roots, merged_root
from forge.runtime.local.sandbox import HostPaths, host_env, seed_host_dir
from forge.runtime.local.seeds import write_root_seeds
from forge.runtime.local.service_signals import service_prefix
from forge.runtime.local.uids import UidPool
from forge.runtime.plan import LabPlan, PlannedHost, plan_lab
from forge.runtime.warm import (
    POOL_LAB_PREFIX,
    MemoryProbe,
    pool_shape,
    poolable,
    pressed,
    read_memory,
    shape_key,
)


class LocalRuntime(Protocol):
    """What a pool needs of ``runtime.LocalRuntime`` (named here, not imported: the runtime
    imports this module)."""

    names: Names
    uids: UidPool
    cgroups: Cgroups
    rootfs: str
    images: dict[str, str]
    default_image: str | None
    _lock: threading.Lock
    _procs: dict[str, list[subprocess.Popen[bytes]]]
    _resolve_image: Callable[[str], str]

    def create(self, spec: LabSpec) -> LabInfo:
        """Build a lab."""

    def destroy(self, lab_id: str) -> None:
        """Remove a lab."""

    def destroy_many(self, lab_ids: list[str]) -> None:
        """Remove many labs together."""

log = logging.getLogger("forge.runtime.warm_pool")
MS_BIND = 4096
_libc = ctypes.CDLL(None, use_errno=True)


@dataclasses.dataclass
class PoolStats:
    """Counters of one runtime's pools since start."""

    claimed: int = 0
    missed: int = 0
    built: int = 0
    failed: int = 0
    shrunk: int = 0


class WarmPool:
    """The pools of one LocalRuntime: ``configure`` sizes them, ``claim`` serves creates.

    ``probe`` reads the machine's memory (a seam for tests); pools shrink when fewer than
    ``min_available_mb`` MiB are available or memory PSI ``some avg10`` exceeds
    ``max_stall_avg10``. ``quiet_s``: how long after a create missed the pools the refill
    waits before building again (so it never competes with a burst of fresh creates).
    """

    def __init__(self, runtime: LocalRuntime, *, min_available_mb: int = 512,
                 max_stall_avg10: float = 10.0, probe: MemoryProbe = read_memory,
                 quiet_s: float = 2.0, poll_s: float = 1.0) -> None:
        self._rt = runtime
        self.min_available_mb = min_available_mb
        self.max_stall_avg10 = max_stall_avg10
        self.probe = probe
        self.quiet_s = quiet_s
        self.poll_s = poll_s
        self.stats = PoolStats()
        self._targets: dict[str, tuple[LabSpec, int]] = {}
        self._ready: dict[str, list[tuple[str, str]]] = {}  # name -> [(lab id, key)]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_miss = 0.0
        self._old_names: list[str] = []  # namespace names claimed labs no longer use

    # ------------------------------------------------------------- configuration
    def configure(self, pools: dict[str, tuple[LabSpec, int]]) -> None:
        """Keep ``size`` labs of each named shape ready; drop labs of pools no longer
        named or above their size. Raises SpecError for a spec that cannot be pooled."""
        targets: dict[str, tuple[LabSpec, int]] = {}
        for name, (spec, size) in pools.items():
            reason = poolable(spec)
            if reason is not None:
                raise SpecError(f"warm_pool.{name}", f"cannot be pooled: {reason}")
            if size < 0:
                raise SpecError(f"warm_pool.{name}", "size must be >= 0")
            if size:
                targets[name] = (pool_shape(spec), size)
        with self._lock:
            self._targets = targets
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
            labs = [lab for ready in self._ready.values() for lab, _key in ready]
            self._ready.clear()
            self._targets = {}
        self._destroy_all(labs)
        self._drop_old_names()

    def _drop_old_names(self) -> None:
        """Unmount the pool ids' namespace names left by claims (an unmount propagates to
        every mount namespace sharing /run/netns, ~3 ms each here: not on the claim path).
        A crash before this leaves a ``degraded`` pool lab of names only, which the
        orchestrator's reconcile at start destroys like any orphan."""
        with self._lock:
            names, self._old_names = self._old_names, []
        for name in names:
            try:
                remove_netns(name)
            except OSError:
                log.exception("old namespace name %s could not be removed", name)

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
            taken = None
            for ready in self._ready.values():
                for i, (_pool_id, lab_key) in enumerate(ready):
                    if lab_key == key:
                        taken = ready.pop(i)[0]
                        break
                if taken is not None:
                    break
            if taken is None:
                self.stats.missed += 1
                self._last_miss = time.monotonic()
        self._wake.set()
        if taken is None:
            return False
        try:
            old_names = rename_lab(self._rt, taken, lab_id)
            with self._lock:
                self._old_names += old_names
            personalise(self._rt, plan)
        except Exception:
            log.exception("pool lab %s could not become %s; building it fresh", taken, lab_id)
            self.stats.failed += 1
            for gone in (taken, lab_id):
                with contextlib.suppress(Exception):
                    self._rt.destroy(gone)
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
            self._drop_old_names()
            if self._pressed():
                self._shrink_one()
                continue
            quiet = self._last_miss + self.quiet_s - time.monotonic()
            if quiet > 0:
                self._stopping.wait(quiet)
                self._wake.set()
                continue
            name = self._short_pool()
            if name is not None:
                if self._build_one(name):
                    self._wake.set()
                else:
                    self._stopping.wait(self.poll_s)

    def _pressed(self) -> bool:
        try:
            return pressed(self.probe(), self.min_available_mb, self.max_stall_avg10)
        except (OSError, ValueError):
            return False

    def _short_pool(self) -> str | None:
        with self._lock:
            for name, (_spec, size) in self._targets.items():
                if len(self._ready.get(name, [])) < size:
                    return name
        return None

    def _build_one(self, name: str) -> bool:
        with self._lock:
            spec = self._targets[name][0] if name in self._targets else None
        if spec is None:
            return False
        lab_id = POOL_LAB_PREFIX + secrets.token_hex(8)
        spec = dataclasses.replace(spec, lab_id=lab_id)
        try:
            plan = plan_lab(spec)
            rt = self._rt
            key = shape_key(spec, host_roots(plan, rt.rootfs, rt.images, rt._resolve_image,
                                             rt.default_image))
            rt.create(spec)
        except Exception:
            log.exception("warm pool %s: building a lab failed", name)
            self.stats.failed += 1
            return False
        with self._lock:
            if name in self._targets and not self._stopping.is_set():
                self._ready.setdefault(name, []).append((lab_id, key))
                self.stats.built += 1
                return True
        self._destroy(lab_id)
        return False

    def _shrink_one(self) -> None:
        with self._lock:
            pools = [ready for ready in self._ready.values() if ready]
            lab = max(pools, key=len).pop()[0] if pools else None
        if lab is not None:
            self.stats.shrunk += 1
            log.warning("memory pressure: destroying warm pool lab %s", lab)
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


# ---------------------------------------------------------------- rename and personalise
def rename_lab(rt: LocalRuntime, old: str, new: str) -> list[str]:
    """Give lab ``old`` the id ``new``: its uid claim, state directory (replacing the empty
    one ``create`` made), cgroups, named namespaces and in-process handles. Returns the
    namespaces' old names, still mounted, for the caller to remove (``remove_netns``)."""
    names = rt.names
    old_dir, new_dir = names.lab_dir(old), names.lab_dir(new)
    old_stem, new_stem = names.lab(old), names.lab(new)
    meta = read_meta(names, old)
    # The lab's own claim file (by its recorded uid; not a scan of every lab's claim),
    # first: new_dir exists already, so the claim never looks stale.
    path = os.path.join(rt.uids.claims_dir, str(int(meta["identity"]["learner"])))
    tmp = f"{path}.{new}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new_dir)
    os.replace(tmp, path)
    os.rename(old_dir, new_dir)
    for base in rt.cgroups.bases():
        with contextlib.suppress(FileNotFoundError):
            os.rename(os.path.join(base, old_stem), os.path.join(base, new_stem))
    moved = [names.switch_ns(old), *(names.host_ns(old, h) for h in meta["hosts"])]
    for ns in moved:
        _bind_netns(ns, new_stem + ns[len(old_stem):])
    with rt._lock:
        rt._procs[new] = rt._procs.pop(old, []) + rt._procs.get(new, [])
    return moved


def _bind_netns(old: str, new: str) -> None:
    """Bind the named namespace ``old`` under the name ``new`` too."""
    src, dst = netns_path(old).encode(), netns_path(new).encode()
    os.close(os.open(dst, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    if _libc.mount(src, dst, b"none", MS_BIND, None) != 0:
        err = ctypes.get_errno()
        os.unlink(dst)
        raise OSError(err, f"bind netns {old} as {new}: {os.strerror(err)}")


def personalise(rt: LocalRuntime, plan: LabPlan) -> None:
    """Add what the scenario gives to a renamed pool lab: seeds (and an image host's root
    seeds), each host's environment, then the hosts' services."""
    lab_id = plan.lab_id
    meta = read_meta(rt.names, lab_id)
    uid = int(meta["identity"]["learner"])
    for host in plan.hosts:
        name = host.spec.name
        paths = HostPaths(rt.names.lab_dir(lab_id), rt.names.host_dir(lab_id, name),
                          rt.names.data_dir(lab_id, name))
        seed_host_dir(paths, host, uid)
        recorded = meta["hosts"][name]
        if recorded.get("image") is True:
            write_root_seeds(merged_root(paths.data_dir), host, uid)
        recorded["env"] = host_env(host)
    _replace_meta(rt, lab_id, meta)
    for host in plan.hosts:
        if host.spec.command:
            _start_service(rt, lab_id, host, uid,
                           str(meta["hosts"][host.spec.name].get("rootfs", rt.rootfs)))


def _replace_meta(rt: LocalRuntime, lab_id: str, meta: dict[str, object]) -> None:
    path = os.path.join(rt.names.lab_dir(lab_id), "meta.json")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    os.replace(path + ".tmp", path)


def _start_service(rt: LocalRuntime, lab_id: str, host: PlannedHost, uid: int,
                   root: str) -> None:
    """Start the host's service as the lab user, in the host's ``init`` cgroup (so sealing
    for grading leaves it running, as a service started by the init itself), with default
    signals like a fresh lab's (``root``: the host's recorded root, for the probe)."""
    name = host.spec.name
    pid = init_pid(rt.names, lab_id, name)
    stem = rt.names.lab(lab_id)
    filter_fd = seccomp.filter_fd(host.caps)
    log_path = os.path.join(rt.names.host_dir(lab_id, name), "service.log")
    try:
        argv = enter_argv(pid, host.caps, host_env(host),
                          [*service_prefix(root), "/bin/sh", "-c", host.spec.command or ""],
                          uid, filter_fd)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                pass_fds=(filter_fd,), start_new_session=True,
                env=wrapper_env(rt.cgroups.procs_files(stem, name, "init")))
    finally:
        os.close(filter_fd)
    with rt._lock:
        rt._procs.setdefault(lab_id, []).append(proc)
