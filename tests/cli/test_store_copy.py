"""`forge store copy`: an installation that began on the storage root's SQLite store moves
to a new database (FORGE_DB_URL) with everything it holds. Before, the runbook could only
say "Forge does not copy a SQLite store into another database": moving to PostgreSQL meant
losing every API key, grant, cohort and verdict row. The copy is all or nothing, never
merges into a store in use, and is refused while `forge up` runs on the root. Both engines
for the target, real databases."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from forge.identity.apikeys import verify_api_key
from forge.stack.lock import CLEANUP, COPY, UP, StorageLock
from forge.store import Database, upgrade
from forge.store.db_engine import make_db_engine
from forge.store.models import AuditRecord, Base, Cohort, Scenario, ScenarioTransition
from forge.store.transfer import TransferRefused, copy_store

from ..live_server import distinct_ports
from .test_storage_option import forge

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _fill(url: str, scenarios: int = 3) -> None:
    """Rows in tables of several kinds: keyed by strings, by numbers the store counts
    (autoincrement), with times and with JSON."""
    db = Database(url)
    try:
        with db.session() as sess:
            for n in range(scenarios):
                sid = f"scn-{n:016x}"
                sess.add(Scenario(
                    scenario_id=sid, request_id=f"req-{n}", tenant_id="acme", subject=f"s{n}",
                    track="netplus", template_id="netplus", template_sha256="ab" * 32,
                    plan="PRO", retention_days=7, state="completed", state_reason="graded",
                    sat_jti=f"{n:032x}", et_jti=None, created_at=NOW, updated_at=NOW,
                    expires_at=NOW + timedelta(hours=1), details={"score": n, "late": False},
                    node_id="node-1", node_url=None))
                sess.flush()
                for to in ("creating", "running", "completed"):
                    sess.add(ScenarioTransition(scenario_id=sid, from_state=None, to_state=to,
                                                reason="ü ☃", at=NOW))
            sess.add(Cohort(cohort_id="coh-1", tenant_id="acme", name="Net+ Monday",
                            created_by="prof", idp_group=None, created_at=NOW))
            sess.add(AuditRecord(stream="billing/acme", seq=1, prev_hash="0" * 64,
                                 hash="1" * 64, at=NOW, event="spawn", data={"a": [1, 2]}))
    finally:
        db.dispose()


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, times made zoned (SQLite hands them back naive)."""
    engine = make_db_engine(url, for_writes=False)
    try:
        with engine.connect() as conn:
            out = {}
            for table in Base.metadata.sorted_tables:
                rows = [tuple(v.replace(tzinfo=UTC) if isinstance(v, datetime) and
                              v.tzinfo is None else v for v in row)
                        for row in conn.execute(select(table))]
                out[table.name] = sorted(rows, key=repr)
            return out
    finally:
        engine.dispose()


