"""Copying one state store into another, new one (SQLite to PostgreSQL, say).

An installation that began on one machine's SQLite file and moves to PostgreSQL (for
replicas, or lab nodes on several machines) keeps everything its store holds: API keys,
grants, roles, cohorts and assignments, scenarios and their verdict rows, the consumed
token ids that stop a replay, LMS links and grade posts. `copy_store` reads the source in
one transaction (one consistent moment) and writes the target in one: the target ends
holding every row, or, on any error, nothing at all. The target must be empty (a store
already in use is never merged into), and both are brought to the current schema first,
as every operator command does. Rows are read and written in chunks, so the memory used
does not grow with the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, DateTime, Table, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from forge.config.db_url import normalize_url, shown_url, with_connect_timeout
from forge.store.busy import store_busy, store_error_text
from forge.store.db_engine import make_db_engine
from forge.store.migrate import refuse_not_a_database, upgrade
from forge.store.models import Base
from forge.store.sqlite_files import sqlite_file

CHUNK_ROWS = 500  # rows held in memory at once
CONNECT_TIMEOUT_S = 10  # for a PostgreSQL store that takes a connection and never answers


class TransferRefused(Exception):
    """The copy was not started: the message says why and what to do."""


class TransferFailed(Exception):
    """A row could not be written to the target (the message names its table and the
    database's reason); the target was left as it was."""


def _same_store(source: str, target: str) -> bool:
    source, target = normalize_url(source), normalize_url(target)
    if make_url(source).get_backend_name() == make_url(target).get_backend_name() == "sqlite":
        a, b = sqlite_file(source), sqlite_file(target)
        if a is not None and b is not None:
            return a.resolve() == b.resolve()
    return source == target


def _utc(columns: Iterable[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A row fixer: SQLite hands its zoned times back naive (they are UTC, as written)."""
    names = tuple(columns)

    def fix(row: dict[str, Any]) -> dict[str, Any]:
        for name in names:
            value = row.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                row[name] = value.replace(tzinfo=UTC)
        return row
    return fix


def _first_rows(conn: Connection, present: set[str] | None = None) -> tuple[str, int] | None:
    """The first table of the store on ``conn`` holding rows, and how many (None: empty);
    with ``present``, only those of its tables that exist (a store not yet migrated)."""
    for table in Base.metadata.sorted_tables:
        if present is not None and table.name not in present:
            continue
        rows = int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        if rows:
            return table.name, rows
    return None


def _hold_target(target: Connection) -> None:
    """On PostgreSQL, lock every table of the target until the copy commits, before it is
    found empty: another copy (or a service started on the new store) writing meanwhile
    waits, then finds rows and is refused, instead of both seeing an empty store and
    merging. SQLite needs nothing: the write transaction's BEGIN IMMEDIATE already holds
    the whole file."""
    if target.dialect.name != "postgresql":
        return
    quote = target.dialect.identifier_preparer.quote
    names = ", ".join(quote(table.name) for table in Base.metadata.sorted_tables)
    target.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))


def _copy_table(source: Connection, target: Connection, table: Table) -> int:
    zoned = [c.name for c in table.columns
             if isinstance(c.type, DateTime) and c.type.timezone]
    fix = _utc(zoned)
    copied = 0
    result = source.execution_options(yield_per=CHUNK_ROWS).execute(select(table))
    for chunk in result.partitions(CHUNK_ROWS):
        target.execute(table.insert(), [fix(dict(row._mapping)) for row in chunk])
        copied += len(chunk)
    return copied


def _reset_sequences(target: Connection) -> None:
    """On PostgreSQL, move each integer key's sequence past the copied ids (the copy wrote
    them explicitly, so the sequence still stands at 1 and the next insert would collide)."""
    if target.dialect.name != "postgresql":
        return  # SQLite's next rowid is always past the largest
    for table in Base.metadata.sorted_tables:
        column = table.autoincrement_column
        if column is None:
            continue
        target.execute(
            text(f"SELECT setval(pg_get_serial_sequence(:table, :column), "  # noqa: S608
                 f"COALESCE(MAX({column.name}), 1), MAX({column.name}) IS NOT NULL) "
                 f"FROM {table.name}"),
            {"table": table.name, "column": column.name})


def _prepare_source(url: str, setting: str) -> None:
    """Bring the source store to the current schema; a refusal names it by ``setting``
    (the option that gave it), never as FORGE_DB_URL, which names the target."""
    try:
        upgrade(url, setting=setting)
    except DBAPIError as exc:  # unreachable, refused sign-in, damaged file
        reason = " ".join(str(exc.orig or exc).split())[:300]
        raise TransferRefused(
            f"the store to copy from ({setting}: "
            f"{shown_url(url)}) cannot be read "
            f"({reason}): check that {setting} names it rightly and that it is up, and run "
            "it again") from None


def _held(held: tuple[str, int]) -> TransferRefused:
    return TransferRefused(
        f"the target store already holds {held[1]} rows in {held[0]}: copy only into a new, "
        "empty database (a store in use is never merged into)")


def _refuse_held_target(url: str) -> None:
    """TransferRefused when the target already holds rows in the tables it has, checked
    before its migrations run: a store in use (of an older release, say) is refused as it
    is, not brought to this release's schema first."""
    refuse_not_a_database(url)
    if make_url(url).get_backend_name() == "sqlite":
        path = sqlite_file(url)
        if path is None or not path.is_file():
            return  # nothing there yet (and no file made here)
    engine = make_db_engine(url, for_writes=False)
    try:
        with engine.connect() as conn:
            held = _first_rows(conn, set(inspect(conn).get_table_names()))
    finally:
        engine.dispose()
    if held is not None:
        raise _held(held)


def copy_store(source_url: str, target_url: str, *,
               source_setting: str = "--from") -> dict[str, int]:
    """Copy every row of the store at ``source_url`` into the empty store at
    ``target_url``, both migrated to the current schema first; the rows copied, by table.
    Raises TransferRefused (nothing written) when both name one store, the source cannot
    be read (named by ``source_setting``) or the target holds rows, TransferFailed when
    the target refuses a row; any error while copying leaves the target as it was."""
    if _same_store(source_url, target_url):
        raise TransferRefused(
            "the source and the target are the same state store: set FORGE_DB_URL to the "
            "new, empty database to copy into (and --from to the store to copy, when it is "
            "not the storage root's forge.db)")
    # A server that takes the connection and never answers left the copy waiting, no end.
    source_url = with_connect_timeout(source_url, CONNECT_TIMEOUT_S)
    target_url = with_connect_timeout(target_url, CONNECT_TIMEOUT_S)
    _prepare_source(source_url, source_setting)
    try:
        _refuse_held_target(target_url)  # before its migrations: a store in use is not migrated
        upgrade(target_url)
    except DBAPIError as exc:
        if not store_busy(exc):
            raise
        said = " ".join(store_error_text(exc).split())[:300]
        raise TransferRefused(f"the target store (FORGE_DB_URL) cannot be reached ({said}): "
                              "check that its database is up and answers, and run it "
                              "again") from None
    source_engine = make_db_engine(source_url, for_writes=False)
    target_engine = make_db_engine(target_url)
    try:
        with source_engine.connect() as source, target_engine.begin() as target:
            if source.dialect.name == "postgresql":  # one snapshot for every statement
                source.execution_options(isolation_level="REPEATABLE READ")
            _hold_target(target)
            held = _first_rows(target)
            if held is not None:
                raise _held(held)
            source.execute(select(1))  # opens the read transaction: one moment throughout
            copied: dict[str, int] = {}
            for table in Base.metadata.sorted_tables:
                try:
                    copied[table.name] = _copy_table(source, target, table)
                except DBAPIError as exc:  # a row the target's schema refuses
                    reason = str(exc.orig or exc).strip().splitlines()[0][:300]
                    raise TransferFailed(f"copying {table.name} failed ({reason}); the "
                                         "target was left as it was") from None
            _reset_sequences(target)
            for table in Base.metadata.sorted_tables:
                landed = int(target.execute(
                    select(func.count()).select_from(table)).scalar_one())
                if landed != copied[table.name]:
                    raise RuntimeError(f"{table.name}: {copied[table.name]} rows read but "
                                       f"{landed} in the target")
            return copied
    finally:
        source_engine.dispose()
        target_engine.dispose()
