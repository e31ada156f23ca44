"""Engine and session factory; SQLite gets WAL and a busy timeout so processes can share it."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from forge.config.db_url import normalize_url
from forge.config.storage_root import check_path, make_storage_root
from forge.store.file_lock import FlockWaiter
from forge.store.store_file import StoreFile

SQLITE_BUSY_TIMEOUT_MS = 15_000
# How long a PostgreSQL statement waits for a lock held by another session (`_utc_session`).
PG_LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS
# Pooled SQLite connections kept open: at least as many as the threads that read at once
# (starlette's thread pool runs 40), so a busy service never closes and reopens one (each
# open runs the pragmas again; measured 5% of the spawn API's CPU before).
SQLITE_POOL_SIZE = 40
T = TypeVar("T")
# The read session shared by every `Database.read()` inside a `Database.reading()` block.
_SHARED_READ: ContextVar[tuple[int, Session] | None] = ContextVar("forge_shared_read",
                                                                  default=None)
# Set while a read runs on an event loop's own thread (`inline_read`): a write there
# (which may wait up to the busy timeout for the lock) would stall every request.
_INLINE_READ: ContextVar[bool] = ContextVar("forge_inline_read", default=False)


class WriteInInlineRead(RuntimeError):
    """A write transaction was opened inside `Database.inline_read` (a programming error)."""


class StoreReadOnly(RuntimeError):
    """The PostgreSQL store answers, but only reads (`Database.ping`)."""


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
    if _INLINE_READ.get():
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


_WRITE_LOCKS: dict[str, tuple[threading.Lock, FlockWaiter]] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(url: str) -> tuple[threading.Lock, FlockWaiter] | None:
    """One lock per SQLite file per process: writers queue here instead of busy-sleeping;
    and the thread that waits for the file's lock (across processes) when it is taken."""
    if make_url(url).get_backend_name() != "sqlite":
        return None
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(url, (threading.Lock(), FlockWaiter()))


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


def _lock_file(url: str) -> Path | None:
    """`<database>-writelock` beside a SQLite file (None for an in-memory database)."""
    database = sqlite_file(url)
    if database is None:
        return None
    return database.with_name(database.name + "-writelock")


