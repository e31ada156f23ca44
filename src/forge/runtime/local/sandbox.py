"""The per-host sandbox's init: a long-lived bubblewrap process, started and handed its go.

The init holds the host's mount, pid, ipc and uts namespaces (it is pid 1 of its pid
namespace) inside the host's network namespace and cgroup, and runs the host's service
command once the lab's network is ready. Its command line is ``bwrap_args``'s; the
directories it binds are ``host_dirs``'.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

from forge.detached import STOP_SIGNALS
from forge.runtime.base import RuntimeFault
from forge.runtime.local import seccomp
from forge.runtime.local.bwrap_args import BASE_PATH, bwrap_argv, init_options, start_paths
from forge.runtime.local.bwrap_fds import options_fd
from forge.runtime.local.host_dirs import HostPaths
from forge.runtime.local.launch import start_in_lab
from forge.runtime.local.netns import netns_path, user_ns_fd
from forge.runtime.local.restarts import StartCutShort
from forge.runtime.local.rootfs import merged_root
from forge.runtime.plan import PlannedHost


@dataclass
class InitHandle:
    """A running host init: ``pid`` is its pid-namespace init as seen from the machine;
    ``go_fd`` lets its service start (``start_service``)."""

    pid: int
    proc: subprocess.Popen[bytes]
    go_fd: int


@dataclass
class PendingInit:
    """A host init that was spawned, is in its cgroup, and may still be setting up its
    sandbox (``pid``: its pid-namespace init as seen from the machine)."""

    proc: subprocess.Popen[bytes]
    pid: int
    ready_fd: int
    go_fd: int
    log: str


def spawn_init(
    host: PlannedHost,
    paths: HostPaths,
    netns: str,
    cgroup_procs: list[str],
    rootfs: str,
    uid: int,
    image: bool = False,
) -> PendingInit:
    """Start the host's sandboxed init without waiting for its setup (see ``wait_init``).

    bwrap is started directly (no wrapper process) from a thread inside the host's network
    namespace and a small mount namespace (see ``launch``), so it is born there; once it
    reported its child's pid, both are moved into the host's ``init`` cgroup, and only
    then is the sandbox let past ``--block-fd``: every process it forks (its shell, the
    service) is born inside the cgroup. ``StartCutShort`` when a stop signal killed bwrap
    before it reported its child (``restarts.restarted`` starts it again).
    """
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    log_path = os.path.join(paths.host_dir, "service.log")
    mine = [info_r, block_w, ready_r, go_w]
    theirs = [info_w, block_r, ready_w, go_r]
    proc: subprocess.Popen[bytes] | None = None
    child = 0
    try:
        with open(log_path, "ab") as log_file:
            filter_fd = seccomp.joining_filter_fd(host.caps)
            theirs.append(filter_fd)
            args_fd = options_fd(init_options(host))
            theirs.append(args_fd)
            userns_fd = user_ns_fd(netns)
            theirs.append(userns_fd)
            argv = bwrap_argv(host, paths, rootfs, uid, filter_fd, args_fd,
                              image, info_fd=info_w, block_fd=block_r, userns_fd=userns_fd)
            root = merged_root(paths.data_dir) if image else rootfs
            needed = start_paths(paths.etc_dir, root)
            proc = start_in_lab(
                netns, os.path.dirname(paths.data_dir), needed,
                lambda: _popen(argv, go_r, ready_w, log_file.fileno(),
                               (info_w, block_r, filter_fd, args_fd, userns_fd)))
        for fd in theirs:
            os.close(fd)
        theirs = []
        end = time.monotonic() + 10.0
        try:
            child = int(json.loads(_read_until(info_r, end, b"}"))["child-pid"])
        except (ValueError, KeyError, OSError) as exc:
            raise RuntimeFault(f"host {host.spec.name}: sandbox did not start ({exc}): "
                               f"{_tail(log_path)}") from None
        try:
            if _parent_of(child) != proc.pid:  # a reused pid is never moved
                gone, child = child, 0
                _end_orphan(gone, netns)
                raise ProcessLookupError(f"pid {gone} is not the sandbox's")
            for procs in cgroup_procs:
                for pid in (proc.pid, child):
                    with open(procs, "w", encoding="ascii") as fh:
                        fh.write(str(pid))
            os.write(block_w, b"1")
        except (ProcessLookupError, BrokenPipeError, FileNotFoundError) as exc:
            raise RuntimeFault(f"host {host.spec.name}: sandbox ended while starting "
                               f"({exc}): {_tail(log_path)}") from None
    except BaseException as exc:
        # The sandbox dies before its block pipe closes: bwrap takes EOF there as "go",
        # and its shell would start outside the host's cgroup.
        if proc is not None:
            _stop(proc, child or _child_of(proc.pid))
        for fd in mine + theirs:
            os.close(fd)
        if (isinstance(exc, RuntimeFault) and proc is not None and not child
                and proc.returncode is not None and -proc.returncode in STOP_SIGNALS):
            raise StartCutShort(f"host {host.spec.name}: sandbox",
                                -proc.returncode) from exc
        raise
    os.close(info_r)
    os.close(block_w)
    return PendingInit(proc, child, ready_r, go_w, log_path)


def _end_orphan(pid: int, netns: str) -> None:
    """Kill the sandbox's child ``pid`` whose bwrap died under it (an operator's kill, the
    OOM killer), and wait (bounded) for it to end. bwrap reports the child before it lets
    it run (an eventfd write): killed in between, it leaves the child waiting for ever,
    holding the host's namespaces. It is signalled through a pidfd taken before the check
    that it is in the host's network namespace (only the sandbox's processes are, in a host
    being started), so a pid reused meanwhile is never signalled: the pidfd is of the
    process checked, or of one that has ended."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # gone already
        return
    try:
        if os.path.samestat(os.stat(f"/proc/{pid}/ns/net"), os.stat(netns_path(netns))):
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_readable(pidfd, 5.0)
    except OSError:  # it ended meanwhile
        pass
    finally:
        os.close(pidfd)


