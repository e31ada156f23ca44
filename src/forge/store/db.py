"""A store's sessions: `Database` holds the write and read engines (`db_engine`) and hands
out write transactions (queued on one lock per SQLite file), snapshot reads, shared reads
and inline reads."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from forge.config.db_url import normalize_url
from forge.store import db_engine
from forge.store.db_engine import INLINE_READ, WriteInInlineRead, make_db_engine
from forge.store.file_lock import FlockWaiter
from forge.store.read_session import ReadSession
from forge.store.sqlite_files import sqlite_file, write_lock_file
from forge.store.store_file import StoreFile

T = TypeVar("T")
# The read session shared by every `Database.read()` inside a `Database.reading()` block.
_SHARED_READ: ContextVar[tuple[int, Session] | None] = ContextVar("forge_shared_read",
                                                                  default=None)


class StoreReadOnly(RuntimeError):
    """The PostgreSQL store answers, but only reads (`Database.ping`)."""


_WRITE_LOCKS: dict[str, tuple[threading.Lock, FlockWaiter]] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(url: str) -> tuple[threading.Lock, FlockWaiter] | None:
    """One lock per SQLite file per process: writers queue here instead of busy-sleeping;
    and the thread that waits for the file's lock (across processes) when it is taken."""
    if make_url(url).get_backend_name() != "sqlite":
        return None
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(url, (threading.Lock(), FlockWaiter()))


class Database:
    """One engine and its session factory, shared by a service's request handlers."""

    def __init__(self, url: str) -> None:
        self.url = url = normalize_url(url)
        self.engine = make_db_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, future=True)
        locks = _write_lock(url)
        self._lock: threading.Lock | None = locks[0] if locks is not None else None
        self._waiter: FlockWaiter | None = locks[1] if locks is not None else None
        self._lock_path = write_lock_file(url) if self._lock is not None else None
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
        self.lock_timeout_s = db_engine.SQLITE_BUSY_TIMEOUT_MS / 1000
        # SQLite takes one writer at a time anyway; queueing writes on one thread avoids a
        # convoy of request threads contending for the lock (and the GIL) around it.
        self.writer = ThreadPoolExecutor(1 if self._lock else 8, thread_name_prefix="db-write")
        if self._lock is None:
            self._read_engine: Engine | None = None
        else:  # SQLite: reads on their own engine, as `ReadSession`s (`read`)
            self._read_engine = make_db_engine(url, for_writes=False)
            event.listen(self._read_engine, "connect", self._note_journal_mode)

    def _note_journal_mode(self, _dbapi_conn: Any, record: Any) -> None:
        """After `_sqlite_pragmas`: whether this store's reads got WAL."""
        wal = record.info.get("journal_mode") == "wal"
        self._wal = wal if self._wal is not False else False

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read-write transaction: committed when the block ends, rolled back on error."""
        if INLINE_READ.get():
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
        Ending it closes its connection, whose transaction is rolled back as the connection
        goes back to the pool. An ORM `rollback()` first (as before) added only the session's
        own bookkeeping, ~40 % of an empty read's CPU, paid by every request. On SQLite the
        session is a `ReadSession`: no ORM transaction unless the ORM is used.
        """
        shared = _SHARED_READ.get()
        if shared is not None and shared[0] == id(self):
            yield shared[1]
            return
        if self._read_engine is None:
            sess = self._sessions()
            try:
                yield sess
            finally:
                sess.close()
            return
        conn = self._read_engine.connect()
        try:
            conn.begin()  # the snapshot: SQLite's deferred BEGIN (`make_db_engine`)
            read = ReadSession(conn)
            try:
                yield read
            finally:
                read.close()
        finally:
            conn.close()

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
        token = INLINE_READ.set(True)
        try:
            yield
        finally:
            INLINE_READ.reset(token)

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
