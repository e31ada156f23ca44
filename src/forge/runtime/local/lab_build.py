"""How a LocalRuntime builds a lab: identity, disk, cgroups, namespaces, wiring, sandboxes.

Hosts get their namespace and start their sandbox (in parallel, on the runtime's worker
pool) while the switch is made (a lab whose subnets all join two hosts has none: see
``network.point_to_point``); one netlink batch wires everything; hosts configure their
interfaces; the sandboxes are waited for; the egress gateway (allowlist labs) is built;
and only once every bridge port is up do the hosts' services start. A failure leaves
the caller (``LocalRuntime.create``) to tear down whatever was made.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from forge.runtime.local import egress
from forge.runtime.local.bwrap_args import host_env
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.disk import mount_lab_disk
from forge.runtime.local.host_dirs import host_paths, seed_host_dir, write_identity
from forge.runtime.local.host_ptys import mount_host_ptys
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.machine_etc import mount_etc
from forge.runtime.local.netns import create_host_netns
from forge.runtime.local.network import (
    apply_sysctls,
    base_sysctls,
    bridged,
    configure_host,
    create_switch,
    wait_ports_up,
    wire_switch,
)
from forge.runtime.local.reconcile import write_meta
from forge.runtime.local.restarts import restarted
from forge.runtime.local.rootfs import mount_image_root
from forge.runtime.local.route_trim import make_fence
from forge.runtime.local.sandbox import (
    InitHandle,
    PendingInit,
    abort_init,
    close_go,
    spawn_init,
    start_service,
    wait_init,
)
from forge.runtime.local.seeds import make_ssh_host_keys, write_root_seeds
from forge.runtime.local.uids import LabIdentity, NoFreeUids, UidPool
from forge.runtime.plan import LabPlan, PlannedHost
from forge.runtime.warm import POOL_LAB_PREFIX

if TYPE_CHECKING:  # the pools import the runtime
    from forge.runtime.local.warm_pool import WarmPool


class LabBuilder:
    """``_build`` of ``LocalRuntime`` (a mixin: the attributes below are the runtime's)."""

    names: Names
    cgroups: Cgroups
    uids: UidPool
    profiles: dict[str, egress.EgressProfile]
    egress_netns: str | None
    _pool: ThreadPoolExecutor
    _fault: Callable[[str], None]
    _lock: threading.Lock
    _procs: dict[str, list[subprocess.Popen[bytes]]]
    _held_go: dict[str, dict[str, int]]
    warm_pool: WarmPool | None

    def _claim_uids(self, lab_id: str) -> LabIdentity:
        """A uid pair for ``lab_id``. Ready warm-pool labs hold pairs too; when they hold
        the last free ones, a scenario's lab gets one of theirs (that ready lab destroyed):
        a pool never takes a lab from a learner (red team CB). Bounded: each try after the
        first destroyed a ready lab (a refill may take a freed pair first)."""
        while True:
            try:
                return self.uids.claim(self.names.lab_dir(lab_id))
            except NoFreeUids:
                pool = self.warm_pool
                if (lab_id.startswith(POOL_LAB_PREFIX) or pool is None
                        or not pool.give_up_one()):
                    raise

    def _build(self, plan: LabPlan, roots: dict[str, tuple[str, bool]]) -> None:
        lab_id, spec = plan.lab_id, plan.spec
        switch = bridged(plan)
        ident = self._claim_uids(lab_id)
        write_meta(self.names, lab_id, {
            "hosts": {h.spec.name: {"caps": h.caps, "env": host_env(h),
                                    "rootfs": roots[h.spec.name][0],
                                    "image": roots[h.spec.name][1],
                                    "grading_address": h.spec.grading_address,
                                    "grading_identities": h.spec.grading_identities,
                                    "addresses": [nic.address for nic in h.nics],
                                    "routes": [list(route) for route in h.routes]}
                      for h in plan.hosts},
            "identity": {"learner": ident.learner, "grader": ident.grader},
            "switch": switch,
        })
        make_fence(self.names.lab_dir(lab_id))
        mount_lab_disk(self.names.data_root(lab_id), spec.limits.disk_mb)
        write_identity(self.names.etc_dir(lab_id), ident.learner, ident.grader)
        # Hosts on the machine's userland (all on the runtime's rootfs: ``host_roots``).
        machine = next((root for root, image in roots.values() if not image), None)
        if machine is not None:
            mount_etc(self.names.etc_dir(lab_id), os.path.join(machine, "etc"))
        self._fault("lab")
        self.cgroups.create((self.names.lab(lab_id),), spec.limits)
        # Hosts get their namespace and start their sandbox while the switch is made;
        # then one batch wires everything; then hosts configure their interfaces.
        prepared = [self._pool.submit(self._prepare_host, plan, h, ident.learner,
                                      roots[h.spec.name])
                    for h in plan.hosts]
        pending: dict[str, PendingInit] = {}
        started: list[InitHandle] = []
        try:
            try:
                if switch:
                    create_switch(self.names, plan)
            finally:
                for host, fut in zip(plan.hosts, prepared, strict=True):
                    if fut.exception() is None:
                        pending[host.spec.name] = fut.result()
            for fut in prepared:
                if fut.exception() is not None:
                    raise fut.exception()  # type: ignore[misc]
            wire_switch(self.names, plan)
            self._fault("switch")
            configured = [self._pool.submit(configure_host, self.names, plan, h)
                          for h in plan.hosts]
            for done in configured:
                done.result()
            for host in plan.hosts:
                handle = wait_init(pending.pop(host.spec.name), host.spec.name)
                started.append(handle)
                path = os.path.join(self.names.host_dir(lab_id, host.spec.name), "init.pid")
                with open(path, "w", encoding="ascii") as fh:
                    fh.write(str(handle.pid))
            self._fault("hosts")
            if spec.egress == "allowlist":
                profile = self.profiles[spec.allowlist_profile or ""]
                egress.build_gateway(self.names, plan, profile, self.egress_netns)
                self._fault("gateway")
            # A veth pair between hosts passes frames once both ends are up (no wait, review
            # AU): the end set up second is activated at once, the first through the kernel's
            # link watch, which runs at once while a queue is not yet active; only their
            # operstate lags, up to a second (waiting for it cost 55 ms of CPU per lab).
            if switch:
                wait_ports_up(self.names.switch_ns(lab_id))
            self._fault("ready")
            # Services start only now: their interfaces, addresses, routes and switch
            # ports exist (a command adding an address or binding one used to race them).
            # A warm pool lab's inits keep waiting: its claim sends each its service
            # (``pool_claim.personalise``), started by the init like a fresh lab's; a
            # ``shared`` host's service (no scenario's value in it) starts now.
            if lab_id.startswith(POOL_LAB_PREFIX):
                waiting = [(host, handle) for host, handle in zip(plan.hosts, started,
                                                                  strict=True)
                           if not host.spec.shared]
                with self._lock:
                    self._held_go[lab_id] = {host.spec.name: handle.go_fd
                                             for host, handle in waiting}
                for _host, handle in waiting:
                    handle.go_fd = -1
            for handle in started:
                if handle.go_fd >= 0:
                    start_service(handle)
        finally:
            for left in pending.values():
                abort_init(left)
            for handle in started:
                close_go(handle)

    def _prepare_host(self, plan: LabPlan, host: PlannedHost, uid: int,
                      root: tuple[str, bool]) -> PendingInit:
        """Seed dirs (and an image's root overlay, its SSH host keys and root seeds), create
        the namespace and cgroups, and spawn the sandbox init."""
        lab_id, name = plan.lab_id, host.spec.name
        paths = host_paths(self.names, lab_id, name)
        rootfs, image = root
        seed_host_dir(paths, host, uid)
        mount_host_ptys(paths.data_dir)
        if image:
            merged = mount_image_root(name, rootfs, paths.data_dir)
            make_ssh_host_keys(merged, uid)
            write_root_seeds(merged, host, uid)
        ns = self.names.host_ns(lab_id, name)
        create_host_netns(ns, uid, lambda: apply_sysctls(base_sysctls(host.spec.router)))
        stem = self.names.lab(lab_id)
        self.cgroups.create((stem, name), plan.spec.limits)
        self.cgroups.create((stem, name, "init"), None)
        self._fault("host:" + name)
        procs = self.cgroups.procs_files(stem, name, "init")
        pending = restarted(lambda: spawn_init(host, paths, ns, procs, rootfs, uid,
                                               image))
        with self._lock:
            self._procs.setdefault(lab_id, []).append(pending.proc)
        return pending
