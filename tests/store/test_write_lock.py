"""A SQLite writer waits for the cross-process lock file at most the busy timeout.

Before, it waited with a blocking flock and no timeout: a process stopped (SIGSTOP, a hung
debugger) while holding the lock blocked every writer of every process for good, with no
error anywhere. Now a writer gets SQLite's own "database is locked" after the timeout, and
writes again as soon as the holder lets go.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from forge.store import Database, file_lock, upgrade


def _store(tmp_path: Path) -> Database:
    """A migrated SQLite store in `tmp_path` (its lock file beside it)."""
    url = f"sqlite:///{tmp_path / 'forge.db'}"
    upgrade(url)
    return Database(url)


def _lock_soon(fd: int, failure: str) -> None:
    """Take and drop an exclusive flock on `fd`, retrying for at most 5 s (bounded: a lock
    let go is free within moments); AssertionError(`failure`) if it stays taken."""
    for _ in range(500):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            threading.Event().wait(0.01)
    else:
        raise AssertionError(failure)
    fcntl.flock(fd, fcntl.LOCK_UN)


def _write(db: Database) -> int:
    with db.session() as sess:
        return int(sess.execute(text("SELECT 1")).scalar_one())


@pytest.mark.sqlite_only  # the lock file exists for SQLite only
def test_writer_gives_up_on_a_held_lock_file_and_resumes_after(tmp_path: Path) -> None:
    db = _store(tmp_path)
    db.lock_timeout_s = 0.05
    holder = os.open(tmp_path / "forge.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process's writer, stopped mid-write
        with ThreadPoolExecutor(1) as pool:
            attempt = pool.submit(_write, db)
            try:
                with pytest.raises(OperationalError, match="database is locked"):
                    attempt.result(timeout=20)  # the old code blocks here for good
            finally:
                fcntl.flock(holder, fcntl.LOCK_UN)
        db.lock_timeout_s = 15.0  # the abandoned wait is granted and let go first
        assert _write(db) == 1
    finally:
        os.close(holder)
        db.dispose()


def _switches() -> int:
    """Voluntary context switches of the calling thread: how often it went to sleep."""
    for line in Path("/proc/thread-self/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches in /proc/thread-self/status")


def _write_counting_wakeups(db: Database) -> tuple[int, int]:
    before = _switches()
    value = _write(db)
    return value, _switches() - before


@pytest.mark.sqlite_only
def test_a_waiting_writer_sleeps_until_the_lock_is_free(tmp_path: Path) -> None:
    """Waiting for another process's writer does not poll: the writer thread sleeps until
    the lock is handed over (polling every millisecond woke it ~1,000 times a second, each
    time taking the GIL from the service's event loop), and writes as soon as it is."""
    db = _store(tmp_path)
    holder = os.open(tmp_path / "forge.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with ThreadPoolExecutor(1) as pool:
            attempt = pool.submit(_write_counting_wakeups, db)
            waited = threading.Event()
            waited.wait(0.5)  # the writer waits this long for the holder
            assert not attempt.done()
            fcntl.flock(holder, fcntl.LOCK_UN)
            value, wakeups = attempt.result(timeout=20)
        assert value == 1
        assert wakeups < 20, f"the waiting writer woke {wakeups} times in half a second"
    finally:
        os.close(holder)
        db.dispose()


@pytest.mark.sqlite_only
def test_a_writer_that_gave_up_leaves_no_lock_behind(tmp_path: Path) -> None:
    """The lock granted late to a writer that had already given up is let go at once: other
    processes (a fresh descriptor here) can take it as soon as the old holder releases."""
    db = _store(tmp_path)
    db.lock_timeout_s = 0.05
    lock_path = tmp_path / "forge.db-writelock"
    holder = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    other = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        for _ in range(3):  # three writers give up while it is held
            with pytest.raises(OperationalError, match="database is locked"):
                _write(db)
        fcntl.flock(holder, fcntl.LOCK_UN)
        _lock_soon(other, "a writer that gave up still holds the lock file")
        db.lock_timeout_s = 15.0
        assert _write(db) == 1
    finally:
        os.close(holder)
        os.close(other)
        db.dispose()


def _write_in_child(url: str, ready: Any, result: Any) -> None:
    db = Database(url)
    try:
        ready.set()
        result.put(_write(db))
    except Exception as exc:  # reported to the parent, which fails the test
        result.put(repr(exc))


@pytest.mark.sqlite_only
def test_a_forked_child_waits_for_the_lock_on_a_thread_of_its_own(tmp_path: Path) -> None:
    """The waiting thread is per process: a child forked after its parent waited for the
    lock (so the parent has that thread and the child does not) still gets the lock when it
    is free, not "database is locked" after the timeout."""
    db = _store(tmp_path)
    holder = os.open(tmp_path / "forge.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    ctx = multiprocessing.get_context("fork")
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with ThreadPoolExecutor(1) as pool:  # the parent's writer waits: its thread starts
            parent = pool.submit(_write, db)
            threading.Event().wait(0.2)
            fcntl.flock(holder, fcntl.LOCK_UN)
            assert parent.result(timeout=20) == 1
        fcntl.flock(holder, fcntl.LOCK_EX)
        ready, result = ctx.Event(), ctx.Queue()
        child = ctx.Process(target=_write_in_child, args=(db.url, ready, result))
        child.start()
        try:
            assert ready.wait(20)
            threading.Event().wait(0.3)  # the child is waiting for the held lock
            fcntl.flock(holder, fcntl.LOCK_UN)
            assert result.get(timeout=20) == 1
        finally:
            child.join(20)
    finally:
        os.close(holder)
        db.dispose()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.sqlite_only
def test_writers_giving_up_on_a_stopped_holder_keep_no_descriptors(tmp_path: Path) -> None:
    """A holder stopped for hours makes every write give up after the timeout; the waits
    they abandon must not each keep a descriptor until it resumes (the process would run
    out of them: reads and accepted connections would fail too)."""
    db = _store(tmp_path)
    db.lock_timeout_s = 0.01
    holder = os.open(tmp_path / "forge.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(OperationalError, match="database is locked"):
            _write(db)  # its wait is the one blocked in flock: one descriptor, held
        before = _open_fds()
        for _ in range(40):
            with pytest.raises(OperationalError, match="database is locked"):
                _write(db)
        assert _open_fds() <= before + 1
        fcntl.flock(holder, fcntl.LOCK_UN)
        db.lock_timeout_s = 15.0
        assert _write(db) == 1
    finally:
        os.close(holder)
        db.dispose()


def _hold_a_while(seconds: float) -> None:
    threading.Event().wait(seconds)


@pytest.mark.sqlite_only
def test_a_child_forked_during_a_wait_does_not_keep_its_late_grant(tmp_path: Path) -> None:
    """A child forked while a given-up wait is still pending gets a copy of its descriptor;
    the copy is closed in the child, so the late grant does not stay held for the child's
    whole life (every writer of every process would get "database is locked")."""
    db = _store(tmp_path)
    db.lock_timeout_s = 0.05
    lock_path = tmp_path / "forge.db-writelock"
    holder = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    other = os.open(lock_path, os.O_RDWR)
    child = None
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(OperationalError, match="database is locked"):
            _write(db)  # its wait stays pending in flock
        child = multiprocessing.get_context("fork").Process(target=_hold_a_while, args=(30,))
        child.start()
        fcntl.flock(holder, fcntl.LOCK_UN)  # the pending wait is granted, then let go
        db.lock_timeout_s = 5.0
        assert _write(db) == 1  # its wait queues behind the abandoned one's grant
        _lock_soon(other, "the forked child holds the write lock")  # it lives 30 s
    finally:
        if child is not None:
            child.kill()
            child.join(10)
        os.close(holder)
        os.close(other)
        db.dispose()


@pytest.mark.sqlite_only
def test_an_error_in_one_wait_fails_that_writer_only(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait that fails unexpectedly fails its own writer with an error (never a write
    believed to hold the lock), and the waiting thread goes on serving the next ones."""
    db = _store(tmp_path)
    real_run = file_lock._Wait.run
    calls: list[int] = []

    def run_once_broken(wait: file_lock._Wait) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broken wait")
        real_run(wait)

    monkeypatch.setattr(file_lock._Wait, "run", run_once_broken)
    holder = os.open(tmp_path / "forge.db-writelock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(OSError, match="waiting for the write lock failed"):
            _write(db)
        with ThreadPoolExecutor(1) as pool:
            attempt = pool.submit(_write, db)
            threading.Event().wait(0.2)
            fcntl.flock(holder, fcntl.LOCK_UN)
            assert attempt.result(timeout=20) == 1
        assert len(calls) == 2
    finally:
        os.close(holder)
        db.dispose()


def test_sqlite_refusing_begin_is_a_core_error_the_busy_check_knows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The BEGIN of a transaction goes to the driver itself; when SQLite refuses it (a
    process that skips the lock file holds the write lock), the writer still gets Core's
    OperationalError "database is locked", which `store_busy` takes for a busy store, and
    a read never waits for that lock."""
    import sqlite3

    from forge.store import db_engine
    from forge.store.busy import store_busy

    monkeypatch.setattr(db_engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    url = f"sqlite:///{tmp_path}/forge.db"
    upgrade(url)
    db = Database(url)
    other = sqlite3.connect(tmp_path / "forge.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with (pytest.raises(OperationalError, match="database is locked") as err,
              db.session() as sess):
            sess.execute(text("SELECT 1"))
        assert store_busy(err.value)
        with db.read() as sess:
            assert sess.execute(text("SELECT count(*) FROM scenarios")).scalar() == 0
        other.execute("ROLLBACK")
        with db.session() as sess:  # the writer's connection is usable again
            assert sess.execute(text("SELECT 1")).scalar() == 1
    finally:
        other.close()
        db.dispose()