class Database:
    """One engine and its session factory, shared by a service's request handlers."""

    def __init__(self, url: str) -> None:
        self.url = url = normalize_url(url)
        self.engine = make_db_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)
        locks = _write_lock(url)
        self._lock: threading.Lock | None = locks[0] if locks is not None else None
        self._waiter: FlockWaiter | None = locks[1] if locks is not None else None
        self._lock_path = _lock_file(url) if self._lock is not None else None
        # Inline reads need WAL: unknown (None) until a read connection says (one that
        # refused it makes it False for good).
        self._wal: bool | None = None
        # The SQLite file, by (device, inode) once seen (`store_file`).
        path = sqlite_file(url) if self._lock is not None else None
        self._file = StoreFile(path) if path is not None else None
        if self._file is not None:
            # SQLite opens a file it may not write read-only, for the connection's life:
            # noted, and such a connection is replaced once the file is writable again.
            event.listen(self.engine, "connect", self._file.note_read_only)
            event.listen(self.engine, "checkout", self._file.replace_read_only)
        # how long a write waits for the lock file before "database is locked", as SQLite's
        # own busy timeout would
        self.lock_timeout_s = SQLITE_BUSY_TIMEOUT_MS / 1000
        # SQLite takes one writer at a time anyway; queueing writes on one thread avoids a
        # convoy of request threads contending for the lock (and the GIL) around it.
        self.writer = ThreadPoolExecutor(1 if self._lock else 8, thread_name_prefix="db-write")
        if self._lock is None:
            self._reads = self._sessions
            self._read_engine: Engine | None = None
        else:
            self._read_engine = make_db_engine(url, for_writes=False)
            self._reads = sessionmaker(self._read_engine, expire_on_commit=False, future=True)
            event.listen(self._read_engine, "connect", self._note_journal_mode)

    def _note_journal_mode(self, _dbapi_conn: Any, record: Any) -> None:
        """After `_sqlite_pragmas`: whether this store's reads got WAL."""
        wal = record.info.get("journal_mode") == "wal"
        self._wal = wal if self._wal is not False else False

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-write transaction: committed when the block ends, rolled back on error."""
        if _INLINE_READ.get():
            raise WriteInInlineRead("a write transaction inside an inline read")
        if self._lock is None:
            with self._sessions.begin() as sess:
                yield sess
            return
        with self._lock, self._file_lock(), self._sessions.begin() as sess:
            yield sess

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """SQLite: writers of every process queue on one lock file (flock) before BEGIN
        IMMEDIATE. SQLite alone makes a second process poll for its write lock with growing
        sleeps (1, 2, 5 … 100 ms), which put spawn workers' p99 in the hundreds of
        milliseconds; the kernel hands a released flock to the next waiter at once (waited for
        by `FlockWaiter`, at most `lock_timeout_s`). Processes that do not take it (none in
        Forge) still get SQLite's own locking."""
        if self._lock_path is None:
            yield
            return
        assert self._waiter is not None
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:  # opened per transaction (microseconds): no descriptor outlives its use
            self._waiter.acquire(fd, self.lock_timeout_s)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only snapshot that never waits for writers (rolled back at the end).

        Inside a `reading()` block of this database, the block's one session (and snapshot).
        Closing the session ends it: its connection's transaction is rolled back as the
        connection goes back to the pool. An ORM `rollback()` first (as before) added only
        the session's own bookkeeping, ~40 % of an empty read's CPU, paid by every request.
        """
        shared = _SHARED_READ.get()
        if shared is not None and shared[0] == id(self):
            yield shared[1]
            return
        sess = self._reads()
        try:
            yield sess
        finally:
            sess.close()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """One read session for every `read()` in the block (same thread or context): a
        request that reads several things pays for one session, connection and snapshot."""
        with self.read() as sess:
            token = _SHARED_READ.set((id(self), sess))
            try:
                yield sess
            finally:
                _SHARED_READ.reset(token)

    def ping(self) -> None:
        """Raise if the database cannot answer a trivial query (used by /readyz). On SQLite
        through the read engine: the write engine's BEGIN IMMEDIATE would wait for a long
        write (up to the busy timeout) and call a busy store down. On PostgreSQL also
        StoreReadOnly when its transactions are read-only (a standby, or a database set
        read-only): it answers reads, but every write fails."""
        with (self._read_engine or self.engine).connect() as conn:
            if self._lock is not None:
                conn.exec_driver_sql("SELECT 1")  # no statement to build or compile per probe
                if self._file is not None:
                    self._file.check()
                return
            read_only = conn.exec_driver_sql("SHOW transaction_read_only").scalar()
        if read_only == "on":
            raise StoreReadOnly("the state store is read-only (PostgreSQL's "
                                "transaction_read_only is on: a standby, or a database set "
                                "read-only); every write fails until it accepts writes")

    @property
    def reads_inline(self) -> bool:
        """Whether a read may run on an event loop's own thread (see
        `forge.services.common.store_reads`): a SQLite file in WAL mode, whose reads take a
        snapshot without waiting for any writer; not one whose read connection refused WAL
        (a VFS or filesystem without shared memory: a read there waits for a write). The
        first call opens a read connection if none was yet, to learn the journal mode."""
        if self._lock_path is None or self._read_engine is None:
            return False
        if self._wal is None:
            with self._read_engine.connect():  # its connect hook notes the journal mode
                pass
        return self._wal is True

    @contextmanager
    def inline_read(self) -> Iterator[None]:
        """Mark a block that reads on an event loop's own thread (`reads_inline`): a write
        there may wait for the lock, stalling every request of the loop, so `session()`
        refuses inside it (WriteInInlineRead)."""
        token = _INLINE_READ.set(True)
        try:
            yield
        finally:
            _INLINE_READ.reset(token)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking write transaction on the writer thread, from async code."""
        return await asyncio.get_running_loop().run_in_executor(
            self.writer, functools.partial(fn, *args)
        )

    def dispose(self) -> None:
        """Close pooled connections."""
        self.writer.shutdown(wait=False)
        self.engine.dispose()
        if self._read_engine is not None:
            self._read_engine.dispose()
        if self._waiter is not None:
            self._waiter.close()
