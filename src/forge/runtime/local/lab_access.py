"""What a LocalRuntime offers inside a running lab: exec, terminals, sealing, grading checks.

Every learner process (an exec or a terminal) runs in a leaf cgroup of its own under the
host (``x…``, ``t…``), entered with the host's approved capabilities only; ``seal`` kills
those leaves (the host's services, in ``init``, keep running), refuses new ones and adds
the hosts' grading addresses (``grading_address``); a
grading check runs in a fresh grader sandbox on a snapshot (``grader``): its own while
the lab runs, the host's one sealed snapshot once it is sealed. Everything is
found from the lab's recorded metadata, so another runtime instance serves it too.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from forge.runtime.base import ExecResult, LabNotFound, LabSealed, RuntimeFault, SpecError
from forge.runtime.local import seccomp
from forge.runtime.local.bwrap_args import start_paths
from forge.runtime.local.bwrap_fds import options_fd
from forge.runtime.local.cgroup_tree import SurvivorsError
from forge.runtime.local.cgroups import Cgroups
from forge.runtime.local.execute import (
    enter_argv,
    enter_options,
    open_host,
    rerun_cut_short,
    run_started,
    wrapper_env,
)
from forge.runtime.local.grader import (
    check_env,
    drop_sealed_snapshots,
    grader_argv,
    not_run,
    remove_snapshot,
    sealed_snapshot,
    take_snapshot,
)
from forge.runtime.local.host_dirs import host_paths
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.landlock import in_own_domain
from forge.runtime.local.launch import LabGone, start_in_lab
from forge.runtime.local.netns import netns_path
from forge.runtime.local.probe_identity import add_grading_sources
from forge.runtime.local.reconcile import init_pid, read_meta
from forge.runtime.local.rootfs import merged_root
from forge.runtime.local.route_trim import trim_fence
from forge.runtime.local.service_signals import service_prefix
from forge.runtime.local.tty import SHELL_ARGV, LocalTty
from forge.runtime.local.uid_clash import known_to_nss
from forge.runtime.local.uids import LabIdentity
from forge.runtime.plan import validate_host_name, validate_lab_id

MAX_TIMEOUT_S = 24 * 3600.0
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class HostInfo:
    """A host as recorded at create: approved caps, environment, root filesystem, and the
    lab's identity."""

    caps: list[str]
    env: dict[str, str]
    rootfs: str
    identity: LabIdentity
    image: bool = False


def lab_identity(lab_id: str, meta: dict[str, Any]) -> LabIdentity:
    """The lab's uids as recorded in its metadata ``meta``; LabNotFound if missing."""
    ident = meta.get("identity", {})
    try:
        return LabIdentity(int(ident["learner"]), int(ident["grader"]))
    except (KeyError, TypeError, ValueError):
        raise LabNotFound(f"lab {lab_id} has no recorded identity") from None


def refuse_known_ids(lab_id: str, identity: LabIdentity) -> None:
    """RuntimeFault (no grading) when the name service now knows an account with one of
    the lab's uids: the pair was clear when the lab took it, but an account a directory
    service gave one of them later could have signalled, traced or entered the lab's
    processes and its checks, so what they show is no longer the learner's own work."""
    account = known_to_nss((identity.learner, identity.grader))
    if account is not None:
        log.error("lab %s: the name service now knows %s, one of the lab's uids; it is "
                  "not graded (FORGE_LAB_UID_RANGE must hold ids no account uses)",
                  lab_id, account)
        raise RuntimeFault(f"lab {lab_id}: one of its uids now belongs to a machine "
                           "account; not grading")


def _sandbox_fds(caps: list[str], env: dict[str, str],
                 joining: bool = False) -> tuple[int, int]:
    """The descriptors a learner process's or check's bwrap reads: the seccomp filter for
    ``caps`` (``joining``: for a learner process, which joins the host's user namespace
    after it is loaded) and its options (environment ``env``, working directory: off its command
    line, which every local user can read)."""
    filter_fd = seccomp.joining_filter_fd(caps) if joining else seccomp.filter_fd(caps)
    try:
        return filter_fd, options_fd(enter_options(env))
    except BaseException:
        os.close(filter_fd)
        raise


def _close(fds: tuple[int, ...]) -> None:
    for fd in fds:
        os.close(fd)


class Entry(NamedTuple):
    """How to start a learner process: its command line, the wrapper's environment, its
    leaf cgroup, the descriptors it is passed, and the host's approved capabilities."""

    argv: builtins.list[str]
    env: dict[str, str]
    leaf: tuple[str, str, str]
    fds: tuple[int, ...]
    caps: builtins.list[str]


