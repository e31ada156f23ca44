"""Statements run through the driver (forge.store.prepared) store what Core stores, on both
engines: a spawn's rows read back identically however they were written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import String, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound

from forge.store import Database, upgrade
from forge.store.models import IdempotencyRecord, QuotaSlot, Scenario
from forge.store.prepared import Prepared

from ..support.sql_statements import sql_statements

SLOTS = QuotaSlot.__table__
RECORDS = IdempotencyRecord.__table__
SLOT_COLUMNS = ["scenario_id", "tenant_id", "subject", "acquired_at", "expires_at",
                "released_at"]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    upgrade(db_url)
    database = Database(db_url)
    yield database
    database.dispose()


def _slot(scenario_id: str, now: datetime) -> dict[str, object]:
    return {"scenario_id": scenario_id, "tenant_id": "t1", "subject": "s1", "acquired_at": now,
            "expires_at": now + timedelta(minutes=35), "released_at": None}


def test_rows_written_through_the_driver_read_back_as_core_writes_them(db: Database) -> None:
    now = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    prepared = Prepared(insert(SLOTS), SLOT_COLUMNS)
    with db.session() as sess:
        prepared.execute(sess.connection(), _slot("scn-a", now))
        sess.connection().execute(insert(SLOTS), _slot("scn-b", now))
    with db.read() as sess:
        rows = {r.scenario_id: {k: getattr(r, k) for k in SLOT_COLUMNS[1:]}
                for r in sess.scalars(select(QuotaSlot))}
    assert rows["scn-a"] == rows["scn-b"]
    assert rows["scn-a"]["released_at"] is None


def test_json_literals_and_executemany(db: Database) -> None:
    """A JSON value, a literal of the statement (status_code = 0) and several rows at once."""
    now = datetime.now(UTC)
    reserve = Prepared(insert(RECORDS), [c.name for c in RECORDS.c])
    complete = Prepared(update(RECORDS).where(RECORDS.c.request_id == bindparam("rid"),
                                              RECORDS.c.status_code == 0)
                        .values(status_code=bindparam("code"), response=bindparam("body")))
    with db.session() as sess:
        for rid in ("r-1", "r-2", "r-3"):
            reserve.execute(sess.connection(), {
                "request_id": rid, "fingerprint": "f", "status_code": 0 if rid != "r-3" else 200,
                "response": {}, "created_at": now, "expires_at": now})
        complete.execute_many(sess.connection(), [
            {"rid": rid, "code": 201, "body": {"scenario_id": f"scn-{rid}", "n": [1, "ü"]}}
            for rid in ("r-1", "r-2", "r-3")])
    with db.read() as sess:
        rows = {r.request_id: (r.status_code, r.response)
                for r in sess.scalars(select(IdempotencyRecord))}
    assert rows["r-1"] == (201, {"scenario_id": "scn-r-1", "n": [1, "ü"]})
    assert rows["r-2"][0] == 201
    assert rows["r-3"] == (200, {})  # not pending: kept


def test_refuses_what_only_core_would_do() -> None:
    """A column default Core would fill, and an IN list Core renders per call."""
    from sqlalchemy.dialects import sqlite

    table = Scenario.__table__
    with pytest.raises(ValueError, match="retention_days"):
        Prepared(insert(table), ["scenario_id"])._compile(sqlite.dialect())
    expanding = select(table.c.state).where(table.c.scenario_id.in_(bindparam("ids",
                                                                              expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        Prepared(expanding)._compile(sqlite.dialect())
    literal = select(table.c.state).where(
        table.c.scenario_id == bindparam("sid", literal_execute=True))
    with pytest.raises(ValueError, match="literal-execute"):
        Prepared(literal)._compile(sqlite.dialect())


def test_a_none_goes_through_the_columns_processor_as_core_sends_it(db: Database) -> None:
    """Core hands None to a type's bind processor too (a JSON column stores JSON null, not
    SQL NULL): the driver path must store what Core stores."""
    now = datetime.now(UTC)
    reserve = Prepared(insert(RECORDS), [c.name for c in RECORDS.c])
    row = {"fingerprint": "f", "status_code": 0, "response": None, "created_at": now,
           "expires_at": now}
    with db.session() as sess:
        reserve.execute(sess.connection(), {**row, "request_id": "via-driver"})
        sess.connection().execute(insert(RECORDS), {**row, "request_id": "via-core"})
    with db.read() as sess:
        stored = dict(sess.connection().execute(select(
            RECORDS.c.request_id, RECORDS.c.response.cast(String))).all())
    assert stored["via-driver"] == stored["via-core"]


def test_results_answer_by_name_and_position_and_errors_keep_their_class(db: Database) -> None:
    """What callers read of a result (rows by name and position, first/one/all/scalar,
    rowcount) and the wrapped driver errors they catch (a duplicate key is IntegrityError,
    out of the transaction) are the same on either path."""
    now = datetime.now(UTC)
    add = Prepared(insert(SLOTS), SLOT_COLUMNS)
    live = Prepared(select(SLOTS.c.scenario_id, SLOTS.c.subject)
                    .where(SLOTS.c.tenant_id == bindparam("tenant"))
                    .order_by(SLOTS.c.scenario_id))
    free = Prepared(update(SLOTS).where(SLOTS.c.tenant_id == bindparam("tenant"))
                    .values(released_at=bindparam("at")))
    with db.session() as sess:
        for sid in ("scn-a", "scn-b"):
            assert add.execute(sess.connection(), _slot(sid, now)).rowcount == 1
    with pytest.raises(IntegrityError), db.session() as sess:
        add.execute(sess.connection(), _slot("scn-c", now))
        add.execute(sess.connection(), _slot("scn-a", now))
    with db.read() as sess:
        found = live.execute(sess.connection(), {"tenant": "t1"})
        rows = found.all()
        assert [(r.scenario_id, r[1]) for r in rows] == [("scn-a", "s1"), ("scn-b", "s1")]
        assert tuple(live.execute(sess.connection(), {"tenant": "t1"}).first()) == ("scn-a",
                                                                                     "s1")
        assert live.execute(sess.connection(), {"tenant": "t1"}).scalar() == "scn-a"
        assert live.execute(sess.connection(), {"tenant": "nobody"}).first() is None
        with pytest.raises(MultipleResultsFound):
            live.execute(sess.connection(), {"tenant": "t1"}).one()
        with pytest.raises(NoResultFound):
            live.execute(sess.connection(), {"tenant": "nobody"}).one()
    with db.session() as sess:
        assert free.execute(sess.connection(), {"tenant": "t1", "at": now}).rowcount == 2


def test_a_bare_connection_gets_its_transaction_as_core_would_begin_it(db: Database) -> None:
    """On a connection with no transaction yet the statement begins one (Core's autobegin):
    rolled back, nothing stays; committed, the row is there."""
    now = datetime.now(UTC)
    add = Prepared(insert(SLOTS), SLOT_COLUMNS)
    with db.engine.connect() as conn:
        add.execute(conn, _slot("scn-gone", now))
        assert conn.in_transaction()
        conn.rollback()
        add.execute(conn, _slot("scn-kept", now))
        conn.commit()
    with db.read() as sess:
        kept = sess.connection().execute(select(SLOTS.c.scenario_id)).scalars().all()
    assert kept == ["scn-kept"]


def _new_sqlite(tmp_path: Path) -> Database:
    """A new, migrated SQLite store under `tmp_path`."""
    url = f"sqlite:///{tmp_path / 'forge.db'}"
    upgrade(url)
    return Database(url)


@pytest.mark.usefixtures("sqlite_only_store")
def test_on_sqlite_a_statement_goes_to_the_driver_without_a_core_execution(
        tmp_path: Path) -> None:
    """SQLite: the statement runs on the driver's connection itself; Core's execution
    context and result (~13 us of each call's ~16 us, nine calls per spawn) are not built,
    so Core's cursor events never see it."""
    database = _new_sqlite(tmp_path)
    try:
        with sql_statements(database) as seen, database.session() as sess:
            Prepared(insert(SLOTS), SLOT_COLUMNS).execute(sess.connection(),
                                                          _slot("scn-d", datetime.now(UTC)))
            count = sess.connection().execute(select(func.count()).select_from(SLOTS)).scalar()
    finally:
        database.dispose()
    assert count == 1
    assert not [s for s in seen if "INSERT" in s]


def test_a_select_answers_values_and_names_as_core_does(db: Database) -> None:
    """A SELECT's rows come back converted by its columns' types (a timestamp a datetime, a
    JSON column its value) and named by its columns' keys, labels included, as Core's."""
    now = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    with db.session() as sess:
        sess.connection().execute(insert(RECORDS), {
            "request_id": "r-typed", "fingerprint": "f", "status_code": 201,
            "response": {"scenario_id": "scn-1", "n": [1, "ü"]}, "created_at": now,
            "expires_at": now + timedelta(hours=1)})
    query = select(RECORDS.c.request_id, RECORDS.c.response, RECORDS.c.created_at,
                   RECORDS.c.expires_at.label("until")).where(
                       RECORDS.c.request_id == bindparam("rid"))
    with db.read() as sess:
        core = sess.connection().execute(query, {"rid": "r-typed"}).one()
        driver = Prepared(query).execute(sess.connection(), {"rid": "r-typed"}).one()
    assert tuple(driver) == tuple(core)
    assert driver.response == {"scenario_id": "scn-1", "n": [1, "ü"]}
    assert isinstance(driver.created_at, datetime)
    assert driver.until == core.until


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_spawns_lookups_go_to_the_driver(tmp_path: Path) -> None:
    """SQLite: the spawn's idempotency lookup (in the reservation) and its assignment lookup
    (in the caller's reads) run on the driver, not through a Core execution; what they
    answer is unchanged (tests/spawn, tests/classroom)."""
    from forge.classroom import assignments
    from forge.store import idempotency

    database = _new_sqlite(tmp_path)
    now = datetime.now(UTC)
    try:
        with sql_statements(database) as seen:
            with database.session() as sess:
                assert idempotency.find_both(sess, "k" * 64, "req-12345678", now) == (None, None)
            assert assignments.applicable(database, "t1", "s1", "netplus", None, now) is None
    finally:
        database.dispose()
    assert not [s for s in seen if "SELECT" in s]
