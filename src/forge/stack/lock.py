"""The storage-root lock of `forge up`: one supervisor per storage root, named by its pid.

Two supervisors on one storage root would run two nats-servers on one JetStream store and
two sets of services on one database. The lock is an `flock` on `forge-up.lock`, which the
kernel releases when the holder exits (even on `kill -9`), so a stale file never blocks a
start; the file's content is only the holder's pid and what it is (``forge up`` or
``forge runtime cleanup``, which holds the root while it destroys half-built labs), for the
refusal message. A `forge up` running its own NATS adds that server's client settings
(``note_bus``), so operator commands on the same root reach it (``running_bus``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from forge.bus.tls import TLS_DIR, BusTls
from forge.config.storage_root import make_storage_root
from forge.private_lock import LOCK_MODE, restrict

LOCK_NAME = "forge-up.lock"
UP = "forge up"
CLEANUP = "forge runtime cleanup"
COPY = "forge store copy"
HOLDERS = (UP, CLEANUP, COPY)  # what a lock file may name; anything else reads as forge up
BUS_VARS = ("NATS_URL", "FORGE_NATS_REPLICAS")  # what `note_bus` records
SERVICE_VARS = ("SPAWN_URL", "ORCHESTRATOR_URL", "SCOREBOARD_URL")  # what `note_services` does
MAX_RECORD = 4096  # bytes of the lock file read back
PROC_LOCKS = "/proc/locks"


class StorageLocked(Exception):
    """Another process holds the storage root; the message names it, its pid and the root."""

    def __init__(self, root: Path, pid: int | None, holder: str = UP) -> None:
        self.root = root
        self.pid = pid
        self.holder = holder
        who = f"pid {pid}" if pid is not None else "pid unknown"
        name = "another forge up" if holder == UP else holder
        super().__init__(f"{name} ({who}) holds {root}")

    @property
    def advice(self) -> str:
        """What to do about it, for the refusal of a `forge up`."""
        if self.holder != UP:
            return "wait for it to end (seconds to minutes), then start again"
        stop = f"kill -INT {self.pid}" if self.pid is not None else "stop it"
        return (f"stop it first (Ctrl-C where it runs, or {stop}), or give this one "
                "another --storage")


class StorageLock:
    """An exclusive, non-blocking lock on a storage root, held until `release()`."""

    def __init__(self, root: Path, fd: int, holder: str = UP) -> None:
        self.root = root
        self.path = root / LOCK_NAME
        self.holder = holder
        self._fd: int | None = fd
        self._noted: dict[str, str] = {}  # what note_bus and note_services recorded

    @classmethod
    def acquire(cls, root: Path, holder: str = UP) -> StorageLock:
        """Take the lock and record our pid and ``holder`` (one of ``HOLDERS``), or raise
        StorageLocked naming the process that holds it (UnsafeStorage for a root another
        user owns or may write to)."""
        if holder not in HOLDERS:
            raise ValueError(f"holder must be one of {HOLDERS}")
        make_storage_root(root)  # UnsafeStorage: another user's root is never used
        fd = _open_lock_file(root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, other = _read_holder(fd)
            holder_pid = _flock_holder(os.fstat(fd))
            if holder_pid is not None and holder_pid != pid:  # the file no longer says who
                pid, other = holder_pid, UP  # (a backup copied over the root as it ran)
            os.close(fd)
            raise StorageLocked(root, pid, other) from None
        except BaseException:
            os.close(fd)
            raise
        made = cls(root, fd, holder)
        made._write()
        return made

    def note_bus(self, env: Mapping[str, str]) -> None:
        """Record the client settings of the NATS this holder runs (NATS_URL and, for a
        cluster, FORGE_NATS_REPLICAS) after its pid and name."""
        self._note({k: env[k] for k in BUS_VARS if k in env})

    def note_services(self, urls: Mapping[str, str]) -> None:
        """Record the URLs of the services this holder runs (SPAWN_URL, ORCHESTRATOR_URL,
        SCOREBOARD_URL): operator commands on this root call them there, not at the
        default ports, where another process may listen and would receive the operator
        token (``running_services``)."""
        self._note({k: urls[k] for k in SERVICE_VARS if k in urls})

    def _note(self, values: Mapping[str, str]) -> None:
        self._noted.update(values)
        self._write()

    def _record(self) -> bytes:
        lines = [str(os.getpid()), self.holder, *(f"{k}={v}" for k, v in self._noted.items())]
        return "".join(f"{line}\n" for line in lines).encode("ascii")

    def _write(self) -> None:
        if self._fd is None:
            return
        # Overwrite, then cut: a reader sees the old or the new pid, never an empty file.
        record = self._record()
        os.pwrite(self._fd, record, 0)
        os.ftruncate(self._fd, len(record))

    def keep_record(self) -> bool:
        """Write the record again when something else changed the lock file while this
        holder runs (a backup of the storage root copied over it, `cp -a backup/. root/`,
        brings back a dead holder's pid and ports): operator commands on this root find
        this holder's NATS and services by the record, and would otherwise fall back to
        the default ports. A file put in its place (`tar x`, `rsync`) is locked again, so
        a second forge up on the root is still refused. True when it had to."""
        if self._fd is None:
            return False
        record = self._record()
        try:
            if not self._lock_is_at_path():
                return self._lock_again()
            if os.pread(self._fd, MAX_RECORD + 1, 0) == record:
                return False
            self._write()
        except OSError:
            return False
        return True

    def _lock_is_at_path(self) -> bool:
        """Whether the path still names the file this holder locked (a restore by `tar
        x` or `rsync` puts a new file there, which no one holds: a second forge up would
        take it and start beside this one)."""
        assert self._fd is not None
        held = os.fstat(self._fd)
        try:
            now = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def _lock_again(self) -> bool:
        """Lock the file now at the path (made anew when missing) and record this holder
        in it; False, still holding the old one, when another process took it first."""
        fd = _open_lock_file(self.root)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        old, self._fd = self._fd, fd
        if old is not None:
            with contextlib.suppress(OSError):
                os.close(old)
        self._write()
        return True

    @property
    def held(self) -> bool:
        """True until released."""
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (the file stays; only the flock matters)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _open_lock_file(root: Path) -> int:
    """Open (or create) the root's lock file: a regular file of one link, never through a
    symlink (run as root, the pid written into it would overwrite whatever a writer of
    the storage root pointed it at). No O_TRUNC: the holder's pid must stay readable for
    the refusal message. The root is this user's or root's (`make_storage_root`), and so
    must the file be."""
    path = root / LOCK_NAME
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, LOCK_MODE)
    except FileExistsError:
        fd = os.open(path, flags)  # ELOOP for a symlink: an OSError, "cannot lock"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            raise OSError(errno.EPERM, f"{LOCK_NAME} is not a plain file")
        if st.st_uid not in (0, os.geteuid()):
            raise OSError(errno.EPERM, f"{LOCK_NAME} belongs to uid {st.st_uid}, neither "
                                       "root nor this user")
        restrict(fd)  # it was 0644: any local user could take it and block every start
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_holder(fd: int) -> tuple[int | None, str]:
    """The holder's pid (None when unreadable) and name, from at most 64 bytes; a file of
    an earlier release holds only the pid, and that was a forge up."""
    try:
        lines = os.pread(fd, 64, 0).decode("ascii", errors="replace").splitlines()
    except OSError:
        return None, UP
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    holder = lines[1] if len(lines) > 1 and lines[1] in HOLDERS else UP
    return pid, holder


def running_bus(root: Path) -> dict[str, str]:
    """The NATS client settings a live `forge up` holding ``root`` recorded (``note_bus``),
    with FORGE_NATS_CA, its CA under ``root``, when its NATS speaks TLS;
    empty when no process holds the lock now (a file left by one that died says nothing,
    and its port may be anyone's by now) or it recorded none. Only loopback URLs are taken:
    `forge up`'s NATS listens there alone. The lock is never taken to find out (that would
    make a `forge up` starting at that moment refuse): the kernel's lock table is read."""
    found = _running_record(root, BUS_VARS)
    url = found.get("NATS_URL", "")
    if not url or not all(_loopback_nats(part) for part in url.split(",")):
        return {}
    if url.startswith("tls://"):  # its servers speak TLS only, with a certificate of this CA
        found["FORGE_NATS_CA"] = str(BusTls(root / TLS_DIR).ca_file)
    return found


def running_services(root: Path) -> dict[str, str]:
    """The service URLs a live `forge up` holding ``root`` recorded (``note_services``),
    by variable; empty when none holds it now (as ``running_bus``). Only http(s) URLs
    with a host and a port are taken."""
    found = _running_record(root, SERVICE_VARS)
    return {k: v for k, v in found.items() if _service_url(v)}


def _running_record(root: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """The ``keys`` a live `forge up` holding ``root`` recorded after its pid and name."""
    try:
        fd = os.open(root / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        lines = os.pread(fd, MAX_RECORD, 0).decode("ascii", errors="replace").splitlines()
    finally:
        os.close(fd)
    pid = int(lines[0]) if lines and lines[0].isdigit() else None
    if pid is None or len(lines) < 2 or lines[1] != UP or not _flock_held(st, pid):
        return {}
    found: dict[str, str] = {}
    for line in lines[2:]:
        key, sep, value = line.partition("=")
        if sep and key in keys and key not in found:
            found[key] = value
    return found


def _service_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) \
            and parts.port is not None
    except ValueError:
        return False


def _loopback_nats(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
        return (parts.scheme in ("nats", "tls")
                and parts.hostname in ("127.0.0.1", "::1", "localhost")
                and parts.port is not None and not parts.username and not parts.password)
    except ValueError:
        return False


def _flock_held(st: os.stat_result, pid: int) -> bool:
    """Whether ``pid`` holds a flock on the file ``st`` describes (from /proc/locks)."""
    return _flock_holder(st) == pid


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding a flock on the file ``st`` describes, from the kernel's lock table
    (/proc/locks); None when none does or the table cannot be read."""
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as fh:
            table = fh.read(1 << 20)
    except OSError:
        return None
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:123456 0 EOF" (blocked waiters: "-> ...")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == inode:
            return int(fields[4]) if fields[4].isdigit() else None
    return None