def _start(caps: list[str], start: Callable[[], T]) -> T:
    """Run ``start`` (starting a learner process on a host approved ``caps``) in a Landlock
    domain of its own (``landlock``), unless the host is approved SYS_PTRACE: attaching to
    its services and to the learner's other processes is then what the approval grants."""
    if "SYS_PTRACE" in caps:
        return start()
    return in_own_domain(start)


class LabAccess:
    """Exec, tty, seal and run_check of ``LocalRuntime`` (a mixin: the attributes below are
    the runtime's)."""

    names: Names
    cgroups: Cgroups
    rootfs: str
    _lock: threading.Lock
    _ttys: dict[str, set[LocalTty]]

    def _init_pid(self, lab_id: str, host: str, strict: bool = True) -> int:
        """The host init's pid (see reconcile.init_pid)."""
        return init_pid(self.names, lab_id, host, strict)

    # ------------------------------------------------------------ exec / tty
    def identity(self, lab_id: str) -> LabIdentity:
        """The uids the lab's processes (``learner``) and its checks (``grader``) run as."""
        validate_lab_id(lab_id)
        return lab_identity(lab_id, read_meta(self.names, lab_id))

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
                        identity=lab_identity(lab_id, meta), image=info.get("image") is True)

    def _leaf(self, lab_id: str, host: str, kind: str) -> tuple[str, str, str]:
        leaf = (self.names.lab(lab_id), host, f"{kind}{uuid.uuid4().hex[:12]}")
        self.cgroups.create(leaf, None)
        return leaf

    def _enter(self, lab_id: str, host: str, argv: builtins.list[str], kind: str) -> Entry:
        """How to start a learner process (descriptors: seccomp filter, bwrap options, the
        host's namespaces and root); the caller starts it with ``_start``, passing the
        descriptors, and closes them (``_close``) once the process started."""
        info = self._host_info(lab_id, host)
        try:
            host_fds = open_host(self._init_pid(lab_id, host),
                                 netns_path(self.names.host_ns(lab_id, host)))
        except OSError as exc:  # the init ended (or its pid was reused) since it was found
            raise LabNotFound(f"host {host} of lab {lab_id} is not running ({exc})") from None
        try:
            fds: tuple[int, ...] = (*_sandbox_fds(info.caps, info.env, True), *host_fds)
        except BaseException:
            _close(host_fds)
            raise
        try:
            # Default signal dispositions: a caller started in the background (a shell
            # without job control) ignores SIGINT and SIGQUIT, and a learner's Ctrl-C
            # would then not interrupt anything in the terminal.
            full = enter_argv(host_fds, info.caps, list(info.env), argv,
                              info.identity.learner, fds[0], fds[1],
                              reset=service_prefix(info.rootfs))
            with self._lock:  # seal() kills every leaf made before its marker, none after
                if os.path.exists(self._sealed_marker(lab_id)):
                    raise LabSealed(f"lab {lab_id} is being graded; no new terminal or "
                                    "command")
                leaf = self._leaf(lab_id, host, kind)
        except BaseException:
            _close(fds)
            raise
        return Entry(full, wrapper_env(self.cgroups.procs_files(*leaf)), leaf, fds, info.caps)

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
        full, env, leaf, fds, caps = self._enter(lab_id, host, command, "x")
        try:
            return _start(caps, lambda: run_started(
                full, env, timeout=timeout, stdin=stdin, max_output=max_output,
                kill_tree=lambda: self._kill_leaf(leaf), pass_fds=fds,
            )[0])
        finally:
            _close(fds)
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)

    def _kill_leaf(self, leaf: tuple[str, str, str]) -> None:
        self.cgroups.kill(*leaf)

    # ---------------------------------------------------------------- grading
    def _sealed_marker(self, lab_id: str) -> str:
        return os.path.join(self.names.lab_dir(lab_id), "sealed")

    def sealed(self, lab_id: str) -> bool:
        """Whether the lab was sealed (its marker exists); see Runtime.sealed."""
        validate_lab_id(lab_id)
        if not os.path.isdir(self.names.lab_dir(lab_id)):
            raise LabNotFound(f"lab {lab_id} does not exist")
        return os.path.exists(self._sealed_marker(lab_id))

    def seal(self, lab_id: str) -> int:
        """Close the lab's terminals and kill every tty/exec process tree (services, in
        each host's ``init`` cgroup, keep running); from now on tty/exec are refused. Hosts
        marked ``grading_address`` then get theirs (``grading_address``), and
        probe identities (``probe_identity``)."""
        validate_lab_id(lab_id)
        if not os.path.isdir(self.names.lab_dir(lab_id)):
            raise LabNotFound(f"lab {lab_id} does not exist")
        meta = read_meta(self.names, lab_id)
        refuse_known_ids(lab_id, lab_identity(lab_id, meta))
        with self._lock:
            with open(self._sealed_marker(lab_id), "w", encoding="ascii") as fh:
                fh.write("sealed\n")
            ttys = self._ttys.pop(lab_id, set())
        stem = self.names.lab(lab_id)
        leaves = [(host, leaf) for host in meta.get("hosts", {})
                  for leaf in self._learner_leaves(stem, host)]
        ended = sum(len(self.cgroups.pids(stem, host, leaf)) for host, leaf in leaves)
        for tty in ttys:
            with contextlib.suppress(Exception):
                tty.close()
        for host, leaf in leaves:
            if not self.cgroups.kill(stem, host, leaf):
                raise RuntimeFault(f"lab {lab_id}: learner processes on {host} survived "
                                   "SIGKILL; not grading")
            try:
                self.cgroups.remove(stem, host, leaf)
            except SurvivorsError as exc:  # moved out of the pids tree and still alive
                raise RuntimeFault(f"lab {lab_id}: learner processes on {host} survived "
                                   f"SIGKILL ({exc.strerror}); not grading") from None
            except OSError:
                pass  # an empty leaf left behind: removed with the lab
        host_ns = {h: self.names.host_ns(lab_id, h) for h in meta.get("hosts", {})}
        with trim_fence(self.names.lab_dir(lab_id)):  # no route trim deletes them
            add_grading_sources(host_ns, meta)
        # Checks read snapshots taken from now on (not an earlier grading's, nor pre-kill).
        drop_sealed_snapshots(os.path.join(self.names.lab_dir(lab_id), "grader"))
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
        paths = host_paths(self.names, lab_id, host)
        grader_dir = os.path.join(self.names.lab_dir(lab_id), "grader")
        sealed = os.path.exists(self._sealed_marker(lab_id))
        snap = os.path.join(grader_dir, uuid.uuid4().hex)  # a live lab's: this check's own
        leaf = self._leaf(lab_id, host, "g")
        env = check_env(info.env)
        fds = _sandbox_fds([], env)
        try:
            if sealed:
                snap, truncated = sealed_snapshot(paths.data_dir, grader_dir, host)
            else:
                truncated = take_snapshot(paths.data_dir, snap).truncated
            if truncated is not None:
                return not_run(truncated)  # it could find absent what is there: it fails
            root = merged_root(paths.data_dir) if info.image else info.rootfs
            full = grader_argv(
                hostname=info.env.get("HOSTNAME", host), paths=paths, snapshot=snap,
                rootfs=root, uid=info.identity.grader, env_names=list(env),
                argv=list(argv), seccomp_fd=fds[0], args_fd=fds[1], image=info.image,
                reset=service_prefix(info.rootfs),
            )

            procs = self.cgroups.procs_files(*leaf)

            def attempt() -> tuple[ExecResult, int]:
                for fd in fds:  # bwrap reads them through: a run again reads them whole
                    os.lseek(fd, 0, os.SEEK_SET)
                return run_started(
                    full, wrapper_env(procs), timeout=timeout,
                    stdin=stdin, max_output=max_output,
                    kill_tree=lambda: self._kill_leaf(leaf), pass_fds=fds,
                )

            def check() -> ExecResult:
                # Here, in the thread start_in_lab placed, to its end: bwrap dies with
                # the thread that started it (--die-with-parent).
                signal.pthread_sigmask(signal.SIG_SETMASK, ())
                return rerun_cut_short(attempt)

            # What the start reads in its namespace: JOIN_SH writes the leaf's cgroup files
            needed = [*start_paths(paths.etc_dir, root), snap, paths.host_dir, *procs]
            try:
                return start_in_lab(self.names.host_ns(lab_id, host),
                                    os.path.dirname(paths.data_dir), needed, check,
                                    keep_sys=True)  # JOIN_SH writes cgroup.procs by path
            except LabGone:  # the lab is being torn down under the check
                raise LabNotFound(f"host {host} of lab {lab_id} is not running") from None
        finally:
            _close(fds)
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)
            if not sealed:
                remove_snapshot(snap)

    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> LocalTty:
        """A login shell on a PTY inside the host, closed when the lab is destroyed."""
        full, env, leaf, fds, caps = self._enter(lab_id, host, SHELL_ARGV, "t")

        def forget(session: LocalTty) -> None:
            with self._lock:
                self._ttys.get(lab_id, set()).discard(session)
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)

        try:
            session = _start(caps, lambda: LocalTty(
                full, env, rows, cols, lambda: self._kill_leaf(leaf), forget, pass_fds=fds))
        except BaseException:
            with contextlib.suppress(OSError):
                self.cgroups.remove(*leaf)
            raise
        finally:
            _close(fds)
        with self._lock:
            self._ttys.setdefault(lab_id, set()).add(session)
        return session
