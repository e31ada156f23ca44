"""``destroy_many`` and ``_teardown`` of ``LocalRuntime`` (a mixin, like ``LabBuilder``):
every process of a lab killed, its cgroups emptied and removed, then its namespaces, its
egress uplink and its disk; its uids and state directory go last, and only once nothing
else of the lab is left, so a lab that could not be wholly removed stays this
installation's (``degraded``) and is destroyed again later."""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from forge.runtime.base import LabNotFound, SpecError
from forge.runtime.local import egress
from forge.runtime.local.build_fence import BuildFence
from forge.runtime.local.cgroup_tree import SurvivorsError
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.disk import unmount_lab_disk
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.lab_access import lab_identity
from forge.runtime.local.netns import list_netns, netns_path, remove_netns
from forge.runtime.local.reconcile import read_meta
from forge.runtime.local.tty import LocalTty
from forge.runtime.local.uids import UidPool
from forge.runtime.plan import validate_lab_id

log = logging.getLogger("forge.runtime.local.lab_teardown")


class LabTeardown:
    """Lab teardown of ``LocalRuntime`` (a mixin: the attributes below are the runtime's)."""

    names: Names
    cgroups: Cgroups
    fence: BuildFence
    uids: UidPool
    egress_netns: str | None
    _lock: threading.Lock
    _procs: dict[str, builtins.list[subprocess.Popen[bytes]]]
    _held_go: dict[str, dict[str, int]]
    _ttys: dict[str, set[LocalTty]]

    def destroy_many(self, lab_ids: builtins.list[str], parallel: int | None = None) -> None:
        """Destroy many labs at once (a class ending, an operator's teardown), ``parallel``
        at a time (default: two per core this process may run on, 2-16): waits for the
        kernel (killed processes to exit, cgroups to empty) overlap, but the rest is CPU in
        this process, and more threads than that only fight for the GIL (200 labs on 2
        cores, back to back: 16 threads 1.64-1.84 s, 4 threads 1.16-1.51 s, with futex
        calls 11 % of the process's time at 16). Raises after trying them all if any
        failed."""
        if parallel is None:
            parallel = min(16, 2 * len(os.sched_getaffinity(0)))
        for lab_id in lab_ids:
            validate_lab_id(lab_id)
        # Every lab's processes get SIGKILL first, so they all exit while teardowns run.
        for lab_id in lab_ids:
            self.cgroups.signal_all(self.names.lab(lab_id))
        failed: builtins.list[str] = []
        # Each waits for a create of its lab under way (build_fence), unless this thread is
        # itself inside a create: its pool threads would wait for it as it waits for them.
        teardown = self._teardown if self.fence.holds_any() else self._fenced_teardown
        with ThreadPoolExecutor(max_workers=max(1, parallel),
                                thread_name_prefix="forge-destroy") as pool:
            for lab_id, fut in zip(lab_ids, [pool.submit(teardown, i) for i in lab_ids],
                                   strict=True):
                if fut.exception() is not None:
                    failed.append(f"{lab_id}: {fut.exception()}")
        if failed:
            raise OSError(f"{len(failed)} of {len(lab_ids)} labs not fully destroyed: "
                          + "; ".join(failed[:5]))

    def _lab_netns(self, lab_id: str, meta: dict[str, Any]) -> builtins.list[str]:
        """The named network namespaces of ``lab_id`` that exist. A lab with a record
        (``meta``: a create writes it before any namespace) has its switch, its gateway
        and one per recorded host, each looked up by name: /run/netns holds every live
        lab's names (of every runtime), and listing it made each destroy cost more with
        each of them. A lab without one (a create stopped before writing it; a claimed
        pool id's names left behind) is found by that listing."""
        stem = self.names.lab(lab_id)
        hosts = meta.get("hosts")
        if isinstance(hosts, dict) and hosts:
            try:
                candidates = [self.names.switch_ns(lab_id), self.names.gateway_ns(lab_id),
                              *(self.names.host_ns(lab_id, h) for h in hosts)]
            except SpecError:  # a host name no namespace can have: list them instead
                pass
            else:
                return [ns for ns in candidates if os.path.lexists(netns_path(ns))]
        found = []
        for ns in list_netns():
            if not ns.startswith(stem + "."):  # cheap filter: every lab's names are listed
                continue
            parsed = self.names.parse(ns)
            if parsed is not None and parsed[0] == lab_id:
                found.append(ns)
        return found

    def _fenced_teardown(self, lab_id: str) -> None:
        with self.fence.destroying(self.names.lab(lab_id)):  # after a build under way
            self._teardown(lab_id)

    def _teardown(self, lab_id: str) -> None:
        stem = self.names.lab(lab_id)
        meta = read_meta(self.names, lab_id)
        try:
            learner: int | None = lab_identity(lab_id, meta).learner
        except (LabNotFound, OSError, ValueError):
            learner = None  # a lab whose create stopped early: its claim is found by a scan
        with self._lock:
            ttys = self._ttys.pop(lab_id, set())
            procs = self._procs.pop(lab_id, [])
            held = self._held_go.pop(lab_id, {})
        for fd in held.values():  # a ready pool lab's waiting inits end with their pipe
            os.close(fd)
        for tty in ttys:
            with contextlib.suppress(Exception):
                tty.close()
        errors: list[str] = []
        # Kill everything once, wait for this instance's sandboxes (which end with their
        # processes) without polling, then empty and remove the cgroups (one walk of them:
        # what is still listed is killed until gone) before the namespaces go.
        self.cgroups.signal_all(stem)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        survived = False
        try:
            strays = self.cgroups.remove(stem)
        except SurvivorsError as exc:  # "processes survived SIGKILL in <cgroup>: <pids>"
            errors.append(str(exc.strerror))
            survived = True
        except OSError as exc:
            errors.append(f"cgroup: {exc.strerror}")
        else:
            if strays:  # still there after the kill: late execs, or moved (cgroups.py)
                log.warning("lab %s: killed pids %s still in its cgroups after the kill "
                            "(started during teardown, or moved between cgroups by a host "
                            "agent)", lab_id, " ".join(map(str, sorted(strays))))
        had_gateway = False
        for ns in self._lab_netns(lab_id, meta):
            had_gateway = had_gateway or ns == self.names.gateway_ns(lab_id)
            try:
                remove_netns(ns)
            except OSError as exc:
                errors.append(f"netns {ns}: {exc.strerror}")
        if had_gateway:  # normally the uplink dies with the gateway namespace
            try:
                egress.remove_uplink(self.names, lab_id, self.egress_netns)
            except (OSError, NetlinkError) as exc:
                errors.append(f"uplink: {exc}")
        try:
            unmount_lab_disk(self.names.data_root(lab_id))
        except OSError as exc:
            errors.append(str(exc))
        # A lab process still exists: its uid is not free for another lab, so neither its
        # claim nor the state directory that keeps the claim live goes (a claim whose
        # directory is gone counts as stale and is handed out again); the next destroy,
        # once the process can die, removes both. Nor do they go while anything else of the
        # lab is left: the lab stays this installation's (``degraded``, found and destroyed
        # again by a cleanup or the next start), never ``foreign`` (reconcile.discover).
        if not survived and not errors:
            self.uids.release(self.names.lab_dir(lab_id), learner)
            shutil.rmtree(self.names.lab_dir(lab_id), ignore_errors=True)
            if os.path.exists(self.names.lab_dir(lab_id)):
                errors.append("state directory could not be removed")
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.names.claim_marker(lab_id))
        if errors:
            raise OSError(f"destroy {lab_id} incomplete: " + "; ".join(errors))
