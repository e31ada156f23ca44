"""Which storage root a `forge` command uses, and a warning when a command creates a new one.

`forge --storage PATH CMD …` sets STORAGE_ROOT for that one command (the option beats the
variable; without either it is ./storage under the current directory, as before). A key or
grant made under the wrong root "does not work" for services using another, so a command
that brings a storage root into being says so on stderr, once per root and process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    from forge.config.storage_root import UnsafeStorage
    from forge.stack.lock import StorageLock, StorageLocked

STORAGE_ENV = "STORAGE_ROOT"
_announced: set[Path] = set()


def use_storage_root(path: Path) -> Path:
    """Make `path` (absolute) this process's STORAGE_ROOT; a path naming a file is refused."""
    root = path.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise typer.BadParameter(f"{root} exists and is not a directory", param_hint="--storage")
    os.environ[STORAGE_ENV] = str(root)
    return root


def current_storage_root() -> Path:
    """The storage root commands of this process use (STORAGE_ROOT, else ./storage)."""
    from forge.config.environ_source import storage_root_path  # lazily: keeps `forge` fast

    return storage_root_path(os.environ.get(STORAGE_ENV))


def refuse_unsafe(exc: UnsafeStorage) -> NoReturn:
    """Exit 2 with the one line saying which part of the storage root cannot be trusted
    (another user's, writable by others, a link) and what to do
    (`forge.config.storage_root`)."""
    typer.echo(f"forge: {exc}", err=True)
    raise typer.Exit(2) from None


def hold_root_or_exit(root: Path, holder: str, action: str,
                      why: Callable[[StorageLocked], str]) -> StorageLock:
    """The storage root's lock taken for ``holder`` (a `forge up` started meanwhile
    refuses), else exit 1 saying ``action refused:``, who holds it and ``why(holder)`` it
    must stop first, or that the lock file cannot be opened (2: an unsafe root)."""
    from forge.config.storage_root import UnsafeStorage
    from forge.stack.lock import LOCK_NAME, StorageLock, StorageLocked

    try:
        return StorageLock.acquire(root, holder)
    except StorageLocked as running:
        typer.echo(f"{action} refused: {running}; stop it first ({why(running)})", err=True)
        raise typer.Exit(1) from None
    except UnsafeStorage as exc:
        refuse_unsafe(exc)
    except OSError as exc:
        typer.echo(f"{action} refused: cannot lock {root / LOCK_NAME} to tell whether forge "
                   f"up runs: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None


def announce_new_root(root: Path) -> None:
    """Warn on stderr (once per root) that `root` is a storage root made by this command."""
    root = root.absolute()
    if root in _announced:
        return
    _announced.add(root)
    typer.echo(f"warning: creating a new storage root at {root} (STORAGE_ROOT/--storage); "
               "keys and grants made here are seen only by services using this root",
               err=True)


@contextmanager
def watch_new_root(root: Path | None = None) -> Iterator[None]:
    """Announce `root` (default: the current one) if it does not exist before the block
    and does after it, i.e. the block created it; an existing root is never announced."""
    root = (root or current_storage_root()).absolute()
    existed = root.exists()
    try:
        yield
    finally:
        if not existed and root.exists():
            announce_new_root(root)
