"""Whether another local user could have written a file the operator named.

A secret's ``<NAME>_FILE``, the OIDC and LTI files, the LTI tool key and
``ENTITLEMENTS_FILE`` are trusted as the operator's: a file another user owns, or may
write, holds what that user chose (an operator token of theirs, an identity provider of
theirs that signs anyone in as staff, a plan for any tenant).
Judged on the status of the file actually read (``os.fstat`` of its open descriptor), so
a link switched between a check and the read cannot pass one file and read another; and
on every folder its path is looked up in, links followed: a folder another user owns or
may write lets them put another file (a link to any root-owned file whose content they
know) in the operator's file's place, whatever that file's own owner and mode. A folder
anyone may write but with the sticky bit (/tmp) is trusted for an entry of this user's or
root's, which no other user may rename or remove there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from forge.config.storage_root import look_up


def _writable_by_others(info: os.stat_result) -> bool:
    """Whether a user other than this one (or root) owns or may write what ``info``
    describes: its group counts as no other user when it is this user's own or root's."""
    me, mode = os.geteuid(), stat.S_IMODE(info.st_mode)
    if info.st_uid not in (me, 0):
        return True
    own_group = info.st_gid in (os.getegid(), 0)
    return bool(mode & (0o002 if own_group else 0o022))


def swappable_by_others(path: str | os.PathLike[str]) -> str | None:
    """The folder of ``path``'s lookup (`look_up`, links followed) where another local
    user may put another file in its place: one they own, or may write without the sticky
    bit keeping an entry of this user's or root's. None when no other user can change what the path
    names."""
    me = os.geteuid()
    # A relative path from the working folder's own path, its folders judged too.
    named = os.path.join(os.getcwd(), os.fspath(path))
    for folder, _, entry, _ in look_up(named, follow_last=True).steps:
        try:
            info = os.stat(folder)
        except OSError:
            continue  # the open already found what the path names
        if info.st_uid in (me, 0) and not _writable_by_others(info):
            continue
        if info.st_uid in (me, 0) and info.st_mode & stat.S_ISVTX \
                and entry is not None and entry.st_uid in (me, 0):
            continue  # /tmp: no other user renames or removes it
        mode = stat.S_IMODE(info.st_mode)
        return (f"is looked up in the folder {folder}, which uid {info.st_uid} owns (mode "
                f"{mode:o}): another user may put another file in its place; keep it in a "
                f"folder only uid {me} (or root) may write")
    return None


def chosen_by_others(path: str | os.PathLike[str], info: os.stat_result) -> str | None:
    """Why the file ``info`` describes (read from ``path``) may hold another local user's
    choice: owned by a user other than this one or root, or writable by other users (its
    group counts as no other user when it is this user's own or root's, as in
    ``root:forge 0640``), or looked up in a folder another user may change
    (``swappable_by_others``). None when only this user (or root) could have written it."""
    me, group, mode = os.geteuid(), os.getegid(), stat.S_IMODE(info.st_mode)
    own_group = info.st_uid in (me, 0) and info.st_gid in (group, 0)
    fix = f"if it is yours, run `chown {me}:{group} {path} && chmod go-w {path}`"
    if info.st_uid not in (me, 0):
        return (f"is owned by uid {info.st_uid} (mode {mode:o}), not by uid {me}: that user "
                f"could have chosen its content; {fix}")
    if mode & (0o002 if own_group else 0o022):
        return (f"is writable by other users (owner uid {info.st_uid}, mode {mode:o}): they "
                f"could have chosen its content; {fix}")
    return swappable_by_others(path)


def read_operator_file(path: Path, limit: int) -> tuple[bytes, str | None]:
    """Up to ``limit`` + 1 bytes of the operator's file ``path`` (one more than a caller
    allows, to tell a larger file), and why another user may have chosen them
    (`chosen_by_others`, judged on the file opened; nothing is read then). Raises OSError
    when the file cannot be read."""
    with path.open("rb") as handle:
        why = chosen_by_others(path, os.fstat(handle.fileno()))
        return (handle.read(limit + 1) if why is None else b""), why


__all__ = ["chosen_by_others", "read_operator_file", "swappable_by_others"]
