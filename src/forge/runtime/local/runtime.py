"""LocalRuntime: labs on one Linux machine from namespaces, bubblewrap and cgroups.

Every object a lab owns is named from (prefix, lab_id), so teardown and ``list()`` work
from what the kernel and the state directory hold, not from this process's memory: a new
instance after a crash sees, enters and destroys the labs of the previous one.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from forge.machine_path import MACHINE_PATH
from forge.runtime.base import (
    BuildsStopped,
    LabExists,
    LabInfo,
    LabNotFound,
    LabSpec,
    PoolReport,
    Runtime,
    RuntimeUnavailable,
    SpecError,
)
from forge.runtime.local import egress, landlock
from forge.runtime.local.build_fence import BuildFence
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.fd_limit import raise_open_files_limit
from forge.runtime.local.fifo_slots import FifoSlots
from forge.runtime.local.file_table import file_table_problem
from forge.runtime.local.kernel_names import Names, validate_prefix
from forge.runtime.local.lab_access import LabAccess
from forge.runtime.local.lab_build import LabBuilder
from forge.runtime.local.lab_teardown import LabTeardown
from forge.runtime.local.lab_trims import LabTrims
from forge.runtime.local.macvlan_probe import macvlan_problem
from forge.runtime.local.neighbour_table import size_tables
from forge.runtime.local.netns import netns_path, return_problem, userns_problem
from forge.runtime.local.priority import thread_unniced
from forge.runtime.local.proc_visibility import proc_visibility_problem
from forge.runtime.local.ready_ports import READY_TIMEOUT_S, wait_ready
from forge.runtime.local.reconcile import discover, present
from forge.runtime.local.rootfs import configured_image, host_roots
from forge.runtime.local.service_signals import service_prefix
from forge.runtime.local.tools import missing
from forge.runtime.local.tty import LocalTty
from forge.runtime.local.uid_clash import ClashCheck
from forge.runtime.local.uids import DEFAULT_CLAIMS_DIR, UidPool
from forge.runtime.plan import LabPlan, plan_lab, validate_lab_id

if TYPE_CHECKING:
    from forge.runtime.local.warm_pool import WarmPool

log = logging.getLogger("forge.runtime.local.runtime")

DEFAULT_LAB_CAPACITY = 200  # FORGE_NODE_CAPACITY_LABS's default: the neighbour tables' size
REQUIRED_TOOLS = ("bwrap", "nsenter", "setpriv", "setsid", "env", "ip", "bash", "nft")


class LocalRuntime(LabBuilder, LabTeardown, LabAccess, LabTrims, Runtime):
    """The local engine.

    ``state_dir`` holds per-host directories; ``prefix`` (1-5 chars) namespaces every
    kernel object so independent instances (e.g. test runs) never touch each other's
    labs; ``rootfs``/``images`` choose the read-only userland (a host with no image or
    image ``host`` gets ``rootfs``'s system dirs, as does one with no image unless
    ``default_image`` names the image it gets instead; ``images`` maps a name to an image
    tree, else ``resolve_image(name)`` (default: the machine's configured image cache,
    ``configured_image``) returns its built tree or raises naming what to do);
    ``profiles`` are the
    approved egress allowlists; ``egress_netns`` is where gateway uplinks land (None: the
    machine's namespace); ``uid_range`` (first uid, count) is where each lab's own pair
    of uids (its ``learner`` and its grader) is claimed, machine-wide through
    ``uid_claims_dir``; ``fault_hook(stage)`` is a test seam called at each create stage;
    ``build_slots`` is how many fresh labs are built at once (default: one per core this
    process may run on, plus one; a pooled claim needs none): the rest wait their turn.
    A build is mostly kernel work under machine-wide locks (RTNL, the mount lock) and
    Python under the GIL, so 50 built at once each cost 64-68 ms of machine CPU and all
    ended after 1.8-1.9 s; two at a time, 49-50 ms each. The extra slot fills a core
    while a build waits for its sandboxes to start: on 2 cores, 50 at once, two and
    three slots alternating seven times, the last lab ran after 1.52-1.92 s (median
    1.85) with two, 1.51-1.80 s (median 1.57) with three; four were slower again.
    ``ready_timeout_s``: how long ``create`` waits for the hosts' ``ready_ports`` to
    accept connections (module ``ready_ports``) before it fails and tears the lab down.
    """

    def __init__(
        self,
        state_dir: str,
        prefix: str = "fg",
        *,
        rootfs: str = "/",
        images: dict[str, str] | None = None,
        profiles: dict[str, egress.EgressProfile] | None = None,
        egress_netns: str | None = None,
        cgroups: Cgroups | None = None,
        fault_hook: Callable[[str], None] | None = None,
        workers: int = 16,
        uid_range: tuple[int, int] = (300000, 100000),
        uid_claims_dir: str = DEFAULT_CLAIMS_DIR,
        resolve_image: Callable[[str], str] | None = None,
        default_image: str | None = None,
        build_slots: int | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        lab_capacity: int = DEFAULT_LAB_CAPACITY,
    ) -> None:
        self.names = Names(validate_prefix(prefix), os.path.abspath(state_dir))
        self.lab_capacity = lab_capacity  # labs the node may hold: neighbour_table
        self.fence = BuildFence(self.names.state_dir)
        self.rootfs = rootfs
        self.images = dict(images or {})
        self._resolve_image = resolve_image or configured_image
        self.default_image = default_image
        self.profiles = dict(egress.DEFAULT_PROFILES)
        self.profiles.update(profiles or {})
        for profile in self.profiles.values():
            egress.validate_profile(profile)
        self.uids = UidPool(uid_range[0], uid_range[1], uid_claims_dir)
        self._uid_clash = ClashCheck(uid_range[0], uid_range[1])
        self._clash_seen = False
        self.egress_netns = egress_netns
        self.cgroups = cgroups or Cgroups.detect()
        self._fault = fault_hook or (lambda _stage: None)
        raise_open_files_limit()  # warm pool pipes, terminals: see fd_limit
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forge-lab",
                                        initializer=thread_unniced)
        self._lock = threading.Lock()
        slots = build_slots if build_slots is not None else len(os.sched_getaffinity(0)) + 1
        if slots < 1:
            raise ValueError(f"build_slots must be at least 1, not {slots}")
        self.build_slots = slots
        self.ready_timeout_s = ready_timeout_s
        self._build_slots = FifoSlots(slots)  # first come, first built
        self._builds_stopped = False
        self._env_probed = False
        self._busy: set[str] = set()
        self._procs: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._held_go: dict[str, dict[str, int]] = {}  # warm pool lab -> host -> go pipe
        self._ttys: dict[str, set[LocalTty]] = {}
        self._usable = False
        self.warm_pool: WarmPool | None = None  # see warm()

    # ----------------------------------------------------------------- checks
    def check(self) -> list[str]:
        """Missing privileges, tools or kernel features (empty list when usable)."""
        problems = []
        if os.geteuid() != 0:
            problems.append("the local runtime must run as root (euid 0)")
        problems += [f"required tool {t!r} not found in the system folders ({MACHINE_PATH};"
                     " PATH is not searched)" for t in missing(REQUIRED_TOOLS)]
        problems += self.cgroups.problems()
        if not os.path.exists("/proc/self/ns/net"):
            problems.append("network namespaces are not supported by this kernel")
        elif (refused := return_problem()) is not None:
            problems.append("a thread cannot step back into its own network namespace "
                            f"(setns: {refused}): run as root of the machine's user namespace")
        if (no_userns := userns_problem()) is not None:
            problems.append(no_userns)
        if (clash := self._uid_problem()) is not None:
            problems.append(clash)
        if not os.path.isdir(self.rootfs):
            problems.append(f"rootfs {self.rootfs!r} is not a directory")
        elif not self._env_probed:  # once: a warning if env lacks it (/readyz runs this)
            service_prefix(self.rootfs)
            try:
                why = landlock.domain_problem()
            except OSError as exc:  # a passing shortage (EMFILE, ENOMEM): asked again
                problems.append(f"Landlock could not be probed just now: {exc}")
                return problems
            if why is not None:
                log.warning("%s: learner processes get no domain of their own, and only "
                            "the service mark keeps them out of a service's memory", why)
            for shown in (proc_visibility_problem(), file_table_problem(),
                          *self.lab_problems()):
                if shown is not None:
                    log.warning("%s", shown)
            for raised, said in size_tables(self.lab_capacity):
                log.log(logging.INFO if raised else logging.WARNING, "%s", said)
            self._env_probed = True
        return problems

    def lab_problems(self) -> list[str]:
        """Kernel features some labs need that are missing here (a macvlan probe)."""
        missing_macvlan = macvlan_problem(self.names.prefix)
        return [] if missing_macvlan is None else [missing_macvlan]

    def _uid_problem(self) -> str | None:
        """Why the uid range is not clear of the machine's accounts (None when it is).
        While it is not, and once more when it is clear again, the ready warm-pool labs are
        destroyed: they waited with ids the account's holder has, who may have reached
        them, and no learner gets one."""
        clash = self._uid_clash.problem()
        if clash is not None or self._clash_seen:
            self._clash_seen = clash is not None
            if self.warm_pool is not None:
                self.warm_pool.discard_ready()
        return clash

    def _require(self) -> None:
        if self._usable:
            # An account made since (useradd) is as dangerous as one there at the start.
            if (clash := self._uid_problem()) is not None:
                raise RuntimeUnavailable("local runtime unavailable: " + clash)
            return
        problems = self.check()
        if problems:
            raise RuntimeUnavailable("local runtime unavailable: " + "; ".join(problems))
        self._usable = True

    # ----------------------------------------------------------------- create
    def create(self, spec: LabSpec) -> LabInfo:
        """Build the lab; on any failure remove everything created and re-raise."""
        plan = plan_lab(spec)
        if spec.egress == "allowlist" and spec.allowlist_profile not in self.profiles:
            raise SpecError("allowlist_profile", f"unknown profile {spec.allowlist_profile!r}")
        roots = host_roots(plan, self.rootfs, self.images, self._resolve_image,
                           self.default_image)
        lab_id = plan.lab_id
        self._require()
        with self._lock:
            if lab_id in self._busy or self._exists(lab_id):
                raise LabExists(f"lab {lab_id} already exists")
            self._busy.add(lab_id)
        try:
            # A destroy from another runtime instance waits for this build (build_fence).
            with self.fence.building(self.names.lab(lab_id)):
                self._claim_and_build(plan, roots)
        finally:
            with self._lock:
                self._busy.discard(lab_id)
        hosts = {h.spec.name: {n.subnet: n.address for n in h.nics} for h in plan.hosts}
        return LabInfo(lab_id, hosts, "running")

    def _claim_and_build(self, plan: LabPlan, roots: dict[str, tuple[str, bool]]) -> None:
        """Claim the lab's state directory, then fill it from a warm pool or build it; on
        any failure remove everything created and re-raise."""
        lab_id = plan.lab_id
        try:
            # The state directory is the atomic claim, also against other processes: a
            # create that loses the race must not tear down the winner's lab.
            os.makedirs(self.names.state_dir, mode=0o700, exist_ok=True)
            os.mkdir(self.names.lab_dir(lab_id), mode=0o700)
        except FileExistsError:
            raise LabExists(f"lab {lab_id} already exists") from None
        try:
            if self.warm_pool is None or not self.warm_pool.claim(plan, roots):
                with self._build_slots:
                    if self._builds_stopped:  # waited through a shutdown: build nothing
                        raise BuildsStopped(f"lab {lab_id} not built: the runtime is stopping")
                    self._build(plan, roots)
            # Out of the build slot: a service's start is no build work.
            wait_ready(self.names, plan, self.ready_timeout_s)
        except BaseException:
            with contextlib.suppress(Exception):
                self._teardown(lab_id)
            raise

    def wait_ready(self, spec: LabSpec) -> None:
        """The hosts' ready ports of an existing lab accept connections (``ready_ports``);
        ``ServicesNotReady`` after ``ready_timeout_s``."""
        wait_ready(self.names, plan_lab(spec), self.ready_timeout_s)

    def _exists(self, lab_id: str) -> bool:
        return (os.path.exists(netns_path(self.names.switch_ns(lab_id)))
                or os.path.exists(self.names.lab_dir(lab_id))
                or any(os.path.isdir(p) for p in self.cgroups.paths(self.names.lab(lab_id))))

    # ---------------------------------------------------------------- destroy
    def destroy(self, lab_id: str) -> None:
        """Kill every process, remove namespaces, links, cgroups and host dirs."""
        validate_lab_id(lab_id)
        self._fenced_teardown(lab_id)

    # ------------------------------------------------------------------- list
    def list(self) -> builtins.list[LabInfo]:
        """Every lab of this prefix found in the kernel or the state directory."""
        return discover(self.names, self.cgroups)

    def has_lab(self, lab_id: str) -> bool:
        """Whether ``list()`` would show ``lab_id``, from that lab's names alone (an id no
        lab can have: no)."""
        try:
            validate_lab_id(lab_id)
        except SpecError:
            return False
        return present(self.names, self.cgroups, lab_id)

    # ------------------------------------------------------------ extras
    def egress_denied(self, lab_id: str) -> int:
        """Packets dropped so far by the lab's egress gateway (allowlist labs only)."""
        validate_lab_id(lab_id)
        if not os.path.exists(netns_path(self.names.gateway_ns(lab_id))):
            raise LabNotFound(f"lab {lab_id} has no egress gateway")
        return egress.denied_packets(self.names, lab_id)

    def cleanup_orphans(self) -> builtins.list[str]:
        """Destroy every lab of this prefix the kernel holds half-built or half-destroyed
        (``degraded``: a crash mid-create or mid-destroy); returns their ids. One that
        cannot be destroyed does not stop the others: after trying them all, raises
        ``OSError`` naming every failure (and what was destroyed). A lab being built
        (by any runtime instance on this state directory) looks degraded too: it is
        looked at again once its build is over, and kept if it came up running."""
        cleaned: builtins.list[str] = []
        failed: builtins.list[str] = []
        for info in self.list():
            if info.state != "degraded":  # never a running or a foreign lab
                continue
            try:
                with self.fence.destroying(self.names.lab(info.lab_id)):
                    if self._state(info.lab_id) != "degraded":  # built meanwhile, or gone
                        continue
                    self._teardown(info.lab_id)
            except Exception as exc:  # any failure: named in the error raised below
                failed.append(f"{info.lab_id}: {exc}")
            else:
                cleaned.append(info.lab_id)
        if failed:
            raise OSError(f"{len(failed)} orphaned lab(s) not destroyed: " + "; ".join(failed)
                          + f" (destroyed: {', '.join(cleaned) or 'none'})")
        return cleaned

    def _state(self, lab_id: str) -> str | None:
        return next((i.state for i in self.list() if i.lab_id == lab_id), None)

    @property
    def engine_name(self) -> str:
        """``local``."""
        return "local"

    # ------------------------------------------------------------ warm pools
    def warm(self, pools: dict[str, tuple[LabSpec, int]],
             **options: Any) -> dict[str, dict[str, int]]:
        """Keep ``size`` pre-built labs of each named shape ready for ``create`` to claim
        (see ``warm_pool``); ``options`` go to ``WarmPool`` on first use. ``{}`` destroys
        every ready lab. Returns each pool's ready count and size."""
        from forge.runtime.local.warm_pool import WarmPool

        if self.warm_pool is None:
            if not pools:
                return {}
            self._require()
            self.warm_pool = WarmPool(self, **options)
        self.warm_pool.configure(pools)
        return self.warm_pool.status()

    @property
    def builds_stopped(self) -> bool:
        """True once ``stop_builds`` was called (a shutdown under way)."""
        return self._builds_stopped

    def stop_builds(self) -> None:
        """Creates still waiting for a build slot (a burst beyond ``build_slots``) raise
        ``BuildsStopped`` when their turn comes instead of building: a shutdown is not held
        up by, nor leaves behind, labs that nobody will watch being built. Builds under way
        finish; a pool claim needs no slot and still works."""
        self._builds_stopped = True

    def pool_report(self) -> PoolReport | None:
        """The warm pools' sizes, counters and why they are off, once ``warm`` was asked."""
        pool = self.warm_pool
        if pool is None:
            return None
        return PoolReport(pool.status(), dataclasses.asdict(pool.stats), pool.off_reason)

    def close(self) -> None:
        """Destroy the ready labs of warm pools (nobody can claim them once this instance
        is gone) and release this instance's worker threads (claimed labs keep running)."""
        self.stop_builds()
        if self.warm_pool is not None:
            self.warm_pool.stop()
        self._pool.shutdown(wait=True)
