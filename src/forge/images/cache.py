"""The machine-wide image cache: one content-addressed directory per built image.

Layout under the cache root (owner-only, 0700)::

    <key>/rootfs/       the image's root filesystem (shared read-only by every lab)
    <key>/image.json    what was built: name, key, size, build time (written last)
    .staging/<key>-*    builds in progress (never counted as built)
    .locks/<key>.lock   held while a key is built, so two processes never build it twice

An entry counts as built only once ``<key>`` exists, and it appears in one ``rename`` of
a finished staging directory, so a crash mid-build leaves only staging leftovers, which
the next build of that key (or ``prune``) removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forge.config.storage_root import others_may_write, unsafe_folder_above
from forge.errors import ForgeError

RECORD = "image.json"
ROOTFS = "rootfs"
STAGING = ".staging"
LOCKS = ".locks"
_KEY = re.compile(r"^[0-9a-f]{64}\Z")


@dataclass(frozen=True)
class CacheEntry:
    """One built image: its key, name, root filesystem, size on disk and build time."""

    key: str
    name: str
    rootfs: Path
    size_bytes: int
    built_at: float
    build_seconds: float


def disk_usage(path: Path) -> int:
    """Bytes the tree takes on disk (allocated blocks; links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (deepest first), from /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == path or point.startswith(path.rstrip("/") + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _overlay_lowers() -> list[str]:
    """The lower directories of every overlay mounted in this mount namespace."""
    lowers = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            _, _, tail = line.partition(" - ")
            fields = tail.split()
            if len(fields) >= 3 and fields[0] == "overlay":
                for opt in fields[2].split(","):
                    if opt.startswith("lowerdir="):
                        lowers += opt[len("lowerdir="):].split(":")
    return lowers


def remove_tree(path: Path) -> None:
    """Delete a build tree, refusing to descend into anything still mounted in it (a
    killed chroot could leave /dev or /proc there; removing through it would harm the
    machine)."""
    if not path.exists():
        return
    mounted = _mounts_under(os.path.realpath(path))
    if mounted:
        raise OSError(f"{path} still has mounts ({', '.join(mounted[:3])}); not removing")
    shutil.rmtree(path)


class UnsafeImageCache(ForgeError):
    """A cache root another local user made or may write: they could have planted or
    changed the image every lab runs on (and its grader's checks see). The message names
    the path, its owner and mode, and what to do."""

    def __init__(self, root: Path, why: str, fix: str | None = None) -> None:
        me = os.geteuid()
        fix = fix or (f"if it is yours, run `chown {me}:{os.getegid()} {root} && chmod 700 "
                      f"{root}`")
        super().__init__("image_cache_unsafe", 503,
                         f"refusing image cache {root}: {why}: that user could have planted "
                         f"or changed the image of every lab; {fix}, or set "
                         "FORGE_IMAGE_CACHE to a folder of your own")


def check_cache_root(root: Path) -> None:
    """Refuse (UnsafeImageCache) a cache root that is a link or not a folder, is owned by
    neither this user nor root, or that another user may write (its own group, or root's,
    is no other user); one not made yet passes (``ensure`` makes it owner-only). So is one
    below a folder another user owns or may write without the sticky bit
    (`unsafe_folder_above`): that user could rename the checked root away and put a folder
    or link of theirs in its place before the image in it is mounted or built into."""
    root = Path(os.path.abspath(root))
    found = unsafe_folder_above(root)
    if found is not None:
        above, above_st = found
        raise UnsafeImageCache(
            root, f"{above} (a folder above it, owner uid {above_st.st_uid}, mode "
                  f"{stat.S_IMODE(above_st.st_mode):o}) lets another user put a folder or "
                  "link of theirs in the cache's place",
            "keep the cache in folders only you or root may change (the default is "
            "/var/cache/forge/images)")
    try:
        st = os.lstat(root)
    except (FileNotFoundError, NotADirectoryError):
        return
    mode, me = stat.S_IMODE(st.st_mode), os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeImageCache(root, f"it is a symlink (owner uid {st.st_uid}); give the real "
                                     "path")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeImageCache(root, f"it is not a folder (owner uid {st.st_uid})")
    if st.st_uid not in (me, 0):
        raise UnsafeImageCache(root, f"it is owned by uid {st.st_uid} (mode {mode:o}), not "
                                     f"by uid {me}")
    if others_may_write(st):
        raise UnsafeImageCache(root, f"other users may write it (owner uid {st.st_uid}, "
                                     f"mode {mode:o})")


class ImageCache:
    """The cache at ``root`` (see the module docstring for its layout); every use checks
    the root first (`check_cache_root`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        """Create the root (owner-only) and its staging and lock directories."""
        check_cache_root(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        for sub in (STAGING, LOCKS):
            (self.root / sub).mkdir(mode=0o700, exist_ok=True)

    def entry_dir(self, key: str) -> Path:
        """Where the image of ``key`` lives once built."""
        if not _KEY.match(key):
            raise ValueError("an image key is 64 lower-case hex digits")
        return self.root / key

    def get(self, key: str) -> CacheEntry | None:
        """The built entry of ``key``, or None (never a staging leftover); UnsafeImageCache
        when another user could have planted it."""
        check_cache_root(self.root)
        path = self.entry_dir(key) / RECORD
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            return CacheEntry(key, str(record["name"]), self.entry_dir(key) / ROOTFS,
                              int(record["size_bytes"]), float(record["built_at"]),
                              float(record.get("build_seconds", 0.0)))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def entries(self) -> list[CacheEntry]:
        """Every built entry, by name then build time."""
        check_cache_root(self.root)
        if not self.root.is_dir():
            return []
        found = [self.get(p.name) for p in self.root.iterdir() if _KEY.match(p.name)]
        return sorted((e for e in found if e is not None), key=lambda e: (e.name, e.built_at))

    @contextlib.contextmanager
    def lock(self, key: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the build lock of ``key`` (yields False if ``wait`` is off and it is
        held elsewhere). The lock is an flock, released by the kernel if we die."""
        self.ensure()
        self.entry_dir(key)  # validates the key
        fd = os.open(self.root / LOCKS / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def new_staging(self, key: str) -> Path:
        """A fresh staging directory for ``key`` (call under its lock)."""
        self.ensure()
        for stale in (self.root / STAGING).glob(f"{key}-*"):
            remove_tree(stale)  # a build of this key that died; we hold its lock
        path = self.root / STAGING / f"{key}-{uuid.uuid4().hex[:8]}"
        path.mkdir(mode=0o700)
        return path

    def install(self, key: str, staging: Path, name: str, build_seconds: float) -> CacheEntry:
        """Record the finished tree in ``staging`` and make it the built entry of ``key``
        in one rename (call under the key's lock)."""
        size = disk_usage(staging / ROOTFS)
        record = {"name": name, "key": key, "size_bytes": size, "built_at": time.time(),
                  "build_seconds": round(build_seconds, 3), "format": 1}
        fd = os.open(staging / RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(staging, 0o500)  # nothing is added to a built entry
        os.rename(staging, self.entry_dir(key))
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        entry = self.get(key)
        if entry is None:
            raise OSError(f"image {name} was installed but its record cannot be read")
        return entry

    def in_use(self, key: str) -> bool:
        """Whether a running lab host is on this entry: the local runtime mounts each image
        host's root as an overlay whose lower layer is the entry's ``rootfs``. Both sides
        are compared as real paths (a cache reached through a symbolic link still
        matches)."""
        prefix = os.path.realpath(self.entry_dir(key)) + "/"
        return any(os.path.realpath(lower).startswith(prefix) for lower in _overlay_lowers())

    def remove(self, key: str) -> bool:
        """Delete a built entry unless a build of its key holds the lock or a running lab
        uses it (False then: deleting it would pull files from under the lab).

        It is first renamed into staging, so a removal cut short is never a built entry.
        """
        with self.lock(key, wait=False) as held:
            if not held or self.in_use(key):
                return False
            path = self.entry_dir(key)
            if not path.exists():
                return True
            doomed = self.root / STAGING / f"{key}-removed-{uuid.uuid4().hex[:8]}"
            os.chmod(path, 0o700)
            os.rename(path, doomed)
            remove_tree(doomed)
            return True

    def clean_staging(self) -> int:
        """Remove staging leftovers of builds that are no longer running; their count."""
        removed = 0
        staging = self.root / STAGING
        if not staging.is_dir():
            return 0
        for path in staging.iterdir():
            key = path.name.split("-", 1)[0]
            if not _KEY.match(key):
                continue
            with self.lock(key, wait=False) as held:
                if held:
                    remove_tree(path)
                    removed += 1
        return removed
