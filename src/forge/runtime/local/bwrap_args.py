"""The command lines of a host's sandbox: bubblewrap's arguments and the init's script.

The root filesystem is a read-only view of selected system directories of the machine,
or, on an image, the host's own overlay of it (see ``rootfs``); the operator's data
(/root, /home, /work, /var, /etc/shadow, ssh keys) is never visible. /home, /workspace,
/srv, /tmp and /var/tmp are per-host binds of the lab's disk (``host_dirs``); /run (and
/var without an image) are tiny root-owned tmpfs.

Every lab process runs as the lab's own unprivileged user (``learner``, a uid no other
lab has, see ``uids``) whose only capabilities are the approved ones, as ambient
capabilities (uid 0 without capabilities would still own the machine's global sysctls
and root-owned files), under the default seccomp filter (see ``seccomp``). A service
started by the init also keeps ``SERVICE_MARK_CAP``, which no learner process has: the
kernel refuses a process access to the memory, descriptors and environment of one
holding a capability it lacks, so the learner (same uid, same pid namespace) can still
see and signal a service but cannot take it over and outlive the seal inside it.
"""

from __future__ import annotations

import os

from forge.runtime.local.host_dirs import DATA_BINDS, LAB_ETC_FILES, HostPaths
from forge.runtime.local.host_ptys import host_ptys_args
from forge.runtime.local.machine_etc import machine_etc_args
from forge.runtime.local.rootfs import image_root_args, merged_root, run_dir_args
from forge.runtime.local.service_signals import service_prefix
from forge.runtime.local.tools import tool
from forge.runtime.plan import READONLY_DIRS, PlannedHost
from forge.templates.dsl_limits import SERVICE_MARK_CAP
from forge.templates.exec_size import COMMAND_VAR, ENV_PREFIX, service_script

SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Joins the cgroups listed in FG_CG (colon separated) before exec'ing the real command,
# so that every process of the command, including forks, is born inside them.
JOIN_SH = (
    'IFS=:; for f in $FG_CG; do echo $$ > "$f" || exit 125; done; '
    'unset FG_CG IFS; exec "$@"'
)
# The sandbox's first command, run as the sandbox's root with only the fixed PATH and the
# host's environment under ``FGE_`` names (``init_options``: no variable a template chose,
# a PATH entry or LD_PRELOAD, reaches a root step: the shell, ``env``, ``setpriv``; on
# an image host the programs on the fixed PATH are the image's, and its seeds'). Its
# first argument is the service's script (``exec_size.service_script``: the lab user's
# shell that gives the variables their names and runs FG_CMD; names only, never a value);
# it takes the service command from FG_CMD (set through bwrap's --args descriptor, never
# a command line: see ``bwrap_fds``) and unsets it, reports readiness on its stdout (a
# pipe to the runtime), then sends further output to stderr (the host's service log),
# waits for its start line on stdin (sent once the lab's network is wired and configured,
# so a service never starts before its interfaces and addresses exist; a closed pipe
# without one ends the sandbox), starts the service as the lab user ("$@" is the setpriv
# prefix, after the root's ``env --default-signal`` where it has the option: it undoes the
# SIGINT/SIGQUIT ignore the shell gives a background command, see ``service_signals``),
# then idles holding the namespaces: it stops itself (SIGSTOP), which costs no program
# start, where ``exec sleep infinity`` cost one per host (≈0.7 ms of CPU per host, measured
# with ``perf``); a stopped shell still dies of SIGKILL or SIGTERM (the teardown). The lab
# user can continue it (SIGCONT crosses uids within a session, and bwrap's --new-session
# gives the init and its service one): it only stops itself again, a shell builtin with
# nothing looked up on PATH, so no program of the lab's choosing ever runs as root there
# (review AU). Services start with no core dumps, hard limit
# included (the learner, same uid, may raise a service's soft limit and crash it: its core
# would land in /workspace with the service's memory). The idler stays uid 0 (with bwrap's few
# capabilities) so the lab user cannot kill it, even with ``kill -9 -1``;
# no-new-privs is already set by bwrap.
# Start lines: ``go`` runs the command given at build (a fresh lab); ``env SCRIPT`` runs
# SCRIPT (shell-quoted ``unset`` and ``export`` of the claiming scenario's staged
# environment and command, and ``svc=`` its service script, written by the runtime:
# ``sandbox.env_line``) in a subshell that then starts the service (a warm pool lab, whose
# scenario is known only when claimed: its values travel in the pipe, never in an argv);
# ``run`` starts nothing (a pool lab's host without a service).
INIT_SH = (
    'ulimit -c 0 || exit 1; '
    f'cmd=${COMMAND_VAR}; unset {COMMAND_VAR}; svc=$1; shift; '
    'echo ready; exec 1>&2; IFS= read -r go || exit 1; exec 0</dev/null; '
    "nl='\n'; "
    'case $go in '
    f'go) if [ -n "$cmd" ]; then {COMMAND_VAR}=$cmd "$@" /bin/sh -c "$svc" & fi ;; '
    '"env "*) (eval "${go#env?}" && exec "$@" /bin/sh -c "$svc") & ;; '
    'run) ;; '
    '*) exit 1 ;; '
    'esac; while :; do kill -s STOP $$; done'
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


def staged_env_options(env: dict[str, str]) -> list[str]:
    """bubblewrap options giving a root step only the fixed PATH and each of ``env`` under
    its ``FGE_`` name, for the lab user's shell to rename (``exec_size``)."""
    options = ["--clearenv", "--setenv", "PATH", BASE_PATH]
    for key, value in env.items():
        options += ["--setenv", ENV_PREFIX + key, value]
    return options


def start_paths(etc_dir: str, root: str) -> list[str]:
    """Paths a sandbox's bwrap reads from the mount namespace it starts in (the lab's
    identity files, its root's system dirs): ``launch.start_in_lab`` checks them there."""
    return [os.path.join(etc_dir, "passwd"), root,
            *(os.path.join(root, d) for d in (*SYSTEM_DIRS, "etc"))]


def setpriv_argv(uid: int, caps: list[str]) -> list[str]:
    """``setpriv`` switching to the lab user with only ``caps`` (ambient, so they survive
    exec as a non-root user), no-new-privs and a bounding set of just ``caps``."""
    keep = "-all" + "".join(f",+{c.lower()}" for c in caps)
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            f"--inh-caps={keep}", f"--ambient-caps={keep}", f"--bounding-set={keep}",
            "--no-new-privs", "--"]


def rootfs_args(rootfs: str, etc_dir: str, image: bool = False,
                writable: bool = False) -> list[str]:
    """bwrap arguments giving a read-only root built from ``rootfs``'s system dirs with the
    lab's own /etc (``machine_etc``), or, for an ``image``, the host's root overlay
    ``rootfs`` (see ``rootfs``) with the lab's identity files bound over its /etc's."""
    if image:
        args = image_root_args(rootfs, writable)
        for name, target in LAB_ETC_FILES.items():
            args += ["--ro-bind", os.path.join(etc_dir, name), f"/etc/{target}"]
        return args
    args = []
    for d in SYSTEM_DIRS:
        src = os.path.join(rootfs, d)
        if os.path.islink(src) and rootfs == "/":
            args += ["--symlink", os.readlink(src), f"/{d}"]
        elif os.path.isdir(src):
            args += ["--ro-bind", src, f"/{d}"]
    return [*args, *machine_etc_args(rootfs, etc_dir)]


def system_args(rootfs: str, etc_dir: str, image: bool = False,
                writable: bool = False) -> list[str]:
    """bwrap arguments shared by a host's sandbox and its grader's: the root (the
    machine's system dirs read-only, or an image host's root overlay ``rootfs``: writable
    for the host, read-only for the grader), the lab's identity files in /etc, private
    /proc, /dev and a tiny root-owned /run (with an image's /run dirs) and, without an
    image, /var."""
    argv = rootfs_args(rootfs, etc_dir, image, writable)
    argv += ["--proc", "/proc", *masked_proc_args(), "--dev", "/dev",
             "--size", str(SMALL_TMPFS), "--tmpfs", "/run"]
    if image:
        return [*argv, *run_dir_args(rootfs)]
    return [*argv, "--size", str(SMALL_TMPFS), "--tmpfs", "/var"]


