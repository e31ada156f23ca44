"""The /etc of a host on the machine's userland (``image: host``): the lab's own directory.

Such a host used to see the machine's /etc read-only with the lab's identity files bound
over four of its entries. A bind mount sits on a dentry, and the kernel removes every
mount on a dentry that is renamed over or unlinked, in every mount namespace: when the
machine replaced /etc/passwd by a rename (``useradd``, ``passwd``, a DHCP client rewriting
resolv.conf), each running lab lost its bind and saw the machine's file (``whoami``
failed, the machine's accounts showed).

Now the host's /etc is a directory of the lab's own (``etc_view``, on the lab's disk,
which no process of the machine renames): the lab's passwd, group, hosts and resolv.conf
(hard links of the identity files), empty stand-ins for the files and directories a lab
never sees (``MASKED_FILES``, ``MASKED_DIRS``), and for every other entry of the
machine's /etc a symbolic link into ``MACHINE_ETC``, where the machine's /etc is bound
read-only (one level below /, like /etc, so the machine's own relative links resolve as
before). An entry that is itself a link is copied as that link. Entries the machine adds
to /etc after the lab started are not seen by it; changes inside its directories are.

Through MACHINE_ETC the machine's accounts and secrets (passwd, group, their backups,
shadow, gshadow, ssh, sudoers.d, ssl/private) are masked by binds over its own entries:
those still go when the machine replaces such a file, leaving the machine's file there
with its own mode (shadow: 0640, root's) until the lab ends. /etc, what programs read,
never changes; a host that could read root-only files (``rootfs.MACHINE_READ_CAP``) is
refused on the machine's userland.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading

from forge.runtime.base import RuntimeFault
from forge.runtime.local.host_dirs import LAB_ETC_FILES

MACHINE_ETC = "/.machine-etc"
VIEW = "view"
MASKED_FILES = ("shadow", "gshadow", "shadow-", "gshadow-")
MASKED_DIRS = ("ssh", "sudoers.d")
# Never linked into the view: the machine's accounts (the backups of passwd and group).
UNLINKED = ("passwd-", "group-")
# Masks inside the machine's /etc as bound at MACHINE_ETC (what a path through it reaches).
MASKED_MACHINE_DIRS = (*MASKED_DIRS, "ssl/private")
EMPTY = MASKED_FILES[0]  # the view's empty stand-in, bound over what has no lab version
MAX_ENTRIES = 4096

_listing_lock = threading.Lock()
_listing: tuple[tuple[str, int, int, int], tuple[tuple[str, str], ...]] | None = None


def etc_view(etc_dir: str) -> str:
    """Where a lab's /etc for hosts on the machine's userland is (under ``etc_dir``)."""
    return os.path.join(etc_dir, VIEW)


def _entries(machine_etc: str) -> tuple[tuple[str, str], ...]:
    """(name, link target) of every entry of ``machine_etc`` the view links; read again
    only when the directory changed (an entry added, removed or renamed changes its
    mtime), so a lab start costs one stat. More than MAX_ENTRIES is a RuntimeFault."""
    global _listing
    st = os.stat(machine_etc)
    key = (machine_etc, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    with _listing_lock:
        if _listing is not None and _listing[0] == key:
            return _listing[1]
    skip = {*LAB_ETC_FILES.values(), *MASKED_FILES, *MASKED_DIRS, *UNLINKED}
    found: list[tuple[str, str]] = []
    with os.scandir(machine_etc) as it:
        for entry in it:
            if len(found) >= MAX_ENTRIES:
                raise RuntimeFault(f"{machine_etc} has more than {MAX_ENTRIES} entries")
            if entry.name in skip:
                continue
            target = (os.readlink(entry.path) if entry.is_symlink()
                      else f"{MACHINE_ETC}/{entry.name}")
            found.append((entry.name, target))
    entries = tuple(sorted(found))
    with _listing_lock:
        _listing = (key, entries)
    return entries


def write_etc_view(etc_dir: str, machine_etc: str) -> None:
    """Make the lab's /etc for its hosts on the machine's userland under ``etc_dir``, where
    ``write_identity`` has written the identity files (see the module docstring); nothing
    if it is there. Built aside and renamed into place, so a sandbox never sees half of it
    and two callers at once make one."""
    view = etc_view(etc_dir)
    if os.path.isdir(view):
        return
    part = tempfile.mkdtemp(prefix=".view-", dir=etc_dir)
    try:
        os.chmod(part, 0o755)  # noqa: S103 - an /etc, read by the lab's users
        for name, target in LAB_ETC_FILES.items():
            os.link(os.path.join(etc_dir, name), os.path.join(part, target))
        for name in MASKED_FILES:
            os.close(os.open(os.path.join(part, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             0o644))
        for name in MASKED_DIRS:
            os.mkdir(os.path.join(part, name), 0o755)
        for name, target in _entries(machine_etc):
            os.symlink(target, os.path.join(part, name))
        os.rename(part, view)
    except BaseException as exc:  # nothing half-made is left on the lab's disk
        shutil.rmtree(part, ignore_errors=True)
        if isinstance(exc, OSError) and os.path.isdir(view):
            return  # another caller's view, made meanwhile
        raise


def _regular(path: str) -> bool:
    """A regular file, not a link (a mask is bound over the machine's own file only: a
    link there points into the sandbox's own tree, e.g. /run, never the machine's)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def machine_etc_args(rootfs: str, etc_dir: str) -> list[str]:
    """bwrap arguments giving a host on the machine's userland its /etc: the lab's view
    (made here if missing: a lab started by an older release has none), and the machine's
    /etc read-only at MACHINE_ETC with its secrets and accounts masked (the lab's own
    identity files, else an empty file, over the machine's)."""
    machine = os.path.join(rootfs, "etc")
    write_etc_view(etc_dir, machine)
    view = etc_view(etc_dir)
    args = ["--ro-bind", machine, MACHINE_ETC, "--ro-bind", view, "/etc"]
    stand_ins = {**{t: t for t in LAB_ETC_FILES.values()},
                 **dict.fromkeys((*MASKED_FILES, *UNLINKED), EMPTY)}
    for name, stand_in in stand_ins.items():
        if _regular(os.path.join(machine, name)):
            args += ["--ro-bind", os.path.join(view, stand_in), f"{MACHINE_ETC}/{name}"]
    for name in MASKED_MACHINE_DIRS:
        path = os.path.join(machine, name)
        if os.path.isdir(path) and not os.path.islink(path):
            args += ["--tmpfs", f"{MACHINE_ETC}/{name}"]
    return args
