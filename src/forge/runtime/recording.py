"""Terminal recordings: every lab terminal session written as an asciicast v2 file.

`RecordingTty` wraps any engine's `TtySession` and appends one JSON line per event to a file
of the lab's recordings directory on the node: `[t, "o", text]` for output, `[t, "i", text]`
for what was typed, `[t, "r", "COLSxROWS"]` for a resize, after a header line (version 2,
width, height, timestamp, title). Bytes are decoded with incremental UTF-8 decoders
(errors replaced), so a character split across two reads stays whole.

The recordings become members of the signed evidence bundle at grading, so the verdict covers
what was typed and shown. The directory (`<STORAGE_ROOT>/scenarios/<id>/recordings`, mode 0700,
owned by the service) is never mounted into a lab host and the grader's checks run inside the
lab, so neither the learner nor a check can reach it. Files are created O_EXCL, mode 0600,
relative to a directory opened without following symlinks.

Caps: a recording stops at `RECORDING_CAP_BYTES`, a lab's recordings together at
`LAB_CAP_BYTES`; at the cap one marker event (`"m"`) says the recording was truncated and
recording stops, while the terminal itself keeps working. A lab has at most
`MAX_RECORDINGS` recordings, all hosts together; past that no terminal opens (fail closed).

Writes are batched: output events are encoded into a buffer that goes to the file once it
holds `FLUSH_BYTES` or `FLUSH_INTERVAL_S` after the last write (checked at each event), at
each keystroke or resize event (written at once, with the output before them), and before
the session is closed, so a shell printing without pause costs one write(2) per batch, not
one per read, and what was typed is never only in memory.
The caps count buffered bytes as written, so they hold exactly as before.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from forge.runtime.base import RuntimeFault, TtySession
from forge.scenario_paths import scenario_dir
from forge_verify.recordings import RECORDING_NAME_PATTERN, RECORDING_NAME_RE

RECORDINGS_DIR = "recordings"
RECORDING_CAP_BYTES = 2 << 20
"""One recording at most (header, events and the truncation marker)."""
LAB_CAP_BYTES = 8 << 20
"""All recordings of one lab together at most."""
MAX_RECORDINGS = 512
"""Sessions recorded per lab at most (sequence numbers 1..MAX_RECORDINGS)."""
FLUSH_BYTES = 64 << 10
"""Buffered recording bytes that trigger a write to the file."""
FLUSH_INTERVAL_S = 1.0
"""Longest time (between events) buffered bytes wait for their write."""
_WRITTEN_AT_ONCE = frozenset({"i"})  # what was typed (and the output before it) is on disk
# at once, like a resize: a crash or a grading that reads the file early keeps it
_MARKER_RESERVE = 160  # bytes kept free under a cap for the truncation marker
log = logging.getLogger("forge.runtime.recording")


class _Runtime(Protocol):
    def tty(self, lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession: ...


def recordings_dir(storage_root: Path, scenario_id: str) -> Path:
    """Where the node keeps a lab's recordings (never mounted into the lab); ValueError for
    an id that is not a scenario id, so no id reaches outside the scenarios folder."""
    return scenario_dir(storage_root, scenario_id) / RECORDINGS_DIR


class _LabBudget:
    """Bytes still allowed for a lab's recordings, shared by its concurrent sessions."""

    def __init__(self, used: int) -> None:
        self.left = LAB_CAP_BYTES - used
        self.lock = threading.Lock()

    def charge(self, size: int) -> None:
        with self.lock:
            self.left -= size

    def take(self, size: int) -> bool:
        with self.lock:
            if size > self.left:
                return False
            self.left -= size
            return True


_budgets: dict[str, _LabBudget] = {}
_budgets_lock = threading.Lock()


