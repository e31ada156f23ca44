"""A Landlock domain of its own for every learner process tree (exec, terminal).

Landlock refuses a process in a domain ptrace-level access (``/proc/PID/mem``, ``fd``,
``environ``, ``process_vm_writev``, ``pidfd_getfd``) to every process outside it, whatever
that process's uid or capabilities: a learner process cannot take over one of its host's
services, even one that dropped the service mark (``dsl_limits.SERVICE_MARK_CAP``) by
exec'ing a program with file capabilities (iputils ``ping``) or by itself. Signals are not
scoped, so the learner still stops a service with ``kill`` (incident-response).

A host approved ``SYS_PTRACE`` gets no domain (``lab_access``): its learner may attach to
its services and to their own processes in another terminal, as the approval means, on
every kernel. The domain also keeps a learner process from connecting to an abstract unix
socket bound outside it (a service's, another terminal's): what a learner connects to
listens on a path.

The domain handles no file system or network access (Landlock refuses mounts to a domain
that does, and the learner's ``bwrap`` mounts), only the scope of abstract unix sockets,
which needs Landlock ABI 6 (Linux 6.12). It is put on a fresh thread that then starts the
process (credentials are per thread until exec), so the runtime's own threads stay free.
Where the kernel has no such Landlock, or refuses a domain (a seccomp filter barring the
Landlock calls), ``domain_supported`` is false and the service mark alone keeps learners
out of services (the runtime logs why, once: ``LocalRuntime.check``).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Syscall numbers of the generic table (the same on x86_64 and arm64).
_CREATE_RULESET = 444
_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_SCOPE_ABSTRACT_UNIX_SOCKET = 1
_SCOPED_ABI = 6

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def domain_supported() -> bool:
    """Whether learner processes get a domain of their own here (``domain_problem``)."""
    return domain_problem() is None


# errnos that say how this kernel and process are, for good (not a passing shortage such
# as EMFILE or ENOMEM, which is raised and asked again next time)
_SETTLED = frozenset({errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP,
                      errno.EINVAL, errno.E2BIG})
_answer: list[str | None] = []  # the settled answer, once known
_answer_lock = threading.Lock()


def domain_problem() -> str | None:
    """Why a learner process cannot get a domain of its own, or None when it can.

    Asking for the ABI version is not enough: a syscall filter (systemd's
    ``SystemCallFilter=``) may refuse the Landlock calls, all or some, and every exec and
    terminal would then fail. So a throwaway thread makes a domain the way a learner's
    start does, once per process. A passing failure (OSError: EMFILE, ENOMEM) is raised
    and the question asked again next time: it must not leave learners without a domain
    for the life of the process."""
    with _answer_lock:
        if not _answer:
            _answer.append(_probe())
        return _answer[0]


def _active_lsm(path: str = "/sys/kernel/security/lsm") -> bool:
    """Whether the kernel lists Landlock among its active security modules (False where
    securityfs is not mounted): then an ENOSYS comes from a syscall filter, not the kernel."""
    try:
        with open(path, encoding="ascii") as fh:
            return "landlock" in fh.read(4096).split(",")
    except OSError:
        return False


def _probe() -> str | None:
    abi = int(_syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                       ctypes.c_uint32(_CREATE_RULESET_VERSION)))
    if abi < 0:
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EOPNOTSUPP) and not _active_lsm():
            return "this kernel has no Landlock ABI 6 (Linux 6.12)"  # or not an active LSM
        if err in _SETTLED:
            return ("a syscall filter refuses Landlock (landlock_create_ruleset: "
                    f"{os.strerror(err)})")
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    if abi < _SCOPED_ABI:
        return "this kernel has no Landlock ABI 6 (Linux 6.12)"
    failure: list[OSError] = []

    def trial() -> None:
        try:
            _restrict_this_thread()
        except OSError as exc:
            failure.append(exc)

    thread = threading.Thread(target=trial, name="forge-landlock-trial", daemon=True)
    thread.start()
    thread.join()
    if not failure:
        return None
    if failure[0].errno not in _SETTLED:
        raise failure[0]
    return f"Landlock ABI {abi} is here but refused a domain: {failure[0]}"


def _restrict_this_thread() -> None:
    """Put the calling thread in a new domain (root: CAP_SYS_ADMIN, no no-new-privs)."""
    packed = struct.pack("=QQQ", 0, 0, _SCOPE_ABSTRACT_UNIX_SOCKET)
    attr = (ctypes.c_char * len(packed)).from_buffer_copy(packed)
    fd = int(_syscall(_CREATE_RULESET, attr, ctypes.c_size_t(len(packed)),
                      ctypes.c_uint32(0)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        if _syscall(_RESTRICT_SELF, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_own_domain(start: Callable[[], T]) -> T:
    """Run ``start`` (which starts a learner process) on a new thread in a new domain and
    return what it returns (or raise what it raised); where ``domain_supported`` is false,
    on this thread as it is."""
    if not domain_supported():
        return start()
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            _restrict_this_thread()
            outcome.append(start())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="forge-learner-start", daemon=True)
    thread.start()
    try:
        thread.join()
    except BaseException:  # interrupted: the start still uses the caller's descriptors
        thread.join()
        raise
    if failure:
        raise failure[0]
    return outcome[0]
