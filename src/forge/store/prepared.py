"""Core statements compiled once per dialect and run through the driver's own execute.

`Connection.execute` of a Core statement looks its compiled form up in the cache, builds
the parameter dictionary and runs every bind processor on every call: about 60 µs per
statement on the spawn path's machine, more than SQLite takes to run most of them
(measured: the spawn reservation's eight statements cost 1.1 ms through Core, 0.63 ms
through `exec_driver_sql`). `Prepared` does that work once per dialect: the SQL text, the
order of its parameters and each parameter's bind processor (the same processors Core
uses, so values are stored exactly as Core stores them, on SQLite and PostgreSQL alike).

A SELECT's rows are converted by its columns' result processors (the same ones Core uses:
a SQLite timestamp comes back a datetime, a JSON column its value) and answer by the
columns' keys; other statements' rows (RETURNING of a text statement) come back as the
driver returns them, named as the driver names them.

On SQLite the statement goes to the driver's connection itself, not through
`exec_driver_sql`, which still built an execution context and a CursorResult per call (~13
of its ~16 us; the spawn path runs nine of these per request): `DriverResult` answers the
part of CursorResult's interface the callers use (rows by name and position, `first`,
`one`, `all`, `scalar`, `rowcount`), and a driver error is wrapped as Core wraps it
(`DBAPIError.instance`: a duplicate key is an IntegrityError, "database is locked" an
OperationalError), so callers and busy handling see the errors they always saw. The
transaction is the connection's own, begun first if it was not (Core's autobegin). Other
dialects keep `exec_driver_sql`: their round trip to the server dwarfs it.
"""

from __future__ import annotations

import functools
import sqlite3
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Insert, Select, Update
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

Processor = Callable[[Any], Any] | None


class DriverResult:
    """The rows (all fetched) and row count of one statement run on the driver's connection,
    with the part of CursorResult's interface Forge's callers use."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self) -> Any | None:
        return self._rows[0][0] if self._rows else None


@functools.lru_cache(maxsize=256)
def _row_type(names: tuple[str, ...]) -> Callable[..., Any]:
    """A tuple type whose fields are also named by the result's columns."""
    return namedtuple("DriverRow", names, rename=True)  # type: ignore[misc]


