"""A refused start leaves the storage root as it found it, and never takes another's work.

`forge up` and `forge demo` write dev secrets, a signing key, the database, logs and lock
files before a later check (a port taken, an image that cannot be built, a store that
refuses) stops them. `NewRoot` records what the root held before anything was written
and, after each of the start's own writes, what those writes left (`settle`); a refused
start then removes only what it added (the root itself when it made it), only while it
holds the root's lock, and only when nothing else wrote there meanwhile: a `forge apikey
create` run during a minutes-long image build put its rows in the database this start
made, and removing the root would lose them. Such a root is kept, and said so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.console import Console

from forge.config.environ_source import storage_root_path
from forge.config.storage_root import UnsafeStorage
from forge.stack.lock import LOCK_NAME, StorageLock, StorageLocked

# What a path under the root is: (inode, size, mtime) for a file; a folder or a link by kind.
Mark = tuple[object, ...]


class NewRoot:
    """The storage root of one start as it was, and what the start itself wrote to it."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.before: set[str] | None = None  # its names before the start; None: no root
        self.lock: StorageLock | None = None  # held from before the first write (forge up)
        self.later: list[str] = []  # lines about what was generated, said once kept
        self._settled: dict[str, Mark] | None = None
        self._writing = False  # inside a step of the start's own that writes to the root
        self._foreign: set[str] = set()  # paths another process wrote during the start

    def note(self, storage_root: str | None) -> Path:
        """Record the root `STORAGE_ROOT` names and what it holds now, before anything is
        written (a root that is no directory or unreadable is left to the checks after)."""
        root = storage_root_path(storage_root)
        self.root = root
        try:
            self.before = set(os.listdir(root))
        except FileNotFoundError:
            self.before = None
        except OSError:
            self.root = None
        return root

    def writing(self) -> None:
        """Before one of the start's own writes: what changed since the last `settle` was
        written by another process (its rows, keys or files are not the start's to remove)."""
        if self._settled is not None:
            self._foreign |= _changed(self._settled, self._marks())
        self._writing = True

    def settle(self) -> None:
        """After the start's own writes: the root as they left it."""
        self._settled = self._marks()
        self._writing = False

    def _marks(self) -> dict[str, Mark]:
        """Every path the start added to the root (its lock file aside), with its mark."""
        assert self.root is not None
        try:
            names = set(os.listdir(self.root)) - (self.before or set()) - {LOCK_NAME}
        except OSError:
            return {}
        marks: dict[str, Mark] = {}
        for name in names:
            marks.update(_walk(self.root, name))
        return marks

    def foreign(self) -> list[str]:
        """The paths another process wrote to while this start ran, as now known. Inside a
        step of its own, new paths are the step's; outside, any change is another's."""
        if self.root is None or self._settled is None:
            return sorted(self._foreign)
        now = self._marks()
        if self._writing:
            now = {path: mark for path, mark in now.items() if path in self._settled}
        return sorted(self._foreign | _changed(self._settled, now))

    def remove(self, console: Console, who: str = "forge up") -> None:
        """After a refused start: remove what it created in the storage root (dev secrets,
        signing key, database, logs, locks; the root itself when it made it), and say so.
        Only while holding the root (a concurrent `forge up` keeps what it found), and only
        when no other process wrote there meanwhile (then all is kept, and said so);
        nothing that was there before is touched."""
        root = self.root
        if root is None:
            return
        lock = self.lock if self.lock is not None and self.lock.held else None
        if lock is None:
            try:
                lock = StorageLock.acquire(root)
            except (StorageLocked, UnsafeStorage, OSError):
                return
        try:
            others = self.foreign()
            if others:
                for line in self.later:  # kept with the root: said after all
                    console.print(line, markup=False)
                console.print(f"{who}: not started; kept the storage root {root} as it is: "
                              f"another command wrote to what this start had created "
                              f"({', '.join(others[:5])}) while it ran", markup=False,
                              soft_wrap=True)
                return
            new = sorted(set(os.listdir(root)) - (self.before or set()))
            for name in new:
                path = root / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            if self.before is None:
                root.rmdir()
        except OSError as exc:
            console.print(f"{who}: could not remove what it created in {root}: "
                          f"{exc.strerror}", markup=False, soft_wrap=True)
        else:
            what = "the storage root it had created" if self.before is None else \
                f"what it had created in the storage root ({', '.join(new) or 'nothing'})"
            console.print(f"{who}: not started; removed {what}: {root}", markup=False,
                          soft_wrap=True)
        finally:
            lock.release()


def _walk(root: Path, name: str) -> dict[str, Mark]:
    """``name`` under ``root`` and everything in it (links not followed), with marks."""
    top = root / name
    paths = [top]
    if top.is_dir() and not top.is_symlink():
        for folder, dirs, files in os.walk(top):  # links to folders are not entered
            paths += [Path(folder, entry) for entry in dirs + files]
    marks: dict[str, Mark] = {}
    for path in paths:
        try:
            st = path.lstat()
            rel = str(path.relative_to(root))
            if path.is_symlink():
                marks[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                marks[rel] = ("dir",)
            else:
                marks[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:  # gone meanwhile: absent from the marks, a change if it was there
            continue
    return marks


def _changed(was: dict[str, Mark], now: dict[str, Mark]) -> set[str]:
    """Paths added, removed or changed between two sets of marks."""
    return {path for path in was.keys() | now.keys() if was.get(path) != now.get(path)}
