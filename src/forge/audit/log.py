"""Writing audit logs: append under a file lock, checkpoint with a signing key, verify.

Many processes (replicas, CLI commands) may append to the same log; a `filelock` lock
around "read the tail, write one line, fsync" keeps the chain linear. A half-written last
line (a crash during write) was never committed and is cut off before the next append, as
are blank lines after the last entry (no entry: the next one links to the last there is).
A write the disk cuts short (full: ENOSPC after part of the line) is taken back and raised,
never reported as appended.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from filelock import FileLock, Timeout

from forge.durable import replace_file, write_all
from forge.private_lock import lock_now, private_lock
from forge.scenario_paths import scenario_dir
from forge_verify.audit_chain import (
    CHECKPOINT_EVENT,
    EVENT_RE,
    GLOBAL_STREAM,
    ChainReport,
    checkpoint_data,
    genesis_hash,
    make_line,
    prefix_through,
    scenario_stream,
    verify_chain,
)
from forge_verify.canonical import CanonicalJSONError, loads
from forge_verify.keys import Signer

_TAIL_CHUNK = 65536
# A line a scan for one event reads (`AuditLog.lines`): an entry longer is none of the
# small ones scanned for (a verdict, a retention deletion), and is skipped unread.
MAX_SCANNED_LINE = 64 * 1024


class AuditError(Exception):
    """The log cannot be appended to (corrupt tail, bad event name or data, its lock held
    by another process for LOCK_TIMEOUT_S)."""


# A holder of the lock writes one line and syncs it (adopting a shipped log, a few MiB):
# one still holding it after this long is stuck (a stopped process, a hung disk), and
# waiting on would hang every service that audits, with nothing in its log.
LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AuditEntry:
    """One appended line."""

    seq: int
    hash: str
    event: str
    line: bytes


def format_audit_time(at: datetime | None = None) -> str:
    """UTC timestamp with microseconds, as written into audit lines."""
    moment = datetime.now(UTC) if at is None else at.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfind_newline(fh: BinaryIO, limit: int) -> int:
    """Offset of the last newline before `limit`, or -1."""
    pos = limit
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        fh.seek(pos)
        found = fh.read(step).rfind(b"\n")
        if found != -1:
            return pos + found
    return -1


def _read_tail(fh: BinaryIO, size: int) -> tuple[bytes, int]:
    """(last complete line, offset just after it); offset < size means a partial tail."""
    end = _rfind_newline(fh, size)
    if end == -1:
        return b"", 0
    start = _rfind_newline(fh, end)
    fh.seek(start + 1)
    return fh.read(end - start - 1), end + 1


def _open_no_link(path: Path, flags: int, mode: int = 0o640) -> int:
    """os.open of a log file never through a symbolic link at `path`: a scenario folder
    another user may write (left open by an older release) could hold one to any file of
    this user's, which an append would cut and write to, and a read would ship. An
    AuditError says so; the file the link names is left as it is."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if os.path.islink(path):
            raise AuditError(f"{path}: is a symbolic link, not the audit log this service "
                             "wrote; refused (another user may have planted it: remove it, "
                             "make the folder writable by its owner only, and run `forge "
                             "audit verify`)") from None
        raise exc from None


