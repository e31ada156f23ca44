"""Named network namespaces: create, enter per thread, configure in batches, remove.

``setns(CLONE_NEWNET)`` and ``unshare(CLONE_NEWNET)`` change only the calling thread, so a
thread can step into a namespace (to create it, write its sysctls or open netlink sockets
there) without forking, and step back out (``_inside``; a new thread for each of a lab
build's nine or so steps made a create+destroy cost 50.6-52.8 ms of CPU against 45.1-45.8
without). pyroute2's calls (``run_in_netns``) still get a thread of their own, which may
hold an event loop. A lab's own links, addresses and routes are written over a raw
rtnetlink socket (``rtnl``); the egress gateway's few writes still go through one ``ip
-batch`` process (~2 ms of CPU, against ~0.5-1 ms per call through pyroute2 0.9's asyncio
core). Named namespaces live under /run/netns like iproute2's, so
``ip netns`` sees them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import IPRoute

from forge.detached import run_detached
from forge.runtime.local.tools import tool
from forge.runtime.local.userns_holder import holder

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2
NS_GET_USERNS = 0xB701  # ioctl: the user namespace owning a namespace, as a new fd
# Every uid and gid maps to itself: files, the lab user and root keep their ids, only
# what the capabilities reach changes (the host's own namespaces, nothing of the machine's).
IDENTITY_MAP = b"0 0 4294967295\n"
MAX_USER_NAMESPACES = "/proc/sys/user/max_user_namespaces"

T = TypeVar("T")
log = logging.getLogger("forge.runtime.netns")
_libc = ctypes.CDLL(None, use_errno=True)
_init_lock = threading.Lock()
_initialized = False


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def ensure_rundir() -> None:
    """Make /run/netns a shared mount point (as iproute2 does) so that removing a
    namespace also unmounts it from every other mount namespace's copy."""
    global _initialized
    with _init_lock:
        if _initialized:
            return
        os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
        rundir = NETNS_DIR.encode()
        if _libc.mount(b"", rundir, b"none", MS_SHARED | MS_REC, None) != 0:
            _check(_libc.mount(rundir, rundir, b"none", MS_BIND | MS_REC, None), "bind rundir")
            _check(_libc.mount(b"", rundir, b"none", MS_SHARED | MS_REC, None), "share rundir")
        _initialized = True


def netns_path(name: str) -> str:
    """Path of a named namespace (the name must already be validated)."""
    return os.path.join(NETNS_DIR, name)


def list_netns() -> list[str]:
    """Names of all named network namespaces."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def in_thread(fn: Callable[[], T]) -> T:
    """Run ``fn()`` in a new thread (which may change its namespaces) and return its result."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="forge-netns")
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def _own_netns() -> int:
    """A descriptor of the calling thread's own network namespace (close-on-exec)."""
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _rejoin(fd: int) -> int:
    """Move the calling thread into the network namespace ``fd``: 0, or the errno."""
    return 0 if _libc.setns(fd, CLONE_NEWNET) == 0 else ctypes.get_errno()


def _inside(enter: Callable[[], None], fn: Callable[[], T]) -> T:
    """``fn()`` in the calling thread after ``enter()`` moved it to another network
    namespace; the thread is back in its own namespace when this returns or raises. A
    thread that cannot go back ends the process: anything it did next (wiring another lab,
    the machine's egress) would land in the wrong namespace, so the service stops and its
    restart reconciles the labs (a setns to a namespace held open fails only when the
    kernel is out of memory)."""
    home = _own_netns()
    try:
        try:
            enter()
            return fn()
        finally:
            err = _rejoin(home)
            if err:
                log.critical("a thread could not return to its network namespace (%s); "
                             "stopping", os.strerror(err))
                os._exit(70)
    finally:
        os.close(home)


def return_problem() -> str | None:
    """Why a thread could not step back into its own network namespace (``_inside``), or
    None: ``setns`` is refused, for one, to root in a user namespace of its own over the
    machine's network (``unshare -U -r``, a rootless container on the host's network)."""
    fd = _own_netns()
    try:
        err = _rejoin(fd)
    finally:
        os.close(fd)
    return os.strerror(err) if err else None


def create_netns(name: str, setup: Callable[[], object] | None = None) -> None:
    """Create the named namespace ``name`` (fails if it exists); ``setup()`` runs inside
    it right after creation (e.g. to write sysctls before any interface exists)."""
    ensure_rundir()
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))

    def enter() -> None:
        _check(_libc.unshare(CLONE_NEWNET), "unshare")
        _check(
            _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None),
            "bind netns",
        )

    try:
        _inside(enter, setup or (lambda: None))
    except BaseException:
        _libc.umount2(path.encode(), MNT_DETACH)
        os.unlink(path)
        raise


def create_host_netns(name: str, owner: int,
                      setup: Callable[[], object] | None = None) -> None:
    """Create the named namespace ``name`` for a lab host, owned by a user namespace of its
    own (``IDENTITY_MAP``) that belongs to uid ``owner``, the lab's learner uid; ``setup()``
    runs inside it as in ``create_netns``.

    A capability a host is approved (NET_ADMIN, NET_RAW) is then held in that user
    namespace, not the machine's, so it works on the host's own network only: the kernel
    asks for it in the owner of every namespace a request names, and the switch's (which
    a netlink request can name by its id, IFLA_TARGET_NETNSID, as the peer of the host's
    own link) belongs to the machine's.

    The owner matters twice. The kernel charges what a process inside uses of the
    per-user counts (inotify instances and watches, message queue bytes, queued signals,
    processes) to the owner in the machine's namespace too, against the machine's limits:
    owned by root, one learner exhausting them locks root and every other lab out; owned
    by the learner uid, the lab has its own budget, as when its processes ran in the
    machine's namespace. And a process of the owner's uid in the machine's namespace
    would hold every capability in the host's: no process ever runs as a learner uid
    there (the lab's processes all join the host's; its checks run as the grader uid).

    A user namespace is only made by a process with one thread, so a short-lived process
    (``userns_holder.holder``) makes both and holds them until the network one is bound
    at its name."""
    if owner < 1:
        raise ValueError("a host's user namespace must belong to a lab's uid, not root")
    ensure_rundir()
    path = netns_path(name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        with holder(owner) as proc:
            for table in ("uid_map", "gid_map"):
                with open(f"{proc}/{table}", "wb", buffering=0) as fh:
                    fh.write(IDENTITY_MAP)
            _check(_libc.mount(f"{proc}/ns/net".encode(), path.encode(), b"none",
                               MS_BIND, None), "bind netns")
        if setup is not None:
            in_netns(name, setup)
    except BaseException:
        _libc.umount2(path.encode(), MNT_DETACH)
        os.unlink(path)
        raise


def own_user_ns(netns_fd: int) -> int | None:
    """A new descriptor (close-on-exec) of the user namespace owning the network namespace
    held by ``netns_fd``, or None when that is the machine's (a namespace made by
    ``create_netns``, or a host's from before hosts had their own)."""
    owner: int = fcntl.ioctl(netns_fd, NS_GET_USERNS)
    if os.path.samestat(os.fstat(owner), os.stat("/proc/self/ns/user")):
        os.close(owner)
        return None
    return owner


def user_ns_fd(name: str) -> int:
    """``own_user_ns`` of the named network namespace ``name``; OSError when the machine's
    owns it: a host started there would hold its capabilities in the machine's."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = own_user_ns(fd)
    finally:
        os.close(fd)
    if owner is None:
        raise OSError(errno.EINVAL, f"network namespace {name} has no user namespace of "
                                    "its own")
    return owner


def userns_problem() -> str | None:
    """Why lab hosts cannot get user namespaces of their own (``create_host_netns``), or
    None."""
    try:
        with open(MAX_USER_NAMESPACES, encoding="ascii") as fh:
            limit = int(fh.read().strip())
    except (OSError, ValueError):
        return None  # an older kernel without the limit: the first create says more
    if limit < 1:
        return ("user namespaces are disabled (sysctl user.max_user_namespaces = 0); "
                "each lab host needs one: set it to 10000 or more")
    return None


def remove_netns(name: str) -> None:
    """Unmount and unlink a named namespace; missing is fine."""
    path = netns_path(name)
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"umount {name}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn()`` in namespace ``name`` (the calling thread steps in and back out)."""

    def enter() -> None:
        fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
        finally:
            os.close(fd)

    return _inside(enter, fn)


def ip_batch(name: str, commands: list[str]) -> None:
    """Apply iproute2 commands (``ip -batch`` syntax, already validated) in ``name``.

    ``ip`` is forked from a thread that entered the namespace, so it starts inside it;
    ``ip -n`` would instead build a new mount namespace and remount /sys each time,
    which serializes concurrent creates on the kernel's global mount lock.
    """
    if not commands:
        return

    def run() -> subprocess.CompletedProcess[str]:
        return run_detached([tool("ip"), "-batch", "-"], input="\n".join(commands) + "\n",
                            timeout=30)

    res = in_netns(name, run)
    if res.returncode != 0:
        raise OSError(f"ip -batch in {name} failed: {res.stderr.strip()[:500]}")


def run_in_netns(name: str | None, fn: Callable[[IPRoute], T]) -> T:
    """Run ``fn(ipr)`` in a worker thread inside namespace ``name`` (None: the caller's)
    with a netlink socket opened there."""

    def work() -> T:
        if name is not None:
            fd = os.open(netns_path(name), os.O_RDONLY)
            try:
                _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
            finally:
                os.close(fd)
        with IPRoute() as ipr:
            return fn(ipr)

    return in_thread(work)
