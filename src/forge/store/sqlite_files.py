"""The file a SQLite store URL names, its side files and write-lock file, kept private to
their owner (the store holds every lab's answers, tokens and access links)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import make_url

from forge.config.storage_root import check_path

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def keep_private(database: Path) -> None:
    """The SQLite file, made if missing, and its side files readable by their owner only
    (0600). The store holds every lab's values (its answers), tokens and the spawn
    answers with their access links: under the default umask SQLite makes them 0644, open
    to any local user of the node. SQLite gives the side files it makes the main file's
    mode; ones an earlier release left open are closed here too. One that is a link, not
    this user's (or root's) or writable by others is refused (UnsafeStorage): another user
    who made it reads and changes everything written (`forge.config.storage_root`)."""
    folder = database.parent
    for path in (database, *(Path(f"{database}{side}") for side in SQLITE_SIDE_FILES)):
        check_path(folder, path, directory=False)
    try:
        os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600))
    except OSError:
        return  # not ours to make (read-only, a directory...): SQLite says why on open
    for path in (database, *(Path(f"{database}{side}") for side in SQLITE_SIDE_FILES)):
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def store_sqlite_file(url: str) -> Path | None:
    """The SQLite file a store URL of any backend names: None for PostgreSQL (whose
    database name `sqlite_file` would take for a path) or an in-memory store."""
    if make_url(url).get_backend_name() != "sqlite":
        return None
    return sqlite_file(url)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, None in memory; a `file:` URI (`?uri=true`) by its
    path, not as a relative directory named `file:`."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:":
        return None
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") \
            and database.startswith("file:"):
        uri = urlsplit(database)
        if "mode=memory" in uri.query or not uri.path or uri.path == ":memory:":
            return None
        return Path(unquote(uri.path))
    return Path(database)


def write_lock_file(url: str) -> Path | None:
    """`<database>-writelock` beside a SQLite file (None for an in-memory database)."""
    database = sqlite_file(url)
    if database is None:
        return None
    return database.with_name(database.name + "-writelock")
