"""`lifecycle.store.load`: a Core-read copy of a scenario row that says exactly what the ORM
row says (every column, its times as the engine gives them, the details document), on both
engines."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from forge.lifecycle.store import (
    ScenarioNotFound,
    ScenarioRecord,
    history,
    load,
    record_move,
    set_details,
)
from forge.store import Database, upgrade
from forge.store.models import Scenario

from ..support.sql_statements import sql_statements


def test_a_loaded_record_equals_the_orm_row_column_for_column(db_url: str) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        now = datetime.now(UTC).replace(microsecond=123456)
        with db.session() as sess:
            sess.add(Scenario(
                scenario_id="scn-0123456789abcdef", request_id="req-1", tenant_id="tenant-a",
                subject="learner-1", track="netplus", template_id="netplus-basics",
                template_sha256="ab" * 32, plan="PRO", retention_days=7, state="running",
                state_reason="lab running", sat_jti="s" * 32, et_jti=None, created_at=now,
                updated_at=now + timedelta(seconds=1), expires_at=now + timedelta(hours=1),
                details={"hosts": {"box": {"lan": "10.0.0.2"}}, "attempt": 2, "ok": True},
                node_id="node-1", node_url="http://127.0.0.1:9"))
        record = load(db, "scn-0123456789abcdef")
        with db.read() as sess:
            orm = sess.get(Scenario, "scn-0123456789abcdef")
            assert orm is not None
            columns = {c.key: getattr(orm, c.key) for c in Scenario.__table__.columns}
        assert dataclasses.asdict(record) == columns  # naive on SQLite, as the ORM's
        assert record.details["hosts"] == {"box": {"lan": "10.0.0.2"}}
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.state = "ended"  # type: ignore[misc]
        with pytest.raises(ScenarioNotFound):
            load(db, "scn-ffffffffffffffff")
    finally:
        db.dispose()


def test_the_record_has_every_column_of_the_table() -> None:
    # A column added to the model without the record would fail every load (TypeError).
    fields = {f.name for f in dataclasses.fields(ScenarioRecord)}
    assert fields == {c.key for c in Scenario.__table__.columns}


def test_set_details_merges_one_level_and_touches_nothing_else(
        db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    db = Database(db_url)
    try:
        now = datetime.now(UTC)
        with db.session() as sess:
            sess.add(Scenario(
                scenario_id="scn-00000000000000aa", request_id="req-2", tenant_id="tenant-a",
                subject="learner-1", track="netplus", template_id="netplus-basics",
                plan="PRO", state="launching", created_at=now, updated_at=now,
                details={"hosts": {"box": {"lan": "10.0.0.2"}}, "attempt": 1}))
        before = load(db, "scn-00000000000000aa")
        set_details(db, tmp_path, "scn-00000000000000aa",
                    {"attempt": 2, "hosts": {"web": {}}}, "launch attempt 2")
        after = load(db, "scn-00000000000000aa")
        # one level: a key given replaces that key's whole value, the others stay
        assert after.details == {"hosts": {"web": {}}, "attempt": 2}
        assert after.updated_at >= before.updated_at
        unchanged = {k: v for k, v in dataclasses.asdict(before).items()
                     if k not in ("details", "updated_at")}
        assert {k: v for k, v in dataclasses.asdict(after).items()
                if k not in ("details", "updated_at")} == unchanged
        assert "launch attempt 2" in (
            tmp_path / "scenarios" / "scn-00000000000000aa" / "audit.jsonl").read_text()
        with pytest.raises(ScenarioNotFound):
            set_details(db, tmp_path, "scn-ffffffffffffffff", {"x": 1}, "nothing")
    finally:
        db.dispose()


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_status_read_goes_to_the_driver_on_sqlite(tmp_path: Path) -> None:
    """The row every status poll reads runs on the driver (forge.store.prepared), not through
    a Core execution (its statement cache, parameter and result building); what it answers
    is the ORM row's (above)."""
    url = f"sqlite:///{tmp_path / 'forge.db'}"
    upgrade(url)
    db = Database(url)
    try:
        now = datetime.now(UTC)
        with db.session() as sess:
            sess.add(Scenario(
                scenario_id="scn-00000000000000bb", request_id="req-3", tenant_id="tenant-a",
                subject="learner-1", track="netplus", template_id="netplus-basics",
                plan="PRO", state="pending", created_at=now, updated_at=now, details={}))
        with sql_statements(db) as seen:
            record = load(db, "scn-00000000000000bb")
            with pytest.raises(ScenarioNotFound):
                load(db, "scn-ffffffffffffffff")
    finally:
        db.dispose()
    assert record.state == "pending" and record.details == {}
    assert not [s for s in seen if "SELECT" in s]


def test_a_move_runs_on_the_driver_and_stores_what_core_stored(db_url: str) -> None:
    """A lab moves 4-5 times, each a locked read, the row's update and its history row: all
    three through the driver on SQLite (forge.store.prepared; Core's execution was about half
    a move's CPU). What they store is the columns given, the details merged one level, the
    history row."""
    upgrade(db_url)
    db = Database(db_url)
    try:
        now = datetime.now(UTC)
        sid = "scn-00000000000000cc"
        with db.session() as sess:
            sess.add(Scenario(
                scenario_id=sid, request_id="req-4", tenant_id="tenant-a",
                subject="learner-1", track="netplus", template_id="netplus-basics",
                plan="PRO", state="pending", created_at=now, updated_at=now,
                details={"attempt": 1, "keep": True}))
        expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        with sql_statements(db) as seen:
            launched = record_move(db, sid, "launching", "launching", updates={
                "template_sha256": "ab" * 32, "node_id": "node-1", "node_url": None},
                details={"attempt": 2, "hosts": {"web": {"lan": "10.0.0.2"}}})
            ran = record_move(db, sid, "running", "lab running",
                              with_move=lambda _conn, _before: {"expires_at": expires})
        record = load(db, sid)
        assert (launched.from_state, launched.to_state, ran.from_state) == (
            "pending", "launching", "launching")
        assert (launched.tenant_id, launched.subject, launched.track) == (
            "tenant-a", "learner-1", "netplus")
        assert (record.state, record.state_reason, record.template_sha256, record.node_id,
                record.node_url) == ("running", "lab running", "ab" * 32, "node-1", None)
        assert record.details == {"attempt": 2, "keep": True,
                                  "hosts": {"web": {"lan": "10.0.0.2"}}}
        assert record.expires_at is not None
        assert record.expires_at.replace(tzinfo=UTC) == expires
        assert record.updated_at.replace(tzinfo=UTC) == ran.at
        assert history(db, sid) == [
            {"from": "pending", "to": "launching", "reason": "launching",
             "at": launched.at.replace(tzinfo=None).isoformat()
             if db_url.startswith("sqlite") else launched.at.isoformat()},
            {"from": "launching", "to": "running", "reason": "lab running",
             "at": ran.at.replace(tzinfo=None).isoformat()
             if db_url.startswith("sqlite") else ran.at.isoformat()}]
    finally:
        db.dispose()
    if db_url.startswith("sqlite"):  # PostgreSQL's go through exec_driver_sql, seen by Core
        assert not [s for s in seen if s.split()[0] in ("SELECT", "UPDATE", "INSERT")], seen
