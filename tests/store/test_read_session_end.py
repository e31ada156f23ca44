"""A read session ends by closing it: its snapshot and connection are given up (a write
made since is seen by the next read, nothing written inside a read is kept), without an
ORM rollback first, which only redid the session's bookkeeping on every request."""

from __future__ import annotations

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
