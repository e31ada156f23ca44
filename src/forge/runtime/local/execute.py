"""Run a command inside a host: enter its namespaces, drop capabilities, capture output.

The command line is: join the exec's own leaf cgroup (so the whole process tree can be
found and killed), ``nsenter`` the init's mount/uts/ipc/net/pid namespaces and root
(nsenter keeps the caller's full capabilities) through descriptors the runtime opened
(``open_host``: the process starts in a Landlock domain of its own, see ``landlock``,
which may not open another process's /proc entries), bash closing those descriptors,
then ``bwrap`` over the host's own root only to load the lab's seccomp filter, then
``nsenter`` into the user namespace owning the host's network namespace
(``netns.create_host_netns``), then
``setpriv`` to become the lab user with only the approved capabilities and no-new-privs,
then the lab user's ``/bin/sh`` sets the host environment and runs the command. The
environment's values never appear on a command line (nsenter waits for the command as
long as it runs, and any local user can read its argv): they are bwrap options read from
a descriptor (``bwrap_fds``), each under a ``FGE_`` name, so the root steps before the
privilege drop (bwrap, setpriv) run with the fixed PATH and nothing a template or learner
chose (a PATH entry the learner can write, LD_PRELOAD): only the lab user's shell renames
them to the host's names (``env_sh``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from forge.detached import STOP_SIGNALS
from forge.runtime.base import ExecResult, SpecError
from forge.runtime.local.bwrap_args import BASE_PATH, JOIN_SH, setpriv_argv, staged_env_options
from forge.runtime.local.netns import own_user_ns
from forge.runtime.local.restarts import StartCutShort, restarted
from forge.runtime.local.tools import tool
from forge.templates.exec_size import rename_script

# The init's namespaces nsenter enters, in its option names, and then its root. The user
# namespace comes apart (``own_user_ns``: the one owning the host's network namespace; the
# init itself stays in the machine's): a lab made before each host had its own
# (``create_host_netns``) and still live across an upgrade has none.
_NAMESPACES = (("mnt", "--mount"), ("uts", "--uts"), ("ipc", "--ipc"), ("net", "--net"),
               ("pid", "--pid"))


def open_host(init_pid: int, netns: str) -> tuple[int, ...]:
    """Descriptors of the namespaces (``_NAMESPACES``' order, then the host's own user
    namespace when it has one) and root of the host whose
    init is ``init_pid`` and whose network namespace is mounted at ``netns``, for
    ``enter_argv``; the caller passes them to the process and closes them once it
    started. OSError when the pid is no longer that host's (it ended, or was reused).

    A pidfd taken first pins the process: if it is still alive after the opens, no other
    process can have had its pid in between, so every descriptor is of one process, and
    that process is in the host's network namespace."""
    fds: list[int] = []
    pidfd = os.pidfd_open(init_pid)
    try:
        for kind, _option in _NAMESPACES:
            fds.append(os.open(f"/proc/{init_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
        if (owner := own_user_ns(fds[3])) is not None:
            fds.append(owner)
        fds.append(os.open(f"/proc/{init_pid}/root",
                           os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        held, mounted = os.fstat(fds[3]), os.stat(netns)
        if (held.st_dev, held.st_ino) != (mounted.st_dev, mounted.st_ino):
            raise ProcessLookupError(f"pid {init_pid} is not in the host's namespaces")
        signal.pidfd_send_signal(pidfd, 0)  # ProcessLookupError: it ended during the opens
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        os.close(pidfd)
    return tuple(fds)


def enter_argv(
    host_fds: tuple[int, ...], caps: list[str], env_names: list[str], argv: list[str],
    uid: int, seccomp_fd: int, args_fd: int, *, reset: tuple[str, ...] = (),
) -> list[str]:
    """Command line running ``argv`` as the lab user inside the host whose namespaces and
    root ``host_fds`` hold (``open_host``), under the seccomp filter read from
    ``seccomp_fd``, with the environment (``env_names`` of it) and working directory read
    from ``args_fd`` (``enter_options``). Past nsenter, the host's bash (Essential in every
    Debian root) closes ``host_fds`` but the user namespace's: no lab process holds them.
    The host's user namespace is joined last, after bwrap loaded the filter (the joining
    one, ``seccomp.joining_filter_fd``) and right before setpriv: bwrap, which stays as the
    command's parent, is then root of the machine's user namespace, out of reach of a
    learner approved SYS_PTRACE (which is held in the host's); the command keeps a
    descriptor of its own user namespace, which it can open anyway (/proc/self/ns/user).
    ``reset`` (the root's
    ``service_signals.service_prefix``) runs as the lab user before the host environment is
    set (the host's LD_PRELOAD loads into the command only), and the command starts with
    default signal dispositions whatever its caller ignored."""
    if "=" in argv[0]:  # kept from when env(1) ran it: a program name never holds one
        raise SpecError("argv[0]", "a program name must not contain '='")
    if argv[0].startswith("-"):  # a shell's exec would take it for an option
        raise SpecError("argv[0]", "a program name must not start with '-'")
    *spaces, root = host_fds
    user = spaces[len(_NAMESPACES):]  # the host's own user namespace, when it has one
    enter = [f"{option}=/proc/self/fd/{fd}" for (_kind, option), fd
             in zip(_NAMESPACES, spaces[:len(_NAMESPACES)], strict=True)]
    close = " ".join(f"{fd}<&-" for fd in host_fds if fd not in user)
    join = [f"--user=/proc/self/fd/{fd}" for fd in user]
    return [
        "/bin/sh", "-c", JOIN_SH, "fg-join",
        tool("nsenter"), *enter, f"--root=/proc/self/fd/{root}", "--",
        "/bin/bash", "-c", f'exec {close}; exec "$@"', "fg-enter",
        "bwrap", "--dev-bind", "/", "/", "--seccomp", str(seccomp_fd), "--args",
        str(args_fd), "--", *(["nsenter", *join, "--"] if join else []),
        *setpriv_argv(uid, caps), *reset, *env_sh(env_names), *argv,
    ]


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def enter_options(env: dict[str, str]) -> list[str]:
    """The secret bwrap options of a learner process or check: the fixed PATH for the root
    steps, each of ``env`` under its ``FGE_`` name (``env_sh`` gives them their names as
    the lab user), /workspace as the working directory."""
    return [*staged_env_options(env), "--chdir", "/workspace"]


def env_sh(names: list[str]) -> list[str]:
    """The lab user's shell that turns the ``FGE_`` variables into exactly the host
    environment ``names`` (``exec_size.rename_script``: no ``FGE_`` name, nor the shell's
    own PWD, OLDPWD or SHLVL, left over) and runs the command; names only, never a value,
    are on its command line."""
    if not names or any(not _NAME.fullmatch(n) for n in names):
        raise SpecError("environment", "names must be shell variable names")
    return ["/bin/sh", "-c", rename_script(names), "fg-env"]


def wrapper_env(cgroup_procs: list[str]) -> dict[str, str]:
    """Environment of the wrapper (consumed before the command starts)."""
    return {"PATH": BASE_PATH, "FG_CG": ":".join(cgroup_procs)}


class _Capture:
    """Keeps the first ``cap`` bytes of a stream and hashes all of it."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.size = 0
        self.digest = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        self.digest.update(data)
        room = self.cap - len(self.kept)
        if room > 0:
            self.kept += data[:room]


def _feed_stdin(proc: subprocess.Popen[bytes], data: bytes | None) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        if data:
            proc.stdin.write(data)
    with contextlib.suppress(BrokenPipeError, OSError):
        proc.stdin.close()


def rerun_cut_short(run: Callable[[], tuple[ExecResult, int]]) -> ExecResult:
    """``run()`` (``run_started`` of a grading check), run again (``restarts.restarted``)
    while the process it started died of a stop signal. A check's command runs in a pid
    namespace below that process and cannot signal it: such an end is a stop of the
    service that caught it before it left the process group (``forge.detached``), and the
    check's own result would be an exit 143 it never gave (a FAIL not earned), so one cut
    short every time raises ``StartCutShort`` (a RuntimeFault) rather than give it."""
    def attempt() -> ExecResult:
        result, status = run()
        if -status in STOP_SIGNALS:
            raise StartCutShort("a grading check", -status)
        return result

    return restarted(attempt)


def run_started(
    argv: list[str],
    env: dict[str, str],
    *,
    timeout: float,
    stdin: bytes | None,
    max_output: int,
    kill_tree: Callable[[], None],
    pass_fds: tuple[int, ...] = (),
) -> tuple[ExecResult, int]:
    """Run ``argv``; on timeout call ``kill_tree`` (kills every process of the command).

    Output is read until the command exits; then every process it left running in the
    background is killed too (an exec runs to completion; services belong in the host's
    ``command``) and the remaining buffered output is drained. Returns the result and the
    started process's own wait status (``Popen.returncode``: negative when a signal ended
    it; ``rerun_cut_short`` reads it).
    """
    start = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, start_new_session=True, pass_fds=pass_fds,
    )
    writer = threading.Thread(target=_feed_stdin, args=(proc, stdin), daemon=True)
    writer.start()
    out, err = _Capture(max_output), _Capture(max_output)
    assert proc.stdout is not None and proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
    timed_out = False
    deadline = start + timeout
    drain_until: float | None = None
    while sel.get_map():
        now = time.monotonic()
        if drain_until is None:
            ended = proc.poll() is not None
            # Ended is never timed out, though the deadline has passed: this loop may not
            # have run for a while (the service paused, a VM stalled) while the command
            # finished in time.
            timed_out = not ended and now >= deadline
            if timed_out or ended:
                # The command ended (or ran out of time): kill whatever it left behind so
                # the pipes reach EOF, then drain what is buffered.
                kill_tree()
                drain_until = now + 1.0
        elif now > drain_until:
            break
        wait = 0.05 if drain_until is not None else min(0.05, max(0.0, deadline - now))
        for key, _ev in sel.select(wait):
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if chunk:
                key.data.feed(chunk)
            else:
                sel.unregister(key.fileobj)
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    if proc.poll() is None:
        timed_out = timed_out or time.monotonic() >= deadline
        kill_tree()
    status = proc.wait()
    writer.join(timeout=1)
    code = 128 - status if status < 0 else status
    result = ExecResult(
        exit_code=code,
        stdout=bytes(out.kept),
        stderr=bytes(err.kept),
        stdout_sha256=out.digest.hexdigest(),
        stderr_sha256=err.digest.hexdigest(),
        stdout_size=out.size,
        stderr_size=err.size,
        truncated=out.size > max_output or err.size > max_output,
        duration_s=time.monotonic() - start,
        timed_out=timed_out,
    )
    return result, status
