"""One bounded reader for every file handed to a CLI command or the offline verifier.

A path given on a command line can name anything: `/dev/zero` (endless), a FIFO (blocks
forever on open or read), a socket, a directory, or a file far larger than any real input.
`read_bounded` refuses each of these with a one-line reason instead of hanging or filling
memory: it opens without blocking (O_NONBLOCK, and O_NOFOLLOW when links must not be
followed), accepts only a regular file (checked on the open descriptor, so a swap after the
check cannot change what is read), and never reads more than the cap plus one byte.
Standard library only (the offline verifier uses it).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_CHUNK = 1 << 20


class InputRefused(Exception):
    """A file cannot be read as input; the message is one line naming the file and why."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label}: {reason}")
        self.label = label
        self.reason = reason


def _kind(mode: int) -> str | None:
    """Why a file of this mode is not readable input (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISLNK(mode):
        return "is a symbolic link (not followed)"
    return "is not a regular file"


def _open(path: Path, label: str, follow_symlinks: bool) -> int:
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        # Refuse special files before opening them at all (opening a device can act).
        why = _kind(os.stat(path, follow_symlinks=follow_symlinks).st_mode)
        if why is not None:
            raise InputRefused(label, why)
        return os.open(path, flags)
    except FileNotFoundError:
        raise InputRefused(label, "file not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputRefused(label, "is a symbolic link (not followed)") from None
        raise InputRefused(label, f"{exc.strerror or 'cannot open'}") from None


def read_bounded(path: str | os.PathLike[str], max_bytes: int, *, what: str = "file",
                 follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, else InputRefused (one line)."""
    path = Path(path)
    label = f"{what} {path}"
    fd = _open(path, label, follow_symlinks)
    try:
        info = os.fstat(fd)
        why = _kind(info.st_mode)
        if why is not None:
            raise InputRefused(label, why)
        if info.st_size > max_bytes:
            raise InputRefused(label, f"larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
            except OSError as exc:
                raise InputRefused(label, f"{exc.strerror or 'read failed'}") from None
            if not chunk:
                return b"".join(chunks)
            total += len(chunk)
            if total > max_bytes:  # grew while being read
                raise InputRefused(label, f"larger than {max_bytes} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_bounded_text(path: str | os.PathLike[str], max_bytes: int, *, what: str = "file",
                      follow_symlinks: bool = True) -> str:
    """As `read_bounded`, decoded as UTF-8 (invalid UTF-8 is refused, not replaced)."""
    data = read_bounded(path, max_bytes, what=what, follow_symlinks=follow_symlinks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRefused(f"{what} {path}", f"not UTF-8 text (byte {exc.start})") from None
