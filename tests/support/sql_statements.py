"""The SQL statements a store runs while a block runs, as Core's cursor events see them:
what tests count to show a read takes a fixed number of statements whatever the class
size, or that a statement went to the driver itself (Core never sees those)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from forge.store.db import Database


@contextmanager
def sql_statements(db: Database) -> Iterator[list[str]]:
    """The statements `db`'s write and read engines run inside the block, in order."""
    seen: list[str] = []

    def note(*args: object) -> None:
        seen.append(str(args[2]))

    engines = {db.engine, getattr(db, "_read_engine", None) or db.engine}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", note)
