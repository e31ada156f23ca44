"""The per-host sandbox: seeded host directories and a long-lived bubblewrap init.

The init holds the host's mount, pid, ipc and uts namespaces (it is pid 1 of its pid
namespace) inside the host's network namespace and cgroup, and runs the host's service
command. The root filesystem is a read-only view of selected system directories of the
machine, or, on an image, the host's own overlay of it (see ``rootfs``); the operator's
data (/root, /home, /work, /var, /etc/shadow, ssh keys) is never visible. /home,
/workspace, /srv, /tmp and /var/tmp are per-host binds of the lab's disk (one
size-capped tmpfs, see ``disk``); /run (and /var without an image) are tiny root-owned
tmpfs.

Every lab process runs as the lab's own unprivileged user (``learner``, a uid no other
lab has, see ``uids``) whose only capabilities are the approved ones, as ambient
capabilities (uid 0 without capabilities would still own the machine's global sysctls
and root-owned files), under the default seccomp filter (see ``seccomp``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from dataclasses import dataclass

from forge.runtime.base import RuntimeFault
from forge.runtime.local import seccomp
from forge.runtime.local.launch import start_in_lab
from forge.runtime.local.rootfs import image_root_args, merged_root, run_dir_args
from forge.runtime.local.service_signals import service_prefix
from forge.runtime.local.tools import tool
from forge.runtime.plan import READONLY_DIRS, WRITABLE_DIRS, PlannedHost, seed_mode
from forge.templates.seedpaths import effective_owner, under

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
MASKED_FILES = ("etc/shadow", "etc/gshadow", "etc/shadow-", "etc/gshadow-")
MASKED_DIRS = ("etc/ssh", "etc/ssl/private", "etc/sudoers.d")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Joins the cgroups listed in FG_CG (colon separated) before exec'ing the real command,
# so that every process of the command, including forks, is born inside them.
JOIN_SH = (
    'IFS=:; for f in $FG_CG; do echo $$ > "$f" || exit 125; done; '
    'unset FG_CG IFS; exec "$@"'
)
# The sandbox's first command: reports readiness on its stdout (a pipe to the runtime),
# then sends further output to stderr (the host's service log), waits for "go" on stdin
# (sent once the lab's network is wired and configured, so a service never starts before
# its interfaces and addresses exist; a closed pipe without "go" ends the sandbox), starts
# the service as the lab user ("$@" is the setpriv prefix, after the root's
# ``env --default-signal`` where it has the option: it undoes the SIGINT/SIGQUIT ignore the
# shell gives a background command, see ``service_signals``), then idles holding the
# namespaces. The idler stays uid 0 (with bwrap's few capabilities) so the lab user
# cannot kill it, even with ``kill -9 -1``; no-new-privs is already set by bwrap.
INIT_SH = (
    'echo ready; exec 1>&2; read -r go && [ "$go" = go ] || exit 1; exec 0</dev/null; '
    'cmd=$1; shift; '
    'if [ -n "$cmd" ]; then "$@" /bin/sh -c "$cmd" & fi; exec sleep infinity'
)


def host_env(host: PlannedHost) -> dict[str, str]:
    """Environment of every process in a host (services, exec, tty)."""
    env = {
        "PATH": BASE_PATH,
        "HOME": "/home",
        "LANG": "C.UTF-8",
        "HOSTNAME": host.hostname,
        "TERM": "xterm-256color",
    }
    env.update(host.spec.environment)
    return env


def setpriv_argv(uid: int, caps: list[str]) -> list[str]:
    """``setpriv`` switching to the lab user with only ``caps`` (ambient, so they survive
    exec as a non-root user), no-new-privs and a bounding set of just ``caps``."""
    keep = "-all" + "".join(f",+{c.lower()}" for c in caps)
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            f"--inh-caps={keep}", f"--ambient-caps={keep}", f"--bounding-set={keep}",
            "--no-new-privs", "--"]


# A lab has no DNS server: with no nameserver line the resolver asks 127.0.0.1, which
# refuses at once, instead of waiting seconds on the machine's unreachable resolver.
RESOLV_CONF = "# Forge lab hosts have no DNS; use addresses.\noptions timeout:1 attempts:1\n"
HOSTS = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
# lab-directory file → the /etc file it is bound over
LAB_ETC_FILES = {"passwd": "passwd", "group": "group", "etc-hosts": "hosts",
                 "etc-resolv.conf": "resolv.conf"}


def write_identity(lab_dir: str, uid: int, grader: int) -> None:
    """passwd/group (naming the lab user and the grader), hosts and resolv.conf, bound
    over /etc's."""
    users = (f"root:x:0:0:root:/root:/bin/sh\nlearner:x:{uid}:{uid}:Forge learner:/home:"
             f"/bin/bash\ngrader:x:{grader}:{grader}:Forge grader:/nonexistent:"
             "/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
    groups = f"root:x:0:\nlearner:x:{uid}:\ngrader:x:{grader}:\nnogroup:x:65534:\n"
    files = (("passwd", users), ("group", groups), ("etc-hosts", HOSTS),
             ("etc-resolv.conf", RESOLV_CONF))
    for name, text in files:
        with open(os.path.join(lab_dir, name), "w", encoding="utf-8") as fh:
            fh.write(text)


@dataclass(frozen=True)
class HostPaths:
    """Where one host lives on the machine: ``host_dir`` (read-only seeds, init pid, log),
    ``data_dir`` (its writable trees, on the lab's size-capped disk) and ``lab_dir``
    (the identity files bound over /etc)."""

    lab_dir: str
    host_dir: str
    data_dir: str


# In-host path -> directory under the host's data_dir (all on the lab's disk).
DATA_BINDS = {**{d: d.lstrip("/") for d in WRITABLE_DIRS}, "/tmp": "tmp",  # noqa: S108
              "/var/tmp": "var-tmp"}  # noqa: S108
STICKY = ("tmp", "var-tmp")


def seed_host_dir(paths: HostPaths, host: PlannedHost, uid: int) -> None:
    """Create the host's directories and its seeds under /home, /workspace, /srv (owned by
    the lab user unless the seed says ``root``) and /opt/forge (root's, bound read-only);
    an image host's other seeds go into its root overlay (``seeds.write_root_seeds``)."""
    os.makedirs(paths.host_dir, mode=0o755, exist_ok=True)
    os.makedirs(paths.data_dir, mode=0o755, exist_ok=True)
    # A directory holding a root-owned seed stays root's (the learner owning it could
    # rename the seed away and put their own file in its place); a top-level directory
    # holding one becomes root's and sticky, like /tmp: the learner still creates files
    # there but moves or deletes only their own.
    kept = {os.path.dirname(p) for p in host.spec.files
            if under(p, WRITABLE_DIRS) and effective_owner(p, host.spec.owners.get(p)) != "learner"}
    kept = {a for d in kept for a in _ancestors(d)}
    for sub in DATA_BINDS.values():
        path = os.path.join(paths.data_dir, sub)
        os.makedirs(path, mode=0o755, exist_ok=True)
        if sub in STICKY or "/" + sub in kept:
            os.chown(path, 0, 0)  # a pool lab's dir was the learner's until its claim
            os.chmod(path, 0o1777)  # noqa: S103 - sticky scratch dirs, like /tmp
        else:
            os.chown(path, uid, uid)
    for d in READONLY_DIRS:  # root-owned; bound read-only into the host
        os.makedirs(os.path.join(paths.host_dir, d.lstrip("/")), mode=0o755, exist_ok=True)
    for path, content in host.spec.files.items():
        writable = under(path, WRITABLE_DIRS)
        if not writable and not under(path, READONLY_DIRS):
            continue  # a root seed of an image host
        owned = writable and effective_owner(path, host.spec.owners.get(path)) == "learner"
        base = paths.data_dir if writable else paths.host_dir
        target = os.path.join(base, path.lstrip("/"))
        top = os.path.join(base, path.lstrip("/").split("/")[0])
        parent = os.path.dirname(target)
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o755)
            while owned and parent != top:
                if "/" + os.path.relpath(parent, base) not in kept:
                    os.chown(parent, uid, uid)
                parent = os.path.dirname(parent)
        data = content.encode() if isinstance(content, str) else content
        mode = seed_mode(host.spec, path, data)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(target, mode)
        if owned:
            os.chown(target, uid, uid)


