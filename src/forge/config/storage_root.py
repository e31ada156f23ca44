"""A storage root Forge may trust: one only this user (or root) can change.

The storage root holds what everything else is trusted on: the dev secrets (HMAC secrets,
OPERATOR_TOKEN, NATS passwords), the verdict signing keys, the state database and the
embedded NATS's configuration and TLS keys. A root another local user made (``cd /tmp &&
forge demo`` uses ``/tmp/storage``, which anyone can make first) or can write to lets that
user choose those secrets, read or change what is written, or plant a signing key. So
whenever Forge opens a storage root, the root and every part of it that is there is
checked first (`check_storage_root`), and anything another user owns or may write, or a
link where a folder or file belongs, is refused (`UnsafeStorage`) before a byte is read or
written: nothing is repaired or taken over. Each folder above the root must be this
user's or root's, and not writable by others unless sticky (``/tmp``): whoever owns or may
write a folder above could rename the root away and put a folder of theirs in its place
after it was checked.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from pathlib import Path
from typing import NamedTuple

# The parts of a storage root that secrets, keys, the database and NATS live in.
TRUSTED_DIRS = ("secrets", "keys", "keys/signing", "nats", "nats-tls")
TRUSTED_FILES = ("secrets/dev-secrets.json", "forge.db", "forge.db-wal", "forge.db-shm",
                 "forge.db-journal")
ROOT_MODE = 0o755  # a root Forge makes: others may read results (no secret is readable)
# The folders of results, audit logs, holds, sealing marks, logs and lab state Forge makes
# under the root. An older release run under umask 0 made them (and the folders inside)
# 0777: another user could swap a scenario's audit log for a link to any file root then
# appended to. A link to such a folder elsewhere (a bigger disk) is the owner's own choice.
MADE_DIRS = ("scenarios", "audit", "retention", "scoreboard", "scoreboard/unsealed", "logs",
             "runtime")


class UnsafeStorage(Exception):
    """A storage root, or a part of it, that another user could have planted or changed;
    the message (one line) names the path, its owner and mode, and what to do."""

    def __init__(self, root: Path, path: Path, why: str, fix: str) -> None:
        self.root = root
        self.path = path
        self.why, self.fix = why, fix  # for a refusal worded for what it is (a keyring)
        super().__init__(f"refusing storage root {root}: {path} {why}; {fix}, "
                         "or choose another --storage/STORAGE_ROOT")


def _fix(path: Path) -> str:
    me = os.geteuid()
    return f"if it is yours, run `chown {me}:{os.getegid()} {path} && chmod go-w {path}`"


def check_path(root: Path, path: Path, *, directory: bool) -> bool:
    """Refuse (UnsafeStorage) ``path`` of storage root ``root`` when it is a link, not a
    folder (``directory``) or plain file, owned by neither this user nor root, or writable
    by its group or others; False when it is not there, True when it is and may be
    trusted."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError:
        raise UnsafeStorage(root, path, f"cannot be looked at by uid {os.geteuid()}",
                            "run forge as the user the storage root belongs to") from None
    mode = stat.S_IMODE(st.st_mode)
    what = "folder" if directory else "file"
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStorage(root, path, f"is a symlink where a {what} belongs (owner uid "
                                        f"{st.st_uid})", "remove it if you did not make it")
    if (directory and not stat.S_ISDIR(st.st_mode)) \
            or (not directory and not stat.S_ISREG(st.st_mode)):
        raise UnsafeStorage(root, path, f"is not a {what} (owner uid {st.st_uid}, mode "
                                        f"{mode:o})", "remove it if you did not make it")
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise UnsafeStorage(root, path, f"is owned by uid {st.st_uid} (mode {mode:o}), not "
                                        f"by uid {me}: that user could have planted its "
                                        "secrets, keys or database", _fix(path))
    if mode & 0o022 and _own_group_only(st):
        # Made by an older release under umask 002 (0775 on Ubuntu or Fedora, a group of
        # this user's alone): tightened, not refused, so an upgrade starts.
        os.chmod(path, mode & ~0o022, follow_symlinks=False)
        mode &= ~0o022
    if mode & 0o022:
        raise UnsafeStorage(root, path, f"is writable by other users (owner uid "
                                        f"{st.st_uid}, mode {mode:o})", _fix(path))
    return True


