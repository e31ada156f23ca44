"""LocalRuntime: labs on one Linux machine from namespaces, bubblewrap and cgroups.

Every object a lab owns is named from (prefix, lab_id), so teardown and ``list()`` work
from what the kernel and the state directory hold, not from this process's memory: a new
instance after a crash sees, enters and destroys the labs of the previous one.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyroute2.netlink.exceptions import NetlinkError

from forge.runtime.base import (
    ExecResult,
    LabExists,
    LabInfo,
    LabNotFound,
    LabSealed,
    LabSpec,
    Runtime,
    RuntimeFault,
    RuntimeUnavailable,
    SpecError,
)
from forge.runtime.local import egress, seccomp
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.disk import mount_lab_disk, unmount_lab_disk
from forge.runtime.local.execute import enter_argv, run_captured, wrapper_env
from forge.runtime.local.grader import grader_argv, remove_snapshot, take_snapshot
from forge.runtime.local.kernel_names import Names, validate_prefix
from forge.runtime.local.netns import create_netns, list_netns, netns_path, remove_netns
from forge.runtime.local.network import (
    apply_sysctls,
    base_sysctls,
    configure_host,
    create_switch,
    wait_ports_up,
    wire_switch,
)
from forge.runtime.local.reconcile import discover, init_pid, read_meta, write_meta
from forge.runtime.local.rootfs import (
    configured_image,
    host_roots,
    merged_root,
    mount_image_root,
)
from forge.runtime.local.sandbox import (
    HostPaths,
    InitHandle,
    PendingInit,
    abort_init,
    close_go,
    host_env,
    seed_host_dir,
    spawn_init,
    start_service,
    wait_init,
    write_identity,
)
from forge.runtime.local.seeds import make_ssh_host_keys, write_root_seeds
from forge.runtime.local.service_signals import service_prefix
from forge.runtime.local.tools import missing
from forge.runtime.local.tty import SHELL_ARGV, LocalTty
from forge.runtime.local.uids import DEFAULT_CLAIMS_DIR, LabIdentity, UidPool
from forge.runtime.plan import LabPlan, PlannedHost, plan_lab, validate_host_name, validate_lab_id

if TYPE_CHECKING:
    from forge.runtime.local.warm_pool import WarmPool

REQUIRED_TOOLS = ("bwrap", "nsenter", "setpriv", "setsid", "env", "ip", "bash", "nft")
MAX_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True)
class HostInfo:
    """A host as recorded at create: approved caps, environment, root filesystem, and the
    lab's identity."""

    caps: list[str]
    env: dict[str, str]
    rootfs: str
    identity: LabIdentity
    image: bool = False


def _identity(lab_id: str, meta: dict[str, Any]) -> LabIdentity:
    ident = meta.get("identity", {})
    try:
        return LabIdentity(int(ident["learner"]), int(ident["grader"]))
    except (KeyError, TypeError, ValueError):
        raise LabNotFound(f"lab {lab_id} has no recorded identity") from None