def _ancestors(path: str) -> list[str]:
    """``path`` and every directory above it, up to (not including) ``/``."""
    out = []
    while path not in ("/", ""):
        out.append(path)
        path = os.path.dirname(path)
    return out


def rootfs_args(rootfs: str, image: bool = False, writable: bool = False) -> list[str]:
    """bwrap arguments giving a read-only root built from ``rootfs``'s system dirs, or,
    for an ``image``, the host's root overlay ``rootfs`` (see ``rootfs``)."""
    if image:
        return image_root_args(rootfs, writable)
    args: list[str] = []
    for d in SYSTEM_DIRS:
        src = os.path.join(rootfs, d)
        if os.path.islink(src) and rootfs == "/":
            args += ["--symlink", os.readlink(src), f"/{d}"]
        elif os.path.isdir(src):
            args += ["--ro-bind", src, f"/{d}"]
    for f in MASKED_FILES:
        if os.path.isfile(os.path.join(rootfs, f)):
            args += ["--ro-bind", "/dev/null", f"/{f}"]
    for d in MASKED_DIRS:
        if os.path.isdir(os.path.join(rootfs, d)):
            args += ["--tmpfs", f"/{d}"]
    return args


def system_args(rootfs: str, lab_dir: str, image: bool = False,
                writable: bool = False) -> list[str]:
    """bwrap arguments shared by a host's sandbox and its grader's: the root (the
    machine's system dirs read-only, or an image host's root overlay ``rootfs``: writable
    for the host, read-only for the grader), the lab's identity files over /etc, private
    /proc, /dev and a tiny root-owned /run (with an image's /run dirs) and, without an
    image, /var."""
    argv = rootfs_args(rootfs, image, writable)
    for name, target in LAB_ETC_FILES.items():
        argv += ["--ro-bind", os.path.join(lab_dir, name), f"/etc/{target}"]
    argv += ["--proc", "/proc", "--dev", "/dev", "--size", str(SMALL_TMPFS), "--tmpfs", "/run"]
    if image:
        return [*argv, *run_dir_args(rootfs)]
    return [*argv, "--size", str(SMALL_TMPFS), "--tmpfs", "/var"]