def own_group(st: os.stat_result) -> bool:
    """This user's own path whose group is this user's own (or root's): its group is then
    no other user."""
    return st.st_uid == os.geteuid() and st.st_gid in (os.getegid(), 0)


def others_may_write(st: os.stat_result) -> bool:
    """May a user other than this one (or root) write the path: others, or a group that is
    not this user's own (`own_group`)?"""
    return bool(st.st_mode & (0o002 if own_group(st) else 0o022))


def _own_group_only(st: os.stat_result) -> bool:
    """This user's own path, writable by its group (this user's own, or root's) but not
    by others: no other user's way in."""
    return own_group(st) and not st.st_mode & 0o002


def check_storage_root(root: Path) -> None:
    """Refuse (UnsafeStorage) storage root ``root`` when it, or any of its folders and
    files that hold secrets, keys, the database or NATS's settings, is not safe
    (`check_path`). A root not made yet passes: whoever makes it makes it safe
    (`make_private_dir`, `make_storage_root`)."""
    root = Path(os.path.abspath(root))
    check_above(root)
    if not check_path(root, root, directory=True):
        return
    for name in TRUSTED_DIRS:
        check_path(root, root / name, directory=True)
    for name in TRUSTED_FILES:
        check_path(root, root / name, directory=False)
    for name in MADE_DIRS:
        _check_made_dir(root, root / name)


def _check_made_dir(root: Path, path: Path) -> None:
    """Refuse (UnsafeStorage) a folder of MADE_DIRS (or what a link there points at) that
    another user owns or may write; the fix named covers the folders inside it too."""
    try:
        st = os.stat(path)
    except OSError:
        return
    mode = stat.S_IMODE(st.st_mode)
    me = os.geteuid()
    fix = f"if it is yours, run `chown -R {me}:{os.getegid()} {path} && chmod -R go-w {path}`"
    if st.st_uid not in (me, 0):
        raise UnsafeStorage(root, path, f"is owned by uid {st.st_uid} (mode {mode:o}), not "
                                        f"by uid {me}: that user could have changed what "
                                        "is in it", fix)
    if others_may_write(st):
        raise UnsafeStorage(root, path, f"is writable by other users (owner uid "
                                        f"{st.st_uid}, mode {mode:o}), and so may be the "
                                        "folders in it", fix)


MAX_LINKS = 40  # as the kernel's lookup (ELOOP past it)


class Lookup(NamedTuple):
    """One name looked up on the way to a path: the folder whose entry is read, the
    entry's name, its lstat (None when it is not there or cannot be looked at) and whether
    names are left to look up after it."""

    folder: str
    name: str
    info: os.stat_result | None
    more: bool


class Lookups(NamedTuple):
    """The lookups resolving a path, in order; what it names (None when a name is missing,
    a link cannot be read or more than the links allowed were met) and the links
    followed."""

    steps: list[Lookup]
    real: str | None
    links: int


def look_up(path: str, *, follow_last: bool, max_links: int = MAX_LINKS) -> Lookups:
    """Every lookup a resolution of the absolute ``path`` does, as the kernel's: the
    folder holding each link on the way as well as its target's (whoever may change a
    link's folder re-points the link); a link at the end is followed when ``follow_last``.
    Stops at the first name that is not there (a root not made yet) or cannot be looked
    at, or past ``max_links`` links. The one walk every check of the folders on the way
    to a trusted path (a storage root, an operator's file, a content tree) judges."""
    steps: list[Lookup] = []
    pending = deque(p for p in path.split("/") if p)
    at, links = "/", 0
    while pending:
        name = pending.popleft()
        if name == ".":
            continue
        if name == "..":
            at = os.path.dirname(at)
            continue
        step = os.path.join(at, name)
        try:
            info: os.stat_result | None = os.lstat(step)
        except OSError:
            info = None
        steps.append(Lookup(at, name, info, bool(pending)))
        if info is None:
            return Lookups(steps, None, links)
        if not stat.S_ISLNK(info.st_mode) or not (pending or follow_last):
            at = step
            continue
        links += 1
        if links > max_links:
            return Lookups(steps, None, links)
        try:
            target = os.readlink(step)
        except OSError:
            return Lookups(steps, None, links)
        if target.startswith("/"):
            at = "/"
        pending.extendleft(reversed([p for p in target.split("/") if p]))
    return Lookups(steps, at, links)