def _parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _child_of(pid: int) -> int:
    """The child of the bwrap process ``pid`` when its report was not read (0: none)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            kids = fh.read().split()
    except OSError:
        return 0
    return int(kids[0]) if kids else 0


def _popen(argv: list[str], stdin: int, stdout: int, stderr: int,
           keep: tuple[int, ...]) -> subprocess.Popen[bytes]:
    """Start ``argv`` with no signal blocked (the calling worker thread's mask is what
    the process inherits) in its own session."""
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    return subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr, pass_fds=keep,
                            start_new_session=True, env={"PATH": BASE_PATH})


def _stop(proc: subprocess.Popen[bytes], child: int) -> None:
    """Kill a sandbox that may not be in its cgroup yet: its pid-namespace init first
    (the kernel then kills the namespace) while bwrap still waits for it, then bwrap;
    returns once both have ended (the init: bounded, 5 s)."""
    pidfd = -1
    if child > 0 and proc.poll() is None:
        with contextlib.suppress(OSError):  # gone already, or no pidfds (kernel < 5.3)
            pidfd = os.pidfd_open(child)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if pidfd >= 0:  # the sandbox's init is not ours to wait for: its pidfd says it ended
        try:
            _wait_readable(pidfd, 5.0)
        finally:
            os.close(pidfd)


def abort_init(pending: PendingInit) -> None:
    """Stop a spawned init that will not be used (its sandbox dies with it)."""
    os.close(pending.ready_fd)
    os.close(pending.go_fd)
    _stop(pending.proc, pending.pid)


def wait_init(pending: PendingInit, name: str, timeout: float = 10.0) -> InitHandle:
    """Wait until the sandbox is set up and its init waits for "go"; kill it on failure
    (the returned handle owns the go pipe: ``start_service`` or ``close_go``)."""
    end = time.monotonic() + timeout
    try:
        try:
            ready = _read_until(pending.ready_fd, end, b"\n")
        except OSError as exc:
            raise RuntimeFault(f"host {name}: sandbox did not start ({exc}): "
                               f"{_tail(pending.log)}") from None
        if ready != b"ready\n":
            raise RuntimeFault(f"host {name}: sandbox did not start: {_tail(pending.log)}")
    except BaseException:
        os.close(pending.go_fd)
        _stop(pending.proc, pending.pid)
        raise
    finally:
        os.close(pending.ready_fd)
    return InitHandle(pending.pid, pending.proc, pending.go_fd)


def start_service(handle: InitHandle) -> None:
    """Let the host's init start its service (once the lab's network is ready)."""
    try:
        os.write(handle.go_fd, b"go\n")
    finally:
        close_go(handle)


# The start line of a waiting init whose host has no service: it starts nothing.
NO_SERVICE_LINE = b"run\n"


def env_line(drop: list[str], env: dict[str, str], service: str) -> bytes:
    """The start line making a waiting init start its service: its own environment less
    the variables ``drop`` plus ``env`` (the staged ``FGE_`` variables and the command as
    FG_CMD), run by the lab user's script ``service`` (``exec_size.service_script``, as
    ``svc``: see ``bwrap_args.INIT_SH``). Shell-quoted words the init's subshell
    evaluates, so no value is ever a word of a command line; a newline inside one is
    spelled ``"$nl"`` so the whole line is read by one ``read``."""
    script = "export " + " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
    if drop:
        script += "; unset " + " ".join(shlex.quote(k) for k in drop)
    script += "; svc=" + shlex.quote(service)
    # A value holding a newline is single-quoted whole by shlex: close, splice, reopen.
    line = "env " + script.replace("\n", "'\"$nl\"'") + "\n"
    return line.encode("utf-8", "surrogateescape")  # as the values reach a fresh lab


def send_start(go_fd: int, line: bytes) -> None:
    """Write a start line to a waiting init and close its pipe (BrokenPipeError: the
    init is gone). The init is already reading: a line longer than the pipe's buffer
    only makes the write wait for it."""
    try:
        if os.write(go_fd, line) != len(line):
            raise BrokenPipeError("start line cut short")
    finally:
        os.close(go_fd)


def close_go(handle: InitHandle) -> None:
    """Drop the go pipe (an init still waiting on it then ends); idempotent."""
    if handle.go_fd >= 0:
        os.close(handle.go_fd)
        handle.go_fd = -1


def _tail(path: str, size: int = 400) -> str:
    """The end of a service log, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - size))
            return fh.read().decode("utf-8", "replace").strip() or "(no output)"
    except OSError:
        return "(no log)"


def _wait_readable(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` became readable within ``timeout_s`` (poll: any descriptor number,
    where select stops at 1024; a runtime holding warm pool labs' pipes has many)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(max(0, int(timeout_s * 1000 + 0.999))))


def _read_until(fd: int, deadline: float, end: bytes) -> bytes:
    """Read from ``fd`` until ``end`` was seen (returns what was read), EOF or deadline."""
    buf = b""
    while end not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("timed out")
        if _wait_readable(fd, left):
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf
