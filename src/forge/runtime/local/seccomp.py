"""The default syscall filter of every lab process, compiled with libseccomp.

Everything is allowed except what lets a lab process leave or widen its sandbox, or reach
state the kernel shares between labs: new user namespaces (and namespaces at all),
mounts, keyrings, bpf, perf events, kexec, kernel modules, io_uring, handle-based opens,
userfaultfd, secret memory (``memfd_secret``: it splits the machine's kernel direct map
for good), fanotify (its marks on the machine's shared files see other labs' opens),
attaching to other processes with ptrace or reading/writing their memory, and
``AF_VSOCK`` sockets (the vsock address space is the machine's, in no network namespace:
a lab could reach the hypervisor's or another lab's vsock listeners past its own network;
refused with EAFNOSUPPORT, as on a kernel without vsock), and IPsec's ``NETLINK_XFRM``
and ``AF_KEY`` sockets (policies and states a ``NET_ADMIN`` host adds are kernel memory
charged to no lab, with no limit). A denied call
fails with EPERM (``clone3`` with ENOSYS, so libc falls back to
``clone``, whose flags the filter can inspect). Syscalls of a foreign architecture (32-bit
or x32 entry points) kill the caller: libseccomp's default bad-arch action.

Capabilities approved by the capabilities policy gate re-allow the syscalls they exist for
(e.g. ``SYS_PTRACE`` re-allows ptrace attach), never more.

The compiled program is handed to bubblewrap (``--seccomp FD``) in a fresh memfd per
sandbox, because bubblewrap reads it from the descriptor's current offset.
"""

from __future__ import annotations

import errno
import functools
import io
import os

import pyseccomp as sc

from forge.runtime.local.bwrap_fds import data_fd

CLONE_NEWUSER = 0x10000000
PTRACE_ATTACH = 16
PTRACE_SEIZE = 0x4206
AF_VSOCK = 40  # same number on every architecture
AF_NETLINK, NETLINK_XFRM, AF_KEY = 16, 6, 15  # the same on every architecture too
INT_BITS = 0xFFFF_FFFF  # what the kernel reads of an `int` argument

# Syscalls denied by default; the capability that (alone) re-allows them, if any.
DENIED: dict[str, str | None] = {
    "unshare": "SYS_ADMIN",
    "setns": "SYS_ADMIN",
    "mount": "SYS_ADMIN",
    "umount2": "SYS_ADMIN",
    "pivot_root": "SYS_ADMIN",
    "fsopen": "SYS_ADMIN",
    "fsconfig": "SYS_ADMIN",
    "fsmount": "SYS_ADMIN",
    "fspick": "SYS_ADMIN",
    "move_mount": "SYS_ADMIN",
    "open_tree": "SYS_ADMIN",
    "mount_setattr": "SYS_ADMIN",
    "keyctl": None,
    "add_key": None,
    "request_key": None,
    "bpf": "BPF",
    "perf_event_open": "PERFMON",
    "kexec_load": None,
    "kexec_file_load": None,
    "init_module": None,
    "finit_module": None,
    "delete_module": None,
    "open_by_handle_at": None,
    "name_to_handle_at": None,
    "userfaultfd": None,
    "io_uring_setup": None,
    "io_uring_enter": None,
    "io_uring_register": None,
    "process_vm_readv": "SYS_PTRACE",
    "process_vm_writev": "SYS_PTRACE",
    "swapon": None,
    "swapoff": None,
    "reboot": None,
    "acct": None,
    "quotactl": None,
    "syslog": None,
    # Each page of secret memory is cut out of the kernel's direct map, which stays split
    # into small pages after it is freed: 160 MB touched from a lab took the machine's
    # 4 KiB mappings from 38 MB to 2.2 GB and half its 1 GiB ones, slowing every lab's and
    # service's kernel work until a reboot. No lab needs it.
    "memfd_secret": None,
    # The machine's /usr is bound into every host, so its inodes are every lab's and the
    # grader's: an unprivileged fanotify group marking /usr/bin/true reported the opens
    # made in other labs and by the grader (a channel between labs, a view of when grading
    # runs). No shipped lab watches files with it.
    "fanotify_init": None,
}


@functools.lru_cache(maxsize=64)
def compiled(caps: tuple[str, ...] = (), join_user: bool = False) -> bytes:
    """The BPF program for a host whose approved capabilities are ``caps`` (sorted);
    ``join_user``: also lets ``setns`` join a user namespace (the init's service and a
    learner's command join the host's after the filter is loaded:
    ``bwrap_args.join_host_user``, ``execute.enter_argv``). That call needs CAP_SYS_ADMIN
    over the namespace joined, which no lab process has (nor may it make a user namespace
    of its own: ``clone`` and ``unshare`` stay refused)."""
    approved = set(caps)
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name, cap in DENIED.items():
        if cap is not None and cap in approved:
            continue
        if name == "setns" and join_user:
            flt.add_rule(deny, name, sc.Arg(1, sc.NE, CLONE_NEWUSER))
        else:
            flt.add_rule(deny, name)
    if "SYS_ADMIN" not in approved:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
    # vsock ignores network namespaces (its ids are machine-wide): no lab needs it. The
    # family is an int: the kernel drops the upper half of the register the filter sees,
    # so only the lower 32 bits are compared (AF_VSOCK + 2**32 is a vsock socket too).
    for call in ("socket", "socketpair"):
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), call,
                     sc.Arg(0, sc.MASKED_EQ, INT_BITS, AF_VSOCK))
    # IPsec's policy and state databases (`ip xfrm`, PF_KEY's `setkey`): a NET_ADMIN host
    # could fill them without bound, each policy ~1 KB of kernel memory charged to no lab
    # (10,000 in 0.7 s took 10 MB). No lab uses IPsec: refused as on a kernel without it.
    flt.add_rule(sc.ERRNO(errno.EPROTONOSUPPORT), "socket",
                 sc.Arg(0, sc.MASKED_EQ, INT_BITS, AF_NETLINK),
                 sc.Arg(2, sc.MASKED_EQ, INT_BITS, NETLINK_XFRM))
    for call in ("socket", "socketpair"):
        flt.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), call,
                     sc.Arg(0, sc.MASKED_EQ, INT_BITS, AF_KEY))
    # clone3 passes its flags in memory the filter cannot read: make libc use clone.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if "SYS_PTRACE" not in approved:
        flt.add_rule(deny, "ptrace", sc.Arg(0, sc.EQ, PTRACE_ATTACH))
        flt.add_rule(deny, "ptrace", sc.Arg(0, sc.EQ, PTRACE_SEIZE))
    buf = io.BytesIO()
    fd = os.memfd_create("forge-seccomp-build", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb") as fh:
            flt.export_bpf(fh)
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 65536):
            buf.write(chunk)
    finally:
        os.close(fd)
    return buf.getvalue()


def filter_fd(caps: list[str]) -> int:
    """A new (inheritable) memfd holding the filter for ``caps``, positioned at 0, numbered
    at least ``bwrap_fds.FIRST_FREE_FD`` (see ``bwrap_fds.data_fd``: a number the init's
    join script reuses would silently replace the filter, and a create then fails with
    "Can't read seccomp data")."""
    return data_fd("forge-seccomp", compiled(tuple(sorted(set(caps)))))


def joining_filter_fd(caps: list[str]) -> int:
    """``filter_fd`` for a process that joins the host's user namespace after the filter
    is loaded: a host's init, a learner's command (``compiled`` with ``join_user``)."""
    return data_fd("forge-seccomp", compiled(tuple(sorted(set(caps))), True))