def unsafe_folder_above(path: Path) -> tuple[Path, os.stat_result] | None:
    """The first folder above the absolute ``path`` (with its stat), nearest first, that
    another user owns, or may write to without the sticky bit (`others_may_write`): they
    could swap ``path`` for a folder of theirs after it was checked. None when every one
    is safe. The folders judged are every one a lookup of the path reads (`look_up`, a
    link at the end not followed), the folder of each link on the way included."""
    me = os.geteuid()
    folders = dict.fromkeys(s.folder for s in look_up(str(path), follow_last=False).steps)
    for above in reversed(list(folders)):
        try:
            st = os.stat(above)
        except OSError:
            continue
        if st.st_uid not in (me, 0) or (others_may_write(st) and not st.st_mode & stat.S_ISVTX):
            return Path(above), st
    return None


def check_above(root: Path) -> None:
    """Refuse (UnsafeStorage) a root (or a keyring named on its own) below a folder another
    user owns, or may write to without the sticky bit (`unsafe_folder_above`): they could
    swap the root for theirs."""
    found = unsafe_folder_above(root)
    if found is None:
        return
    above, st = found
    if st.st_uid not in (os.geteuid(), 0):
        raise UnsafeStorage(root, above, f"(a folder above it) is owned by uid {st.st_uid}"
                            ", who could put a folder of theirs in its place",
                            "put it in a folder of yours or root's")
    raise UnsafeStorage(root, above, "(a folder above it) is writable by other users "
                        f"without the sticky bit (mode {stat.S_IMODE(st.st_mode):o})",
                        f"run `chmod o-w,g-w {above}` (or `chmod +t` it)")


def make_storage_root(root: Path) -> Path:
    """``root`` checked (`check_storage_root`), made when missing (mode 0755 whatever the
    umask, and so are the folders above it this makes)."""
    root = Path(os.path.abspath(root))
    check_storage_root(root)
    for folder in reversed([p for p in (root, *root.parents) if not p.exists()]):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        os.chmod(folder, ROOT_MODE, follow_symlinks=False)
    check_path(root, root, directory=True)
    return root


def make_private_dir(root: Path, path: Path) -> Path:
    """``path``, a folder only its owner may use (the secrets or keys of storage root
    ``root``, or a folder named elsewhere): checked, made when missing (0700 whatever the
    umask; under ``root``, with the root and the folders between), and refused
    (UnsafeStorage) when it, or a folder between it and ``root``, is not safe."""
    root = Path(os.path.abspath(root))
    path = Path(os.path.abspath(path))
    if not path.is_relative_to(root):
        return make_private_folder(path)
    root = make_storage_root(root)
    for folder in (*(p for p in reversed(path.parents) if p.is_relative_to(root) and p != root),
                   path):
        _make_checked(root, folder)
    return path


def make_private_folder(path: Path) -> Path:
    """``path``, a folder named on its own (a keyring outside any storage root, e.g. under
    /tmp): made when missing (0700 whatever the umask) and checked; the folders above it
    are made as the umask says, and refused (`check_above`) when another user owns one or
    may write one without the sticky bit (a sticky /tmp is fine): they could rename the
    folder away and put theirs, with their signing key, in its place."""
    path = Path(os.path.abspath(path))
    check_above(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _make_checked(path, path)
    return path


def _make_checked(root: Path, folder: Path) -> None:
    """Make ``folder`` 0700 when missing; refuse it (`check_path`) when it is not safe."""
    if not check_path(root, folder, directory=True):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        else:
            os.chmod(folder, 0o700, follow_symlinks=False)
        check_path(root, folder, directory=True)