@dataclass(frozen=True)
class _Form:
    """One dialect's rendering: SQL text, parameter names in order, their processors and
    the values of the statement's literal parameters."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor, ...]
    fixed: Mapping[str, Any]
    positional: bool
    # a SELECT's column keys and their result processors (None: rows as the driver gives)
    keys: tuple[str, ...] | None = None
    results: tuple[Processor, ...] = ()

    def params(self, given: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = given[name] if name in given else self.fixed[name]
            values.append(value if process is None else process(value))
        if self.positional:
            return tuple(values)
        return dict(zip(self.names, values, strict=True))


class Prepared:
    """A Core statement run with `exec_driver_sql` (see the module docstring).

    `columns`: for an INSERT or UPDATE without explicit values, the column keys every
    call passes (Core renders only the columns given)."""

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._columns = list(columns) if columns is not None else None
        # Per dialect object: the rendering depends on its settings (paramstyle, JSON
        # serializer, native datetimes, server version), not only its name.
        self._forms: weakref.WeakKeyDictionary[Dialect, _Form] = weakref.WeakKeyDictionary()

    def _form(self, conn: Connection) -> _Form:
        if conn.get_execution_options().get("schema_translate_map"):
            raise ValueError("Prepared: a schema_translate_map is applied per call by Core")
        dialect = conn.dialect
        form = self._forms.get(dialect)
        if form is None:
            form = self._forms[dialect] = self._compile(dialect)
        return form

    def _check_defaults(self) -> None:
        """Core fills Python-side column defaults per call; the driver would not: refuse a
        statement that leaves one to Core."""
        statement = self._statement
        if not isinstance(statement, (Insert, Update)):
            return
        given = set(self._columns or ()) | {
            getattr(k, "key", k) for k in getattr(statement, "_values", None) or {}}
        for column in statement.table.c:  # type: ignore[union-attr]
            default = column.default if isinstance(statement, Insert) else column.onupdate
            if default is not None and column.key not in given:
                raise ValueError(f"Prepared: {column.name} has a Python-side default; pass "
                                 "it in `columns`")

    def _compile(self, dialect: Dialect) -> _Form:
        self._check_defaults()
        compiled = self._statement.compile(dialect=dialect, column_keys=self._columns)
        assert isinstance(compiled, SQLCompiler)
        if (any(b.expanding for b in compiled.binds.values()) or compiled.literal_execute_params
                or compiled.post_compile_params):
            raise ValueError("Prepared: expanding (IN) or literal-execute parameters are "
                             "rendered per call")
        if compiled.escaped_bind_names:
            raise ValueError("Prepared: a bind name Core escapes is renamed per call")
        if compiled.positional:
            names = tuple(compiled.positiontup or ())
        else:
            names = tuple(dict.fromkeys(compiled.bind_names[b] for b in compiled.binds.values()))
        binds = {compiled.bind_names[b]: b for b in compiled.binds.values()}
        processors = tuple(binds[n].type.dialect_impl(dialect).bind_processor(dialect)
                           for n in names)
        fixed = {n: binds[n].effective_value for n in names if not binds[n].required}
        keys: tuple[str, ...] | None = None
        results: tuple[Processor, ...] = ()
        if isinstance(self._statement, Select):
            selected = list(self._statement.selected_columns)
            keys = tuple(str(c.key) for c in selected)
            results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None)
                            for c in selected)
        return _Form(compiled.string, names, processors, fixed, compiled.positional, keys,
                     results)

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> DriverResult:
        """Run once with `params` (keyed by bind name, as for `Connection.execute`)."""
        form = self._form(conn)
        values = form.params(params)
        if conn.dialect.name != "sqlite":
            result = conn.exec_driver_sql(form.sql, values)
            if not result.returns_rows:
                return DriverResult([], result.rowcount)
            return DriverResult(_named(form, list(result), tuple(result.keys())),
                                result.rowcount)
        cursor = _on_driver(conn, form.sql, values, many=False)
        if not cursor.description:
            return DriverResult([], cursor.rowcount)
        found = cursor.fetchall()
        return DriverResult(_named(form, found, tuple(d[0] for d in cursor.description)),
                            cursor.rowcount)

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row in one driver call (executemany)."""
        if rows:
            form = self._form(conn)
            values = [form.params(r) for r in rows]
            if conn.dialect.name != "sqlite":
                conn.exec_driver_sql(form.sql, values)  # type: ignore[arg-type]
                return
            _on_driver(conn, form.sql, values, many=True)


def _named(form: _Form, found: Sequence[Sequence[Any]], names: tuple[str, ...]) -> list[Any]:
    """The driver's rows as named tuples: a SELECT's by its columns' keys, each value through
    its column's result processor (as Core converts them); others by the driver's names."""
    if not found:
        return []
    if form.keys is None:
        row = _row_type(names)
        return [row(*r) for r in found]
    row = _row_type(form.keys)
    procs = form.results
    if not any(procs):
        return [row(*r) for r in found]
    return [row(*[v if p is None else p(v) for v, p in zip(r, procs, strict=True)])
            for r in found]


def _on_driver(conn: Connection, sql: str, values: Any, *, many: bool) -> sqlite3.Cursor:
    """Run `sql` on the SQLite driver connection inside `conn`'s transaction (begun first
    if it was not, as Core's autobegin does); a driver error wrapped as Core wraps it."""
    if not conn.in_transaction():
        conn.begin()
    driver = conn.connection.driver_connection
    try:
        if many:
            return driver.executemany(sql, values)  # type: ignore[union-attr,no-any-return]
        return driver.execute(sql, values)  # type: ignore[union-attr,no-any-return]
    except sqlite3.Error as exc:
        invalid = conn.dialect.is_disconnect(exc, driver, None)  # type: ignore[arg-type]
        if invalid:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, values, exc, sqlite3.Error, dialect=conn.dialect,
                                  connection_invalidated=invalid) from exc