SMALL_TMPFS = 1 << 20


def readonly_seed_args(host_dir: str) -> list[str]:
    """Bind the host's read-only seeds (e.g. /opt/forge graders)."""
    argv: list[str] = []
    for d in READONLY_DIRS:  # the parent (e.g. /opt) would otherwise be created 0700
        argv += ["--perms", "0755", "--dir", os.path.dirname(d),
                 "--ro-bind", os.path.join(host_dir, d.lstrip("/")), d]
    return argv


def bwrap_argv(
    host: PlannedHost, paths: HostPaths, rootfs: str, die_with_parent: bool, uid: int,
    seccomp_fd: int, image: bool = False, info_fd: int = -1, block_fd: int = -1,
) -> list[str]:
    """Full bubblewrap command line for a host's init (on an ``image``, its root is the
    overlay ``rootfs.mount_image_root`` mounted in the host's data dir); bwrap reports its
    child's pid on ``info_fd`` and holds the sandbox before its first command until a
    byte arrives on ``block_fd`` (the runtime moves it into the host's cgroup first)."""
    argv = [tool("bwrap"), "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", host.hostname, "--new-session"]
    if die_with_parent:
        argv.append("--die-with-parent")
    root = merged_root(paths.data_dir) if image else rootfs
    argv += system_args(root, paths.lab_dir, image, writable=True)
    for target, sub in DATA_BINDS.items():
        argv += ["--bind", os.path.join(paths.data_dir, sub), target]
    argv += readonly_seed_args(paths.host_dir)
    # bwrap keeps just what setpriv needs to become the lab user with the approved caps.
    if not image:  # an image host's root is its own overlay; file permissions guard it
        argv += ["--remount-ro", "/"]
    argv += ["--chdir", "/workspace", "--cap-drop", "ALL"]
    for cap in sorted({*host.caps, "SETUID", "SETGID", "SETPCAP"}):
        argv += ["--cap-add", f"CAP_{cap}"]
    argv += ["--seccomp", str(seccomp_fd), "--clearenv"]
    for key, value in host_env(host).items():
        argv += ["--setenv", key, value]
    argv += ["--info-fd", str(info_fd), "--block-fd", str(block_fd), "--", "/bin/sh", "-c",
             INIT_SH, "fg-init", host.spec.command or "", *service_prefix(rootfs),
             *setpriv_argv(uid, host.caps)]
    return argv


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
    die_with_parent: bool,
    uid: int,
    image: bool = False,
) -> PendingInit:
    """Start the host's sandboxed init without waiting for its setup (see ``wait_init``).

    bwrap is started directly (no wrapper process) from a thread inside the host's network
    namespace and a small mount namespace (see ``launch``), so it is born there; once it
    reported its child's pid, both are moved into the host's ``init`` cgroup, and only
    then is the sandbox let past ``--block-fd``: every process it forks (its shell, the
    service) is born inside the cgroup.
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
        with open(log_path, "ab") as log:
            filter_fd = seccomp.filter_fd(host.caps)
            theirs.append(filter_fd)
            argv = bwrap_argv(host, paths, rootfs, die_with_parent, uid, filter_fd, image,
                              info_fd=info_w, block_fd=block_r)
            root = merged_root(paths.data_dir) if image else rootfs
            needed = [os.path.join(paths.lab_dir, "passwd"), root,
                      *(os.path.join(root, d) for d in SYSTEM_DIRS)]
            proc = start_in_lab(
                netns, os.path.dirname(paths.data_dir), needed,
                lambda: _popen(argv, go_r, ready_w, log.fileno(), (info_w, block_r, filter_fd)))
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
            if _parent_of(child) != proc.pid:  # a reused pid is never moved or killed
                gone, child = child, 0
                raise ProcessLookupError(f"pid {gone} is not the sandbox's")
            for procs in cgroup_procs:
                for pid in (proc.pid, child):
                    with open(procs, "w", encoding="ascii") as fh:
                        fh.write(str(pid))
            os.write(block_w, b"1")
        except (ProcessLookupError, BrokenPipeError, FileNotFoundError) as exc:
            raise RuntimeFault(f"host {host.spec.name}: sandbox ended while starting "
                               f"({exc}): {_tail(log_path)}") from None
    except BaseException:
        # The sandbox dies before its block pipe closes: bwrap takes EOF there as "go",
        # and its shell would start outside the host's cgroup.
        if proc is not None:
            _stop(proc, child or _child_of(proc.pid))
        for fd in mine + theirs:
            os.close(fd)
        raise
    os.close(info_r)
    os.close(block_w)
    return PendingInit(proc, child, ready_r, go_w, log_path)


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
            select.select([pidfd], [], [], 5.0)
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


def _read_until(fd: int, deadline: float, end: bytes) -> bytes:
    """Read from ``fd`` until ``end`` was seen (returns what was read), EOF or deadline."""
    buf = b""
    while end not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError("timed out")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf
