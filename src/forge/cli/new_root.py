"""A refused start leaves the storage root as it found it.

`forge up` and `forge demo` write dev secrets, a signing key, the database, logs and lock
files before a later check (a port taken, an image that cannot be built, a store that
refuses) stops them. `note_root` records what the root held before anything was written;
`remove_new_root` then removes only what this start added (the root itself when it made
it), and only while nobody else holds the root.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rich.console import Console

from forge.config.environ_source import storage_root_path
from forge.config.storage_root import UnsafeStorage
from forge.stack.lock import StorageLock, StorageLocked

# The storage root as it was before a start: the names in it, None when it did not exist.
RootBefore = dict[Path, set[str] | None]


def note_root(made: RootBefore, storage_root: str | None) -> None:
    """Record the root `STORAGE_ROOT` names and what it holds now, before anything is
    written (a root that is no directory or unreadable is left to the checks after)."""
    root = storage_root_path(storage_root)
    try:
        made[root] = set(os.listdir(root))
    except FileNotFoundError:
        made[root] = None
    except OSError:
        pass


def remove_new_root(made: RootBefore, console: Console, who: str = "forge up") -> None:
    """After a refused start: remove what it created in the storage root (dev secrets,
    signing key, database, logs, locks; the root itself when it made it), so a refused
    start leaves nothing behind, and say so. Only while nobody else holds the root (a
    concurrent `forge up` keeps what it found); nothing that was there before is
    touched."""
    for root, before in made.items():
        try:
            lock = StorageLock.acquire(root)
        except (StorageLocked, UnsafeStorage, OSError):
            continue
        try:
            new = sorted(set(os.listdir(root)) - (before or set()))
            for name in new:
                path = root / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            if before is None:
                root.rmdir()
        except OSError as exc:
            console.print(f"{who}: could not remove what it created in {root}: "
                          f"{exc.strerror}", markup=False, soft_wrap=True)
        else:
            what = "the storage root it had created" if before is None else \
                f"what it had created in the storage root ({', '.join(new) or 'nothing'})"
            console.print(f"{who}: not started; removed {what}: {root}", markup=False,
                          soft_wrap=True)
        finally:
            lock.release()
