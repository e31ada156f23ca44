"""Files replaced whole: a reader, or a restart after a crash, finds the old content or the
new one, never a part of either.

`replace_file` writes the new content beside the file (``<name>.tmp``, its mode set before
the first byte), flushes it to disk, renames it over the file and flushes the directory, so
the new name survives a crash too. One writer at a time per path: its callers hold a lock
or are the path's only writer. A ``<name>.tmp`` a crash left behind is overwritten by the
next write; `tmp_name` names it for whoever cleans the directory. `write_in_place` is for
a file written again under its name whenever it is needed, where a crash may leave it cut
short; `replace_file_among_others` is for a folder other users may write to. All create
files of the mode asked (0600 unless said), never through a link.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def tmp_name(name: str) -> str:
    """The name `replace_file` writes ``name``'s next content under."""
    return name + TMP_SUFFIX


def sync_path(path: Path) -> None:
    """Flush a file's content, or a directory's entries, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_in_place(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``path`` in place (created or truncated, its mode set to ``mode``, never
    through a link at ``path``), unsynced: for a file a crash may leave cut short because
    whoever needs it writes it again under the same name (a grading's check outputs)."""
    _write(path, data, mode, sync=False)


def write_all(fd: int, data: bytes, *, sync: bool) -> None:
    """Write all of ``data`` to ``fd`` (a short write goes on), flushed to disk with
    ``sync``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    if sync:
        os.fsync(fd)


def _write(path: Path, data: bytes, mode: int, *, sync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.fchmod(fd, mode)  # a file that was there keeps its mode otherwise
        write_all(fd, data, sync=sync)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, *, mode: int = 0o600, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` (a new file of ``mode``) in one rename; with ``sync``
    (the default) the content and the rename are on disk when this returns."""
    tmp = path.with_name(tmp_name(path.name))
    try:
        _write(tmp, data, mode, sync=sync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
    if sync:
        sync_path(path.parent)


def replace_file_among_others(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """`replace_file` into a folder other users may write to (an export to /tmp): the new
    content goes under a random name made exclusively, which nobody can have planted; a
    link or another user's file planted at ``<name>.tmp`` made the fixed name fail."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data, sync=True)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_path(path.parent)