SMALL_TMPFS = 1 << 20
# Files of a sandbox's /proc that show the machine rather than the lab, and that no lab
# tool needs: the machine's users holding keys and their quotas (key-users, keys), its
# interrupt and softirq counts per CPU (a running tally of every tenant's network and disk
# activity), its kernel's symbols and loaded modules (kallsyms), its hardware layout
# (iomem, ioports) and boot command line (cmdline, which may carry the host's own control
# ports and options), and the scheduler and timer dumps (root-only today). Each is covered
# by the machine's /dev/null, read-only, as container runtimes mask theirs: /proc is
# mounted nodev, so opening one is refused (EACCES, as for the root-only ones before).
# /proc/stat, meminfo and loadavg stay (ps, top, free, uptime read them); pressure stays
# readable (``READONLY_PROC``).
MASKED_PROC = ("key-users", "keys", "kallsyms", "interrupts", "softirqs", "iomem", "ioports",
               "cmdline", "timer_list", "sched_debug", "kcore", "latency_stats",
               "sysrq-trigger")
# Files of a sandbox's /proc that stay readable but are bound read-only over themselves:
# writing a trigger (``some 150000 2000000``) to /proc/pressure/* opened one per file
# descriptor, kernel memory charged to no lab, and each costs an RCU grace period when
# closed: a learner host's process holding 20,000 (its open-files limit) sat unkillable in
# the kernel for about two minutes at exit, and a lab's hundreds of processes would keep
# its teardown waiting for hours. Reading the machine's pressure (what ``top``-like tools
# show) still works; no lab tool registers triggers.
READONLY_PROC = ("pressure",)


# Per-namespace sysctls a NET_ADMIN host may write (the kernel lets a namespace's
# NET_ADMIN write its net.* keys) that bound kernel memory no cgroup is charged for: the
# bytes the namespace's fragment queues may hold. Raised (from the default 4 MB), a host
# held 100 MB of incomplete IPv4 datagrams (for as long as the ``ipfrag_time`` it may
# raise too) while its lab's memory cgroup did not move. Covered like ``MASKED_PROC``: no
# lab tool tunes reassembly, and the defaults keep each namespace's queues to a few MB.
# Likewise the per-socket option memory (``net.core.optmem_max``, per namespace since Linux
# 6.9) and the multicast groups a socket may join (``igmp_max_memberships``): raised, a
# host held ~11 MB of slab in multicast memberships; no lab joins more than a few groups.
MASKED_SYSCTLS = ("net/ipv4/ipfrag_high_thresh", "net/ipv6/ip6frag_high_thresh",
                  "net/netfilter/nf_conntrack_frag6_high_thresh", "net/core/optmem_max",
                  "net/ipv4/igmp_max_memberships")


def masked_proc_args() -> tuple[str, ...]:
    """bwrap arguments covering each of ``MASKED_PROC`` and ``MASKED_SYSCTLS`` this kernel
    has (a missing one cannot be covered, nor read or written) with ``/dev/null``, and
    binding each of ``READONLY_PROC`` read-only over itself, after ``--proc /proc``.
    Looked up at each sandbox: a module loaded since (IPv6's reassembly) adds its keys to
    every namespace, the lab's too."""
    args: list[str] = []
    for name in (*MASKED_PROC, *(f"sys/{key}" for key in MASKED_SYSCTLS)):
        if os.path.exists(os.path.join("/proc", name)):
            args += ["--ro-bind", "/dev/null", f"/proc/{name}"]
    for name in READONLY_PROC:
        if os.path.exists(os.path.join("/proc", name)):
            args += ["--ro-bind", f"/proc/{name}", f"/proc/{name}"]
    return tuple(args)


def readonly_seed_args(host_dir: str) -> list[str]:
    """Bind the host's read-only seeds (e.g. /opt/forge graders)."""
    argv: list[str] = []
    for d in READONLY_DIRS:  # the parent (e.g. /opt) would otherwise be created 0700
        argv += ["--perms", "0755", "--dir", os.path.dirname(d),
                 "--ro-bind", os.path.join(host_dir, d.lstrip("/")), d]
    return argv