def _open_dir(path: Path) -> int:
    """The recordings directory, created 0700 if missing; refused if it is a symlink or not
    the service's own directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
        os.close(fd)
        raise PermissionError(f"{path}: not a private directory of this service")
    return fd


def _budget(dir_fd: int, key: str) -> _LabBudget:
    with _budgets_lock:
        found = _budgets.get(key)
        if found is None:
            used = 0
            for name in os.listdir(dir_fd):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                used += info.st_size if stat.S_ISREG(info.st_mode) else 0
            found = _budgets[key] = _LabBudget(used)
        return found


def discard_recordings(storage_root: Path, scenario_id: str) -> None:
    """Remove a lab's recordings and forget its budget: called when the lab is torn down,
    after grading packed them (or when the lab ends without grading)."""
    path = recordings_dir(storage_root, scenario_id)
    with _budgets_lock:
        _budgets.pop(str(path), None)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink():
        path.unlink()


def _create(dir_fd: int, host: str) -> tuple[int, str]:
    """A new recording file `<host>.<n>.cast` (O_EXCL, 0600, never through a symlink); at
    most MAX_RECORDINGS in the lab, all hosts together (an evidence pack holds no more)."""
    with _budgets_lock:  # count and create as one step: two sessions never both squeeze in
        held = sum(1 for n in os.listdir(dir_fd) if RECORDING_NAME_RE.fullmatch(n))
        if held >= MAX_RECORDINGS:
            raise FileExistsError(f"this lab already has {MAX_RECORDINGS} recordings")
        for seq in range(1, MAX_RECORDINGS + 1):
            name = f"{host}.{seq}.cast"
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue
            return fd, name
    raise FileExistsError(f"{MAX_RECORDINGS} recordings already exist")


class RecordingTty(TtySession):
    """A `TtySession` whose output, input and resizes are appended to an asciicast v2 file."""

    def __init__(self, inner: TtySession, fd: int, budget: _LabBudget, *, host: str,
                 rows: int, cols: int, cap: int = RECORDING_CAP_BYTES) -> None:
        self._inner, self._fd, self._budget, self._cap = inner, fd, budget, cap
        self._lock = threading.RLock()
        self._start = time.monotonic()
        self._written = 0
        self._pending = bytearray()
        self._flushed_at = self._start
        self._recording = True
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._in = codecs.getincrementaldecoder("utf-8")(errors="replace")
        header = {"version": 2, "width": cols, "height": rows, "timestamp": int(time.time()),
                  "title": f"lab host {host}", "env": {"TERM": "xterm-256color"}}
        # The header is always written (a few hundred bytes, beyond the lab's budget), so
        # even a session past the lab's cap leaves a valid file saying it was truncated.
        head = (json.dumps(header, sort_keys=True) + "\n").encode("utf-8")
        budget.charge(len(head))
        self._write_locked(head)
        self._flush_locked()

    def _line(self, kind: str, text: str) -> str:
        elapsed = round(time.monotonic() - self._start, 6)
        return json.dumps([elapsed, kind, text], ensure_ascii=False) + "\n"

    def _append(self, line: str) -> None:
        """Write one event line, or at a cap the truncation marker, then stop recording."""
        with self._lock:
            if not self._recording:
                return
            data = line.encode("utf-8")
            room = self._cap - _MARKER_RESERVE - self._written
            if len(data) > room or not self._budget.take(len(data)):
                self._stop_locked("recording truncated: its size cap was reached; "
                                  "the terminal went on unrecorded")
                return
            self._write_locked(data)

    def _write_locked(self, data: bytes) -> None:
        """Buffer `data` (counted against the caps now); write the batch when it is due."""
        self._pending += data
        self._written += len(data)
        if (len(self._pending) >= FLUSH_BYTES
                or time.monotonic() - self._flushed_at >= FLUSH_INTERVAL_S):
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Write every buffered byte to the file."""
        self._flushed_at = time.monotonic()
        if not self._pending or self._fd < 0:
            return
        data = bytes(self._pending)
        self._pending.clear()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except OSError as exc:  # a full disk ends the recording, never the terminal
            log.warning("terminal recording stopped: %s", exc.strerror or exc)
            self._recording = False

    def _stop_locked(self, why: str) -> None:
        marker = self._line("m", why).encode("utf-8")
        self._write_locked(marker)
        self._flush_locked()
        self._recording = False

    def _event(self, kind: str, decoder: codecs.IncrementalDecoder, data: bytes,
               final: bool = False) -> None:
        with self._lock:  # `close` flushes the decoders from another thread
            text = decoder.decode(data, final)
            if text:
                self._append(self._line(kind, text))
            if kind in _WRITTEN_AT_ONCE:
                self._flush_locked()

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Output of the terminal, recorded as an "o" event."""
        data = await self._inner.read(max_bytes)
        if data:
            self._event("o", self._out, data)
        return data

    async def write(self, data: bytes) -> None:
        """Keystrokes, recorded as an "i" event once the terminal took them."""
        await self._inner.write(data)
        self._event("i", self._in, data)

    def resize(self, rows: int, cols: int) -> None:
        """Resize the terminal, recorded as an "r" event."""
        self._inner.resize(rows, cols)
        with self._lock:
            self._append(self._line("r", f"{cols}x{rows}"))
            self._flush_locked()

    def close(self) -> None:
        """Write what is buffered, end the session, then finish the file (undecoded tails
        flushed, fsynced). Idempotent."""
        with self._lock:  # on disk before the session's end is seen (grading reads it then)
            self._flush_locked()
        self._inner.close()
        self._event("o", self._out, b"", final=True)
        self._event("i", self._in, b"", final=True)
        with self._lock:
            self._flush_locked()
            self._recording = False
            if self._fd >= 0:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1

    @property
    def closed(self) -> bool:
        """True once the wrapped session has ended."""
        return self._inner.closed


def recorded_tty(runtime: _Runtime, storage_root: Path
                 ) -> Callable[[str, str, int, int], TtySession]:
    """`runtime.tty` whose sessions are recorded into the lab's recordings directory.

    The recording file is made before the terminal, so a lab whose recordings cannot be
    written gets no unrecorded terminal (fail closed)."""
    def open_tty(lab_id: str, host: str, rows: int = 24, cols: int = 80) -> TtySession:
        try:
            path = recordings_dir(storage_root, lab_id)
        except ValueError:
            raise RuntimeFault("terminal recording cannot be written: not a scenario id"
                               ) from None
        try:
            dir_fd = _open_dir(path)
            try:
                budget = _budget(dir_fd, str(path))
                fd, _ = _create(dir_fd, host)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise RuntimeFault(f"terminal recording of {lab_id} cannot be written: "
                               f"{exc.strerror or exc}") from None
        try:
            inner = runtime.tty(lab_id, host, rows, cols)
        except BaseException:
            os.close(fd)
            raise
        return RecordingTty(inner, fd, budget, host=host, rows=rows, cols=cols)
    return open_tty


def read_recordings(storage_root: Path, scenario_id: str) -> dict[str, bytes]:
    """Every recording of a lab by file name (regular files with a strict name only)."""
    path = recordings_dir(storage_root, scenario_id)
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return {}
    out: dict[str, bytes] = {}
    try:
        for name in sorted(os.listdir(dir_fd)):
            if not RECORDING_NAME_RE.fullmatch(name):
                continue
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            with os.fdopen(fd, "rb") as fh:
                if stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                    out[name] = fh.read(RECORDING_CAP_BYTES + 1)[:RECORDING_CAP_BYTES]
    finally:
        os.close(dir_fd)
    return out


__all__ = ["LAB_CAP_BYTES", "MAX_RECORDINGS", "RECORDINGS_DIR", "RECORDING_CAP_BYTES",
           "RECORDING_NAME_PATTERN", "RecordingTty", "discard_recordings", "read_recordings",
           "recorded_tty", "recordings_dir"]