class LocalRuntime(Runtime):
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
    ``uid_claims_dir``; ``fault_hook(stage)`` is a test seam called at each create stage.
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
        die_with_parent: bool = False,
        cgroups: Cgroups | None = None,
        fault_hook: Callable[[str], None] | None = None,
        workers: int = 16,
        uid_range: tuple[int, int] = (300000, 100000),
        uid_claims_dir: str = DEFAULT_CLAIMS_DIR,
        resolve_image: Callable[[str], str] | None = None,
        default_image: str | None = None,
    ) -> None:
        self.names = Names(validate_prefix(prefix), os.path.abspath(state_dir))
        self.rootfs = rootfs
        self.images = dict(images or {})
        self._resolve_image = resolve_image or configured_image
        self.default_image = default_image
        self.profiles = dict(egress.DEFAULT_PROFILES)
        self.profiles.update(profiles or {})
        for profile in self.profiles.values():
            egress.validate_profile(profile)
        self.uids = UidPool(uid_range[0], uid_range[1], uid_claims_dir)
        self.egress_netns = egress_netns
        self.die_with_parent = die_with_parent
        self.cgroups = cgroups or Cgroups.detect()
        self._fault = fault_hook or (lambda _stage: None)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="forge-lab")
        self._lock = threading.Lock()
        self._busy: set[str] = set()
        self._procs: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._ttys: dict[str, set[LocalTty]] = {}
        self._usable = False
        self.warm_pool: WarmPool | None = None  # see warm()

    # ----------------------------------------------------------------- checks
    def check(self) -> list[str]:
        """Missing privileges, tools or kernel features (empty list when usable)."""
        problems = []
        if os.geteuid() != 0:
            problems.append("the local runtime must run as root (euid 0)")
        problems += [f"required tool {t!r} not found on PATH"
                     for t in missing(REQUIRED_TOOLS)]
        problems += self.cgroups.problems()
        if not os.path.exists("/proc/self/ns/net"):
            problems.append("network namespaces are not supported by this kernel")
        if not os.path.isdir(self.rootfs):
            problems.append(f"rootfs {self.rootfs!r} is not a directory")
        else:
            service_prefix(self.rootfs)  # probed once here (a warning if env lacks it)
        return problems

    def _require(self) -> None:
        if self._usable:
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
            # The state directory is the atomic claim, also against other processes: a
            # create that loses the race must not tear down the winner's lab.
            os.makedirs(self.names.state_dir, mode=0o700, exist_ok=True)
            os.mkdir(self.names.lab_dir(lab_id), mode=0o700)
        except FileExistsError:
            with self._lock:
                self._busy.discard(lab_id)
            raise LabExists(f"lab {lab_id} already exists") from None
        try:
            if self.warm_pool is None or not self.warm_pool.claim(plan, roots):
                self._build(plan, roots)
        except BaseException:
            with contextlib.suppress(Exception):
                self._teardown(lab_id)
            raise
        finally:
            with self._lock:
                self._busy.discard(lab_id)
        hosts = {h.spec.name: {n.subnet: n.address for n in h.nics} for h in plan.hosts}
        return LabInfo(lab_id, hosts, "running")

    def _exists(self, lab_id: str) -> bool:
        return (os.path.exists(netns_path(self.names.switch_ns(lab_id)))
                or os.path.exists(self.names.lab_dir(lab_id))
                or any(os.path.isdir(p) for p in self.cgroups.paths(self.names.lab(lab_id))))

    def _build(self, plan: LabPlan, roots: dict[str, tuple[str, bool]]) -> None:
        lab_id, spec = plan.lab_id, plan.spec
        ident = self.uids.claim(self.names.lab_dir(lab_id))
        write_identity(self.names.lab_dir(lab_id), ident.learner, ident.grader)
        write_meta(self.names, lab_id, {
            "hosts": {h.spec.name: {"caps": h.caps, "env": host_env(h),
                                    "rootfs": roots[h.spec.name][0],
                                    "image": roots[h.spec.name][1]}
                      for h in plan.hosts},
            "identity": {"learner": ident.learner, "grader": ident.grader},
        })
        mount_lab_disk(self.names.data_root(lab_id), spec.limits.disk_mb)
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
            wait_ports_up(self.names.switch_ns(lab_id))
            self._fault("ready")
            # Services start only now: their interfaces, addresses, routes and switch
            # ports exist (a command adding an address or binding one used to race them).
            for handle in started:
                start_service(handle)
        finally:
            for left in pending.values():
                abort_init(left)
            for handle in started:
                close_go(handle)

    def _paths(self, lab_id: str, host: str) -> HostPaths:
        return HostPaths(self.names.lab_dir(lab_id), self.names.host_dir(lab_id, host),
                         self.names.data_dir(lab_id, host))

    def _prepare_host(self, plan: LabPlan, host: PlannedHost, uid: int,
                      root: tuple[str, bool]) -> PendingInit:
        """Seed dirs (and an image's root overlay, its SSH host keys and root seeds), create
        the namespace and cgroups, and spawn the sandbox init."""
        lab_id, name = plan.lab_id, host.spec.name
        paths = self._paths(lab_id, name)
        rootfs, image = root
        seed_host_dir(paths, host, uid)
        if image:
            merged = mount_image_root(name, rootfs, paths.data_dir)
            make_ssh_host_keys(merged, uid)
            write_root_seeds(merged, host, uid)
        ns = self.names.host_ns(lab_id, name)
        create_netns(ns, lambda: apply_sysctls(base_sysctls(host.spec.router)))
        stem = self.names.lab(lab_id)
        self.cgroups.create((stem, name), plan.spec.limits)
        self.cgroups.create((stem, name, "init"), None)
        self._fault("host:" + name)
        pending = spawn_init(host, paths, ns, self.cgroups.procs_files(stem, name, "init"),
                             rootfs, self.die_with_parent, uid, image)
        with self._lock:
            self._procs.setdefault(lab_id, []).append(pending.proc)
        return pending

    # ---------------------------------------------------------------- destroy
    def destroy(self, lab_id: str) -> None:
        """Kill every process, remove namespaces, links, cgroups and host dirs."""
        validate_lab_id(lab_id)
        self._teardown(lab_id)

    def destroy_many(self, lab_ids: builtins.list[str], parallel: int = 16) -> None:
        """Destroy many labs at once (a class ending, an operator's teardown), ``parallel``
        at a time: most of a teardown is waiting for the kernel (killed processes to exit,
        cgroups to empty), which overlaps. Raises after trying them all if any failed."""
        for lab_id in lab_ids:
            validate_lab_id(lab_id)
        # Every lab's processes get SIGKILL first, so they all exit while teardowns run.
        for lab_id in lab_ids:
            self.cgroups.signal_all(self.names.lab(lab_id))
        failed: builtins.list[str] = []
        with ThreadPoolExecutor(max_workers=max(1, parallel),
                                thread_name_prefix="forge-destroy") as pool:
            for lab_id, fut in zip(lab_ids, [pool.submit(self._teardown, i) for i in lab_ids],
                                   strict=True):
                if fut.exception() is not None:
                    failed.append(f"{lab_id}: {fut.exception()}")
        if failed:
            raise OSError(f"{len(failed)} of {len(lab_ids)} labs not fully destroyed: "
                          + "; ".join(failed[:5]))

    def _teardown(self, lab_id: str) -> None:
        stem = self.names.lab(lab_id)
        try:
            learner: int | None = _identity(lab_id, read_meta(self.names, lab_id)).learner
        except (LabNotFound, OSError, ValueError):
            learner = None  # a lab whose create stopped early: its claim is found by a scan
        with self._lock:
            ttys = self._ttys.pop(lab_id, set())
            procs = self._procs.pop(lab_id, [])
        for tty in ttys:
            with contextlib.suppress(Exception):
                tty.close()
        errors: list[str] = []
        # Kill everything once, wait for this instance's sandboxes (which end with their
        # processes) without polling, then make sure the cgroups are empty.
        self.cgroups.signal_all(stem)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if not self.cgroups.kill(stem):
            errors.append("processes survived SIGKILL")
        had_gateway = False
        for ns in list_netns():
            if not ns.startswith(stem + "."):  # cheap filter: every lab's names are listed
                continue
            parsed = self.names.parse(ns)
            if parsed is not None and parsed[0] == lab_id:
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
            self.cgroups.remove(stem)
        except OSError as exc:
            errors.append(f"cgroup: {exc.strerror}")
        try:
            unmount_lab_disk(self.names.data_root(lab_id))
        except OSError as exc:
            errors.append(str(exc))
        self.uids.release(self.names.lab_dir(lab_id), learner)
        shutil.rmtree(self.names.lab_dir(lab_id), ignore_errors=True)
        if os.path.exists(self.names.lab_dir(lab_id)):
            errors.append("state directory could not be removed")
        if errors:
            raise OSError(f"destroy {lab_id} incomplete: " + "; ".join(errors))

    # ------------------------------------------------------------------- list
    def list(self) -> builtins.list[LabInfo]:
        """Every lab of this prefix found in the kernel or the state directory."""
        return discover(self.names, self.cgroups)

    def _init_pid(self, lab_id: str, host: str, strict: bool = True) -> int:
        """The host init's pid (see reconcile.init_pid)."""
        return init_pid(self.names, lab_id, host, strict)

    # ------------------------------------------------------------ exec / tty
    def identity(self, lab_id: str) -> LabIdentity:
        """The uids the lab's processes (``learner``) and its checks (``grader``) run as."""
        validate_lab_id(lab_id)
        return _identity(lab_id, read_meta(self.names, lab_id))

    def _host_info(self, lab_id: str, host: str) -> HostInfo:
        """What the lab recorded for a host at create (one read of its metadata)."""
        validate_lab_id(lab_id)
        validate_host_name(host)
        meta = read_meta(self.names, lab_id)
        info = meta.get("hosts", {}).get(host)
        if info is None:
            raise LabNotFound(f"host {host} of lab {lab_id} is not known")
        return HostInfo(caps=[str(c) for c in info.get("caps", [])],
                        env={str(k): str(v) for k, v in info.get("env", {}).items()},
                        rootfs=str(info.get("rootfs", self.rootfs)),
                        identity=_identity(lab_id, meta), image=info.get("image") is True)

    def _leaf(self, lab_id: str, host: str, kind: str) -> tuple[str, str, str]:
        leaf = (self.names.lab(lab_id), host, f"{kind}{uuid.uuid4().hex[:12]}")
        self.cgroups.create(leaf, None)
        return leaf

    def _enter(self, lab_id: str, host: str, argv: builtins.list[str], kind: str) -> tuple[
        builtins.list[str], dict[str, str], tuple[str, str, str], int
    ]:
        """(command line, wrapper env, leaf cgroup, seccomp fd) for a learner process; the
        caller passes the fd to the process and closes it once the process started."""
        info = self._host_info(lab_id, host)
        pid = self._init_pid(lab_id, host)
        filter_fd = seccomp.filter_fd(info.caps)
        try:
            full = enter_argv(pid, info.caps, info.env, argv, info.identity.learner, filter_fd)
            with self._lock:  # seal() kills every leaf made before its marker, none after
                if os.path.exists(self._sealed_marker(lab_id)):
                    raise LabSealed(f"lab {lab_id} is being graded; no new terminal or "
                                    "command")
                leaf = self._leaf(lab_id, host, kind)
        except BaseException:
            os.close(filter_fd)
            raise
        return full, wrapper_env(self.cgroups.procs_files(*leaf)), leaf, filter_fd

    def exec(
        self,
        lab_id: str,
        host: str,
        argv: builtins.list[str] | None = None,
        shell: str | None = None,
        *,
        timeout: float = 30.0,
        stdin: bytes | None = None,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        """Run a command in a host with its approved capabilities only; see Runtime.exec."""
        if (argv is None) == (shell is None):
            raise SpecError("argv/shell", "give exactly one of argv or shell")
        command = ["/bin/sh", "-c", shell] if shell is not None else list(argv or [])
        if not command or any(not isinstance(a, str) or "\x00" in a for a in command):
            raise SpecError("argv", "must be a non-empty list of strings without NUL")
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise SpecError("timeout", f"must be > 0 and <= {MAX_TIMEOUT_S:.0f} seconds")
        if max_output < 0:
            raise SpecError("max_output", "must be >= 0")
        full, env, leaf, filter_fd = self._enter(lab_id, host, command, "x")
        try:
            return run_captured(
                full, env, timeout=timeout, stdin=stdin, max_output=max_output,
                kill_tree=lambda: self._kill_leaf(leaf), pass_fds=(filter_fd,),
            )
        finally:
            os.close(filter_fd)
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)

    def _kill_leaf(self, leaf: tuple[str, str, str]) -> None:
        self.cgroups.kill(*leaf)

    # ---------------------------------------------------------------- grading
    def _sealed_marker(self, lab_id: str) -> str:
        return os.path.join(self.names.lab_dir(lab_id), "sealed")

    def seal(self, lab_id: str) -> int:
        """Close the lab's terminals and kill every tty/exec process tree (services, in
        each host's ``init`` cgroup, keep running); from now on tty/exec are refused."""
        validate_lab_id(lab_id)
        if not os.path.isdir(self.names.lab_dir(lab_id)):
            raise LabNotFound(f"lab {lab_id} does not exist")
        with self._lock:
            with open(self._sealed_marker(lab_id), "w", encoding="ascii") as fh:
                fh.write("sealed\n")
            ttys = self._ttys.pop(lab_id, set())
        stem = self.names.lab(lab_id)
        leaves = [(host, leaf) for host in read_meta(self.names, lab_id).get("hosts", {})
                  for leaf in self._learner_leaves(stem, host)]
        ended = sum(len(self.cgroups.pids(stem, host, leaf)) for host, leaf in leaves)
        for tty in ttys:
            with contextlib.suppress(Exception):
                tty.close()
        for host, leaf in leaves:
            if not self.cgroups.kill(stem, host, leaf):
                raise RuntimeFault(f"lab {lab_id}: learner processes on {host} survived "
                                   "SIGKILL; not grading")
            with contextlib.suppress(OSError):
                self.cgroups.remove(stem, host, leaf)
        return ended

    def _learner_leaves(self, stem: str, host: str) -> set[str]:
        """tty (``t…``) and exec (``x…``) leaf cgroups of a host, in any hierarchy."""
        leaves: set[str] = set()
        for path in self.cgroups.paths(stem, host):
            with contextlib.suppress(FileNotFoundError):
                leaves.update(e.name for e in os.scandir(path)
                              if e.is_dir() and e.name[:1] in ("t", "x"))
        return leaves

    def run_check(
        self,
        lab_id: str,
        host: str,
        argv: builtins.list[str],
        *,
        stdin: bytes | None = None,
        timeout: float = 30.0,
        max_output: int = 1 << 20,
    ) -> ExecResult:
        """Run one grading check in a fresh grader sandbox; see Runtime.run_check."""
        if not argv or any(not isinstance(a, str) or "\x00" in a for a in argv):
            raise SpecError("argv", "must be a non-empty list of strings without NUL")
        if "=" in argv[0]:
            raise SpecError("argv[0]", "a program name must not contain '='")
        if not 0 < timeout <= MAX_TIMEOUT_S:
            raise SpecError("timeout", f"must be > 0 and <= {MAX_TIMEOUT_S:.0f} seconds")
        info = self._host_info(lab_id, host)
        self._init_pid(lab_id, host)  # the host must be up
        paths = self._paths(lab_id, host)
        snap = os.path.join(self.names.lab_dir(lab_id), "grader", uuid.uuid4().hex)
        leaf = self._leaf(lab_id, host, "g")
        filter_fd = seccomp.filter_fd([])
        try:
            take_snapshot(paths.data_dir, snap)
            full = grader_argv(
                netns_path=netns_path(self.names.host_ns(lab_id, host)),
                hostname=info.env.get("HOSTNAME", host), paths=paths, snapshot=snap,
                rootfs=merged_root(paths.data_dir) if info.image else info.rootfs,
                uid=info.identity.grader, env=info.env, argv=list(argv),
                seccomp_fd=filter_fd, image=info.image,
            )
            return run_captured(
                full, wrapper_env(self.cgroups.procs_files(*leaf)), timeout=timeout,
                stdin=stdin, max_output=max_output, kill_tree=lambda: self._kill_leaf(leaf),
                pass_fds=(filter_fd,),
            )
        finally:
            os.close(filter_fd)
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)
            remove_snapshot(snap)

    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> LocalTty:
        """A login shell on a PTY inside the host, closed when the lab is destroyed."""
        full, env, leaf, filter_fd = self._enter(lab_id, host, SHELL_ARGV, "t")

        def forget(session: LocalTty) -> None:
            with self._lock:
                self._ttys.get(lab_id, set()).discard(session)
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)

        try:
            session = LocalTty(full, env, rows, cols, lambda: self._kill_leaf(leaf), forget,
                               pass_fds=(filter_fd,))
        except BaseException:
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)
            raise
        finally:
            os.close(filter_fd)
        with self._lock:
            self._ttys.setdefault(lab_id, set()).add(session)
        return session

    # ------------------------------------------------------------ extras
    def egress_denied(self, lab_id: str) -> int:
        """Packets dropped so far by the lab's egress gateway (allowlist labs only)."""
        validate_lab_id(lab_id)
        if not os.path.exists(netns_path(self.names.gateway_ns(lab_id))):
            raise LabNotFound(f"lab {lab_id} has no egress gateway")
        return egress.denied_packets(self.names, lab_id)

    def cleanup_orphans(self) -> builtins.list[str]:
        """Destroy every lab of this prefix the kernel holds half-built or half-destroyed
        (``degraded``: a crash mid-create or mid-destroy); returns their ids. A lab being
        built by a running orchestrator looks degraded too: run it while that is stopped."""
        cleaned = []
        for info in self.list():
            if info.state == "degraded":
                self.destroy(info.lab_id)
                cleaned.append(info.lab_id)
        return cleaned

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

    def close(self) -> None:
        """Destroy the ready labs of warm pools (nobody can claim them once this instance
        is gone) and release this instance's worker threads (claimed labs keep running)."""
        if self.warm_pool is not None:
            self.warm_pool.stop()
        self._pool.shutdown(wait=True)