def test_everything_moves_and_the_new_store_goes_on(db_url: str, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    code, out, err = forge({"FORGE_DB_URL": None}, "--storage", str(storage), "apikey",
                           "create", "--tenant", "acme", "--subject", "ann")
    assert code == 0, err
    key = dict(line.split(maxsplit=1) for line in out.splitlines())["api_key"]
    assert forge({"FORGE_DB_URL": None}, "--storage", str(storage), "entitlements", "grant",
                 "--tenant", "acme", "--plan", "PRO")[0] == 0
    own = f"sqlite:///{storage / 'forge.db'}"
    _fill(own)
    before = _rows(own)

    code, out, err = forge({"FORGE_DB_URL": db_url}, "--storage", str(storage), "store", "copy")
    assert code == 0, (out, err)
    assert "copied 16 rows of 27 tables" in out and "(FORGE_DB_URL)" in out, out
    shown = dict(line.split() for line in out.splitlines()[:-1])  # one "table rows" a line
    assert shown["scenario_transitions"] == "9" and len(shown) == 27
    assert len({line.rindex(" ") for line in out.splitlines()[:-1]}) == 1  # one column
    assert f"move {storage / 'forge.db'}" in err
    assert _rows(db_url) == before
    assert _rows(own) == before  # the source is only read

    # The services go on with the new store: the learner's key signs in, new rows get
    # numbers past the copied ones, and the check sees no store left behind.
    db = Database(db_url)
    try:
        assert verify_api_key(db, key) is not None
        with db.session() as sess:
            sess.add(ScenarioTransition(scenario_id="scn-0000000000000000", from_state=None,
                                        to_state="expired", reason="later", at=NOW))
        with db.session() as sess:
            assert sess.scalar(select(func.max(ScenarioTransition.id))) == 10
    finally:
        db.dispose()
    code, out, err = forge({"FORGE_DB_URL": db_url}, "--storage", str(storage), "config",
                           "check")
    assert code == 0 and "configuration OK" in out + err, (out, err)


def test_a_store_in_use_is_never_merged_into_and_the_same_store_is_refused(
        db_url: str, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    own = f"sqlite:///{storage / 'forge.db'}"
    upgrade(own)
    _fill(own)
    upgrade(db_url)
    db = Database(db_url)
    try:
        with db.session() as sess:
            sess.add(Cohort(cohort_id="coh-9", tenant_id="beta", name="theirs",
                            created_by="x", idp_group=None, created_at=NOW))
    finally:
        db.dispose()
    in_use = _rows(db_url)

    code, _out, err = forge({"FORGE_DB_URL": db_url}, "--storage", str(storage), "store", "copy")
    assert code == 1
    assert "store copy refused: the target store already holds 1 rows in cohorts" in err
    assert _rows(db_url) == in_use

    code, _out, err = forge({"FORGE_DB_URL": None}, "--storage", str(storage), "store", "copy")
    assert code == 1 and "the source and the target are the same state store" in err
    assert "set FORGE_DB_URL to the new, empty database to copy into" in err, err


@pytest.mark.usefixtures("sqlite_only_store")
def test_refused_while_forge_up_runs_or_with_no_store_to_copy(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    target = f"sqlite:///{tmp_path / 'new.db'}"
    code, _out, err = forge({"FORGE_DB_URL": target}, "--storage", str(storage), "store", "copy")
    assert code == 1 and f"no state store at {storage / 'forge.db'}" in err, err
    assert not (storage / "forge.db").exists()  # not made by the refusal

    own = f"sqlite:///{storage / 'forge.db'}"
    upgrade(own)
    _fill(own)
    running = StorageLock.acquire(storage, UP)
    try:
        code, _out, err = forge({"FORGE_DB_URL": target}, "--storage", str(storage), "store",
                               "copy")
    finally:
        running.release()
    assert code == 1 and "store copy refused: another forge up" in err, err
    assert "stop it first (its services would go on writing" in err, err
    # Another holder runs no services: the reason given is its own (it said "its services
    # would go on writing" for a cleanup or another copy too).
    for holder, why in ((CLEANUP, "or let it end"), (COPY, "one copy at a time")):
        held = StorageLock.acquire(storage, holder)
        try:
            code, _out, err = forge({"FORGE_DB_URL": target}, "--storage", str(storage),
                                   "store", "copy")
        finally:
            held.release()
        assert code == 1 and f"store copy refused: {holder} (pid" in err, err
        assert why in err and "services" not in err, err
    code, _out, err = forge({"FORGE_DB_URL": target}, "--storage", str(storage), "store", "copy",
                           "--from", "mysql://x@y/z")
    assert code == 2 and "--from" in err and "mysql" in err, err


@pytest.mark.usefixtures("sqlite_only_store")
def test_forge_up_beside_a_running_copy_names_the_copy(tmp_path: Path) -> None:
    """With FORGE_DB_URL set to the new store, as the copy asks, a `forge up` started while
    the copy ran said "FORGE_DB_URL names a state store with no scenarios … copy it into the
    new store with `forge store copy`": the copy under way, told to run again. It names
    the copy holding the root, as the runbook says, and starts nothing."""
    storage = tmp_path / "storage"
    own = f"sqlite:///{storage / 'forge.db'}"
    upgrade(own)
    _fill(own)
    target = tmp_path / "new.db"
    ports = [str(p) for p in distinct_ports(4)]
    copying = StorageLock.acquire(storage, COPY)
    try:
        code, out, err = forge({"FORGE_DB_URL": f"sqlite:///{target}"}, "--storage",
                               str(storage), "up", "--spawn-port", ports[0],
                               "--orchestrator-port", ports[1], "--scoreboard-port",
                               ports[2], "--nats-port", ports[3])
    finally:
        copying.release()
    assert code == 1, (out, err)
    assert "forge up: forge store copy (pid " in out + err, (out, err)
    assert "`forge store copy` (services stopped)" not in out + err, (out, err)
    # Once the root is free, the refusal for a store left behind is said as before.
    code, out, err = forge({"FORGE_DB_URL": f"sqlite:///{target}"}, "--storage", str(storage),
                           "up", "--spawn-port", ports[0], "--orchestrator-port", ports[1],
                           "--scoreboard-port", ports[2], "--nats-port", ports[3])
    assert code == 1 and "FORGE_DB_URL names a state store with no scenarios" in out + err


def test_a_row_the_target_refuses_leaves_it_empty(postgres_url: str, tmp_path: Path) -> None:
    """SQLite keeps a string longer than its column's length; PostgreSQL refuses it. The
    copy stops there and the target holds nothing, not the tables before it."""
    storage = tmp_path / "storage"
    own = f"sqlite:///{storage / 'forge.db'}"
    upgrade(own)
    _fill(own)
    db = Database(own)
    try:
        with db.session() as sess:
            sess.add(Cohort(cohort_id="c" * 40, tenant_id="acme", name="too long an id",
                            created_by="prof", idp_group=None, created_at=NOW))
    finally:
        db.dispose()

    code, out, err = forge({"FORGE_DB_URL": postgres_url}, "--storage", str(storage), "store",
                           "copy")
    assert code == 1, (out, err)
    assert "store copy failed: copying cohorts failed (value too long" in err, err
    assert "the target was left as it was" in err
    assert all(rows == [] for rows in _rows(postgres_url).values())


@pytest.mark.usefixtures("sqlite_only_store")
def test_a_source_that_takes_the_connection_and_never_answers_ends_the_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FB: against a server that accepts the connection and never answers, the copy waited
    with no end and said nothing. Now it gives up after its connect timeout and names the
    source (never its password); nothing is written."""
    import socket

    from forge.store import transfer

    from ..live_server import distinct_ports

    monkeypatch.setattr(transfer, "CONNECT_TIMEOUT_S", 1)
    silent = socket.socket()
    silent.bind(("127.0.0.1", distinct_ports(1)[0]))
    silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    target = tmp_path / "new.db"
    try:
        code, out, err = forge({
            "FORGE_DB_URL": f"sqlite:///{target}",
            "FORGE_STORE_COPY_FROM": (f"postgresql+psycopg://forge:Sil3ntSecret@127.0.0.1:"
                                      f"{silent.getsockname()[1]}/old")},
            "--storage", str(tmp_path / "storage"), "store", "copy")
    finally:
        silent.close()
    assert code == 1, (out, err)
    assert "store copy refused: the store to copy from (--from: " in err, err
    assert "cannot be read" in err
    assert "Sil3ntSecret" not in out + err
    assert not target.exists() or _rows(f"sqlite:///{target}") == {
        t.name: [] for t in Base.metadata.sorted_tables}


def test_a_source_it_cannot_use_is_named_as_the_source_not_as_forge_db_url(
        db_url: str, tmp_path: Path) -> None:
    """A `--from` that is not a database, or that a newer release migrated, is refused
    naming `--from`: before, the lines said FORGE_DB_URL (the target, which was fine), so
    the operator went to fix the wrong store. The target is left as it was."""
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("not a database\n")
    code, _out, err = forge({"FORGE_DB_URL": db_url}, "--storage", str(tmp_path / "storage"),
                            "store", "copy", "--from", f"sqlite:///{not_a_db}")
    assert code == 1, err
    assert f"the state store {not_a_db} (--from) is not a SQLite database: point --from" in err
    assert "FORGE_DB_URL" not in err

    newer = tmp_path / "newer.db"
    upgrade(f"sqlite:///{newer}")
    engine = make_db_engine(f"sqlite:///{newer}")
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    finally:
        engine.dispose()
    code, _out, err = forge({"FORGE_DB_URL": db_url}, "--storage", str(tmp_path / "storage"),
                            "store", "copy", "--from", f"sqlite:///{newer}")
    assert code == 1, err
    assert "the state store --from names is at schema revision 0099_future" in err, err
    if db_url.startswith("sqlite"):  # the target was not even made
        assert not (tmp_path / "forge.db").exists()
    else:
        assert all(rows == [] for rows in _rows(db_url).values())


def test_a_source_database_it_cannot_reach_is_named_as_the_source(
        postgres_url: str, tmp_path: Path) -> None:
    missing = postgres_url.replace("/forge_t", "/no_such_db_t", 1)
    missing_with_password = missing.replace("postgres@", "postgres:hunter2secret@", 1)
    code, _out, err = forge({"FORGE_DB_URL": postgres_url,
                             "FORGE_STORE_COPY_FROM": missing_with_password}, "--storage",
                            str(tmp_path / "storage"), "store", "copy")
    assert code == 1, err
    assert "store copy refused: the store to copy from (--from: postgresql+psycopg://" in err
    assert "no_such_db_t" in err and "does not exist" in err, err
    assert "FORGE_DB_URL" not in err and "hunter2secret" not in err
    assert all(rows == [] for rows in _rows(postgres_url).values())


def _waiting_on_locks(url: str) -> int:
    """Sessions of the database at ``url`` waiting for a lock now (PostgreSQL)."""
    engine = make_db_engine(url, for_writes=False)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one())
    finally:
        engine.dispose()


def test_a_copy_racing_another_writer_into_one_new_database_never_merges(
        postgres_url: str, tmp_path: Path) -> None:
    """Two operators (or two nodes) copying into one new PostgreSQL database at once: each
    found it empty while the other had not committed, and the second to commit either
    merged two installations into one store or died on a RuntimeError traceback. The
    copy now locks the target's tables before it looks: it waits for the other writer,
    then finds its rows and is refused, writing nothing."""
    own = f"sqlite:///{tmp_path / 'storage' / 'forge.db'}"
    upgrade(own)
    _fill(own)
    other = make_db_engine(postgres_url)
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(copy_store(own, postgres_url))
        except TransferRefused as exc:
            outcome.append(exc)

    copying = threading.Thread(target=run)
    try:
        with other.begin() as conn:  # the other copy, not yet committed
            conn.execute(Cohort.__table__.insert(), [dict(
                cohort_id="coh-theirs", tenant_id="beta", name="theirs", created_by="x",
                idp_group=None, created_at=NOW)])
            copying.start()
            deadline = time.monotonic() + 60  # a bound on the wait, not a timing assertion
            while copying.is_alive() and _waiting_on_locks(postgres_url) == 0:
                assert time.monotonic() < deadline, "the copy neither ended nor waited"
                time.sleep(0.02)
        copying.join(60)
    finally:
        other.dispose()
    assert len(outcome) == 1 and isinstance(outcome[0], TransferRefused), outcome
    assert "the target store already holds 1 rows in cohorts" in str(outcome[0])
    rows = _rows(postgres_url)
    assert [r[0] for r in rows["cohorts"]] == ["coh-theirs"]
    assert all(v == [] for k, v in rows.items() if k != "cohorts")


def test_a_target_in_use_on_an_older_schema_is_refused_as_it_is(
        db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """FORGE_DB_URL naming, by mistake, the store of an installation still on an older
    release: the copy migrated it to this release's schema and only then found its rows
    and refused, so the refusal that "writes nothing" had changed its schema under the
    services still using it. It is now refused before its migrations."""
    if not db_url.startswith("sqlite"):  # the fixture's database is migrated already
        cluster = request.getfixturevalue("postgres_cluster")
        db_url = cluster.create_database(migrated=False)
        request.addfinalizer(lambda: cluster.drop_database(db_url))
    storage = tmp_path / "storage"
    own = f"sqlite:///{storage / 'forge.db'}"
    upgrade(own)
    _fill(own)
    upgrade(db_url, "0010")
    engine = make_db_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO cohorts (cohort_id, tenant_id, name, created_by, created_at) "
                "VALUES ('coh-live', 'beta', 'a class in use', 'prof', :at)"), {"at": NOW})
    finally:
        engine.dispose()

    code, _out, err = forge({"FORGE_DB_URL": db_url}, "--storage", str(storage), "store", "copy")
    assert code == 1, err
    assert "store copy refused: the target store already holds 1 rows in cohorts" in err, err
    engine = make_db_engine(db_url, for_writes=False)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() \
                == [("0010",)]
    finally:
        engine.dispose()
