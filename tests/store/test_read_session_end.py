"""A read session ends by closing it: its snapshot and connection are given up (a write
made since is seen by the next read, nothing written inside a read is kept), without an
ORM rollback first, which only redid the session's bookkeeping on every request."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from forge.store import Database, upgrade


def _store(db_url: str) -> Database:
    upgrade(db_url)
    return Database(db_url)


def test_a_read_ends_its_snapshot_and_keeps_nothing(db_url: str) -> None:
    db = _store(db_url)
    try:
        with db.session() as sess:
            sess.execute(text("CREATE TABLE probe (n INTEGER)"))
        with db.read() as sess:
            assert sess.execute(text("SELECT count(*) FROM probe")).scalar_one() == 0
            sess.execute(text("INSERT INTO probe VALUES (1)"))  # a read keeps nothing
        with db.session() as sess:
            sess.execute(text("INSERT INTO probe VALUES (2)"))
        with db.read() as sess:  # a new snapshot: the write made since, and only it
            assert sess.execute(text("SELECT n FROM probe")).scalars().all() == [2]
        with db.session() as sess:  # no read left a transaction open on the file
            sess.execute(text("INSERT INTO probe VALUES (3)"))
    finally:
        db.dispose()


def test_a_read_is_closed_without_an_orm_rollback(db_url: str) -> None:
    db = _store(db_url)
    rollbacks: list[Session] = []
    ends: list[Session] = []

    def rolled_back(sess: Session, _previous: object) -> None:
        rollbacks.append(sess)

    def ended(sess: Session, _trans: object) -> None:
        ends.append(sess)

    event.listen(Session, "after_soft_rollback", rolled_back)
    event.listen(Session, "after_transaction_end", ended)
    try:
        with db.read() as sess:
            sess.execute(text("SELECT 1")).scalar_one()
        assert ends and ends[-1] is sess
        assert sess not in rollbacks
    finally:
        event.remove(Session, "after_soft_rollback", rolled_back)
        event.remove(Session, "after_transaction_end", ended)
        db.dispose()


@pytest.mark.parametrize("engine", [pytest.param("sqlite", id="sqlite_only")])
def test_a_connection_read_begins_no_orm_transaction_and_shares_its_snapshot(
        tmp_path: Path, engine: str) -> None:
    """A read that only runs statements on its connection (a status poll's: the caller,
    the scenario row) pays for no ORM transaction; one that also asks the ORM sees the
    same snapshot, whatever was written meanwhile."""
    db = _store(f"sqlite:///{tmp_path}/forge.db")
    begun: list[Session] = []

    def began(sess: Session, _trans: object, _conn: object) -> None:
        begun.append(sess)

    event.listen(Session, "after_begin", began)
    try:
        with db.session() as sess:
            sess.execute(text("CREATE TABLE probe (n INTEGER)"))
            sess.execute(text("INSERT INTO probe VALUES (1)"))
        begun.clear()
        with db.reading() as read:
            conn = read.connection()
            assert conn.exec_driver_sql("SELECT count(*) FROM probe").scalar() == 1
            assert begun == []  # no ORM transaction for a connection's statements
            with db.session() as sess:  # a write committed during the read
                sess.execute(text("INSERT INTO probe VALUES (2)"))
            begun.clear()
            with db.read() as same:  # the block's one session, now through the ORM
                assert same is read
                assert same.execute(text("SELECT count(*) FROM probe")).scalar_one() == 1
            assert read.connection() is conn
        with db.read() as sess:  # a new snapshot: the write made meanwhile
            assert sess.execute(text("SELECT count(*) FROM probe")).scalar_one() == 2
    finally:
        event.remove(Session, "after_begin", began)
        db.dispose()