class AuditLog:
    """One append-only hash-chained log file and its signed head sidecar."""

    def __init__(
        self,
        path: Path,
        stream: str,
        *,
        signer: Signer | None = None,
        checkpoint_every: int = 0,
        fsync: bool = True,
        lock_timeout_s: float = LOCK_TIMEOUT_S,
    ) -> None:
        self.path = Path(path)
        self.stream = stream
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.signer = signer
        self.checkpoint_every = checkpoint_every
        self.fsync = fsync
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.lock_timeout_s = lock_timeout_s
        self._lock: FileLock | None = None  # made at the first contended append

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the log's lock; AuditError naming it when another process held it for the
        whole timeout (the action that wanted an audit line fails rather than hangs).

        A free lock is taken with one flock (`lock_now`): a lab's life appends four lines,
        and FileLock's acquire and release cost more CPU than the line's own write. A held
        one is waited for by FileLock, with the timeout, as before."""
        fd = lock_now(self.lock_path)
        if fd is not None:
            try:
                yield
            finally:
                os.close(fd)  # releases the flock
            return
        if self._lock is None:
            self._lock = private_lock(self.lock_path, timeout=self.lock_timeout_s)
        try:
            self._lock.acquire()
        except Timeout:
            raise AuditError(f"{self._lock.lock_file}: held by another process for "
                             f"{self._lock.timeout:g} s; find it with `fuser -v` on that "
                             "file") from None
        try:
            yield
        finally:
            self._lock.release()

    def _last(self) -> tuple[int, str]:
        """(next seq, prev hash), repairing a partial tail."""
        if not self.path.exists():
            return 0, genesis_hash(self.stream)
        with os.fdopen(_open_no_link(self.path, os.O_RDWR), "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            line, end = _read_tail(fh, size)
            while not line and end > 0:  # a blank line: the entry is the one before it
                line, end = _read_tail(fh, end - 1)
            if end < size:
                fh.truncate(end)
        if not line:
            return 0, genesis_hash(self.stream)
        try:
            obj = loads(line)
            return int(obj["seq"]) + 1, str(obj["hash"])
        except (CanonicalJSONError, KeyError, TypeError, ValueError):
            raise AuditError(f"{self.path}: last line is corrupt; run `forge audit verify`") \
                from None

    def _write(self, line: bytes) -> None:
        """Append `line` whole, or raise with the file as it was: a full disk takes part
        of a line and refuses the rest (a short write), and that part, reported as
        appended, was the entry lost: cut off before the next append."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_no_link(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            start = os.fstat(fd).st_size  # under the lock: where this line begins
            try:
                write_all(fd, line, sync=self.fsync)  # the rest of a short write: ENOSPC
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                raise
        finally:
            os.close(fd)

    def _append_locked(self, event: str, data: Mapping[str, Any], at: datetime | None,
                       checkpoint_signer: Signer | None) -> AuditEntry:
        seq, prev = self._last()
        time = format_audit_time(at)
        if checkpoint_signer is not None:
            data = checkpoint_data(checkpoint_signer, self.stream, seq, prev, time)
        try:
            line = make_line(seq, prev, time, event, data)
        except CanonicalJSONError as exc:
            raise AuditError(f"data: {exc}") from None
        self._write(line)
        if checkpoint_signer is not None:
            replace_file(self.head_path, line, mode=0o640, sync=self.fsync)
        return AuditEntry(seq, loads(line)["hash"], event, line)

    def append(self, event: str, data: Mapping[str, Any] | None = None, *,
               at: datetime | None = None) -> AuditEntry:
        """Append one event; a checkpoint follows every `checkpoint_every` events."""
        if EVENT_RE.fullmatch(event) is None or event == CHECKPOINT_EVENT:
            raise AuditError(f"event: invalid event name {event!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            entry = self._append_locked(event, dict(data or {}), at, None)
            if (self.signer is not None and self.checkpoint_every > 0
                    and (entry.seq + 2) % (self.checkpoint_every + 1) == 0):
                self._append_locked(CHECKPOINT_EVENT, {}, at, self.signer)
        return entry

    def checkpoint(self, signer: Signer | None = None, *, at: datetime | None = None) -> AuditEntry:
        """Seal the chain head with a signature (and update the head sidecar)."""
        use = signer or self.signer
        if use is None:
            raise AuditError("checkpoint: no signing key given")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            return self._append_locked(CHECKPOINT_EVENT, {}, at, use)

    def read_bytes(self) -> bytes:
        """The whole log (empty if it does not exist yet)."""
        try:
            fd = _open_no_link(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return b""
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    def lines(self, max_line: int = MAX_SCANNED_LINE) -> Iterator[bytes]:
        """The log's lines one at a time (none if it does not exist yet), those longer than
        `max_line` skipped unread: a scan for one event must not hold a log growing with
        the installation's age in memory, nor one line of any length."""
        try:
            fd = _open_no_link(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as fh:
            while line := fh.readline(max_line):
                if line.endswith(b"\n") or len(line) < max_line:
                    yield line
                    continue
                while (rest := fh.readline(max_line)) and not rest.endswith(b"\n"):
                    pass  # the rest of an overlong line

    def adopt(self, prefix: bytes, through: str) -> bool:
        """Make this log start with `prefix`, a verified chain another machine wrote (a lab
        node ships a scenario's log through `through`); True if the copy was written now.

        A log already here must begin with exactly that prefix (the same file on a
        one-machine install, or a copy adopted before); anything else is an AuditError,
        never overwritten.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            existing = self.read_bytes()
            if existing:
                if prefix_through(existing, through) != prefix:
                    raise AuditError(f"{self.path}: the local log differs from the shipped "
                                     "one up to its " + through + " entry")
                return False
            tmp = self.path.with_name(self.path.name + ".adopt")
            with os.fdopen(_open_no_link(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           "wb") as fh:
                fh.write(prefix)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.path)
            return True

    def read_through(self, event: str) -> bytes | None:
        """The log up to and including the first `event` line (e.g. `scenario.completed`)."""
        return prefix_through(self.read_bytes(), event)

    def verify(self, public_keys: Mapping[str, Ed25519PublicKey] | None) -> ChainReport:
        """Check the log and its head sidecar; a missing sidecar with checkpoints is a reason."""
        data = self.read_bytes()
        head = self.head_path.read_bytes() if self.head_path.exists() else None
        report = verify_chain(data, stream=self.stream, public_keys=public_keys, head=head)
        if head is None and report.checkpoints:
            report.reasons.append("signed head checkpoint file is missing (deleted?)")
        if not data and self.path.exists():  # made, but its first line never written
            report.notes.append("the log is empty: its first entry was never written (a "
                                "crash or a full disk as it was made)")
        return report


def global_log_path(storage_root: Path) -> Path:
    """Location of the installation-wide audit log."""
    return storage_root / "audit" / "global.jsonl"


def scenario_log_path(storage_root: Path, scenario_id: str) -> Path:
    """Location of a scenario's audit log (the id is validated first)."""
    return scenario_dir(storage_root, scenario_id) / "audit.jsonl"


def global_log(storage_root: Path, signer: Signer | None = None,
               checkpoint_every: int = 100) -> AuditLog:
    """The global audit log, checkpointed every `checkpoint_every` entries when signed."""
    return AuditLog(global_log_path(storage_root), GLOBAL_STREAM, signer=signer,
                    checkpoint_every=checkpoint_every)


def scenario_log(storage_root: Path, scenario_id: str, signer: Signer | None = None,
                 checkpoint_every: int = 0) -> AuditLog:
    """A scenario's audit log (stream `scenario:<id>`)."""
    return AuditLog(scenario_log_path(storage_root, scenario_id), scenario_stream(scenario_id),
                    signer=signer, checkpoint_every=checkpoint_every)
