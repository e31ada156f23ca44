"""The SQLAlchemy engine of a store URL and its connection settings: SQLite gets WAL, a
busy timeout and BEGIN IMMEDIATE for writes (so processes can share the file); PostgreSQL
sessions answer in UTC and wait for a lock at most PG_LOCK_TIMEOUT_MS. The sessions over
it are `forge.store.db`."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from forge.config.db_url import normalize_url
from forge.config.storage_root import make_storage_root
from forge.store.sqlite_files import keep_private, sqlite_file

SQLITE_BUSY_TIMEOUT_MS = 15_000
# A commit checkpoints the WAL only past this many pages (~40 MiB), a backstop: services
# checkpoint in the background (`forge.store.wal_checkpoints`), off the request path.
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
# How long a PostgreSQL statement waits for a lock held by another session (`_utc_session`).
PG_LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS
# Pooled SQLite connections kept open: at least as many as the threads that read at once
# (starlette's thread pool runs 40), so a busy service never closes and reopens one (each
# open runs the pragmas again; measured 5% of the spawn API's CPU before).
SQLITE_POOL_SIZE = 40
# Set while a read runs on an event loop's own thread (`inline_read`): a write there
# (which may wait up to the busy timeout for the lock) would stall every request.
INLINE_READ: ContextVar[bool] = ContextVar("forge_inline_read", default=False)


class WriteInInlineRead(RuntimeError):
    """A write transaction was opened inside `Database.inline_read` (a programming error)."""


log = logging.getLogger("forge.store")
# A SQLite file whose connection refused WAL (a VFS or filesystem without shared memory):
# its reads wait for a write in progress. Logged once per file.
_NOT_WAL_LOGGED: set[str] = set()
_NOT_WAL_GUARD = threading.Lock()


WAL_SWITCH_TRIES = 100  # x 50 ms: 5 s, the busy timeout


def _journal_mode_wal(cur: Any) -> Any:
    """``PRAGMA journal_mode=WAL``, tried again while another process switches the same new
    file: two connections switching at once deadlock (each holds a shared lock and wants
    the exclusive one), so SQLite answers one "database is locked" at once, without its
    busy handler. Two workers of `forge serve spawn --workers 2` starting on a new store
    did that, and the whole service stopped."""
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            return cur.execute("PRAGMA journal_mode=WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(0.05)
    return None


def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
    cur = dbapi_conn.cursor()
    found = _journal_mode_wal(cur)
    mode = str(found[0] if found else "?").lower()
    record.info["journal_mode"] = mode  # read by `Database` (its read engine's listener)
    if mode not in ("wal", "memory"):
        _refused_wal(cur, mode)
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _refused_wal(cur: Any, mode: str) -> None:
    """Note (and say once, in the log) a SQLite file that stays in journal mode ``mode``."""
    files = [row[2] for row in cur.execute("PRAGMA database_list").fetchall()
             if row[1] == "main" and row[2]]
    if not files:
        return  # in memory: no other process, nothing to wait for
    path = os.path.realpath(files[0])
    with _NOT_WAL_GUARD:
        if path in _NOT_WAL_LOGGED:
            return
        _NOT_WAL_LOGGED.add(path)
    log.warning("SQLite store %s refused WAL mode (journal mode %s): a read waits for a "
                "write in progress there; put the store on a local filesystem", path, mode)


def _utc_session(dbapi_conn: Any, _record: Any) -> None:
    """A PostgreSQL session answers its timestamps in UTC: psycopg hands them back in the
    session's zone (the server's TimeZone, or PGTZ), and code that writes a time as
    `...Z` (events, tokens) would otherwise state a Berlin or Kolkata time as UTC.

    It also waits for a lock at most PG_LOCK_TIMEOUT_MS, as a SQLite writer waits at most
    its busy timeout: a table or row lock held by another session (a maintenance script, an
    idle transaction) made every request waiting for it hang with no answer, and each held
    a writer thread; now it fails with lock_not_available, a busy store (503, Retry-After).
    """
    with dbapi_conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
        cur.execute(f"SET lock_timeout = {int(PG_LOCK_TIMEOUT_MS)}")
    dbapi_conn.commit()


def _driver_begin(statement: str) -> Callable[[Connection], None]:
    """A SQLite "begin" listener sending ``statement`` to the driver's connection itself.

    Through `exec_driver_sql`, Core built an execution context for the BEGIN of every
    transaction (measured back to back, old and new: a write transaction 226 -> 196 µs and
    251 -> 228 µs of CPU, an API-key check 263 -> 259 µs and 370 -> 337 µs). Errors are
    wrapped as Core wraps them (`DBAPIError.instance`: "database is locked" is an
    OperationalError), so busy handling (`forge.store.busy`) sees the errors it always saw."""

    def begin(conn: Connection) -> None:
        try:
            conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
        except sqlite3.Error as exc:
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error,
                                      dialect=conn.dialect) from exc

    return begin


# Take the write lock at BEGIN so read-then-write transactions cannot race each other.
_take_write_lock = _driver_begin("BEGIN IMMEDIATE")


def _begin_immediate(conn: Connection) -> None:
    """BEGIN IMMEDIATE, refused inside an inline read (`Database.inline_read`): it may wait
    for the write lock, on the event loop (also by way of the engine, not `session()`)."""
    if INLINE_READ.get():
        raise WriteInInlineRead("a write transaction inside an inline read")
    _take_write_lock(conn)


def make_db_engine(url: str, *, for_writes: bool = True) -> Engine:
    """Create an engine for `url`; for SQLite, create the parent directory and set pragmas.

    A SQLite write engine starts every transaction with BEGIN IMMEDIATE; a read engine keeps
    SQLite's deferred BEGIN so reads never wait for the write lock (WAL gives them a snapshot).
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True, future=True)
        event.listen(engine, "connect", _utc_session)
        return engine
    database = sqlite_file(url)
    if database is not None:
        if not database.parent.exists():  # the storage root, usually: never open to all
            make_storage_root(database.parent)
        keep_private(database)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        future=True, pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_SIZE,
    )
    event.listen(engine, "connect", _sqlite_pragmas)

    @event.listens_for(engine, "connect")
    def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN

    if for_writes:
        event.listen(engine, "begin", _begin_immediate)
    else:
        event.listen(engine, "begin", _driver_begin("BEGIN"))
    return engine