def bwrap_argv(
    host: PlannedHost, paths: HostPaths, rootfs: str, uid: int, seccomp_fd: int,
    args_fd: int, image: bool = False, info_fd: int = -1, block_fd: int = -1, *,
    userns_fd: int,
) -> list[str]:
    """Full bubblewrap command line for a host's init (on an ``image``, its root is the
    overlay ``rootfs.mount_image_root`` mounted in the host's data dir); bwrap reports its
    child's pid on ``info_fd`` and holds the sandbox before its first command until a
    byte arrives on ``block_fd`` (the runtime moves it into the host's cgroup first). The
    environment and service command are read from ``args_fd`` (``init_options``).

    The sandbox itself (its mounts, its pid namespace, its init) belongs to the machine's
    user namespace, as before hosts had their own: no lab process holds a capability over
    it, so none can remount its read-only views of the machine's files, and none can
    reach into its root processes. Only the service joins the host's user namespace
    (``userns_fd``, the owner of its network namespace: ``netns.create_host_netns``),
    right before it becomes the lab user with the approved capabilities, held there
    (``join_host_user``)."""
    argv = [tool("bwrap"), "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", host.hostname, "--new-session"]
    # No --die-with-parent: bwrap would take the death of the thread that started it (a
    # short-lived one, inside the lab's namespaces) as its parent's, and die at random.
    root = merged_root(paths.data_dir) if image else rootfs
    argv += system_args(root, paths.etc_dir, image, writable=True)
    argv += host_ptys_args(paths.data_dir)
    for target, sub in DATA_BINDS.items():
        argv += ["--bind", os.path.join(paths.data_dir, sub), target]
    argv += readonly_seed_args(paths.host_dir)
    # bwrap keeps just what setpriv needs to become the lab user with the approved caps.
    if not image:  # an image host's root is its own overlay; file permissions guard it
        argv += ["--remount-ro", "/"]
    argv += ["--chdir", "/workspace", "--cap-drop", "ALL"]
    # SYS_ADMIN: to join the host's user namespace (setns, ``join_host_user``).
    for cap in sorted({*host.caps, SERVICE_MARK_CAP, "SETUID", "SETGID", "SETPCAP",
                       "SYS_ADMIN"}):
        argv += ["--cap-add", f"CAP_{cap}"]
    # --sync-fd: bwrap's pid 1 holds the host's user namespace; its init and service do not.
    argv += ["--seccomp", str(seccomp_fd), "--args", str(args_fd), "--sync-fd", str(userns_fd)]
    argv += ["--info-fd", str(info_fd), "--block-fd", str(block_fd), "--", "/bin/sh", "-c",
             INIT_SH, "fg-init", service_script(list(host_env(host))),
             *join_host_user(userns_fd), *service_prefix(rootfs),
             *setpriv_argv(uid, [*host.caps, SERVICE_MARK_CAP])]
    return argv


def join_host_user(userns_fd: int) -> list[str]:
    """The service's first step, as root: join the host's user namespace, which bwrap's
    pid 1 holds open on ``userns_fd`` (bwrap's ``--sync-fd``; nsenter, from the host's own
    root, becomes its root there). The descriptor is bwrap's pid 1's alone: bwrap closes it
    in the init, so neither the init nor the service ever holds it, and nsenter closes what
    it opened. It used to be passed down to the init and closed by a bash started for that
    alone (dash takes no descriptor above 9): a program start (≈1 ms of CPU) per service.
    Only the sandbox's root reaches pid 1's descriptors (pid 1 keeps no capability, so
    the init, same uid, does whatever caps its host is approved); a lab process, of
    another uid and holding no capability in the machine's user namespace, cannot."""
    return ["nsenter", f"--user=/proc/1/fd/{userns_fd}", "--"]


def init_options(host: PlannedHost) -> list[str]:
    """The init's secret bubblewrap options, read from its ``--args`` descriptor: the fixed
    PATH, the host's environment under ``FGE_`` names and the service command (FG_CMD,
    which INIT_SH takes and unsets)."""
    return [*staged_env_options(host_env(host)), "--setenv", COMMAND_VAR,
            host.spec.command or ""]
