"""Transaction-scoped locks on a name, for check-then-write sequences with no key to lose on.

On PostgreSQL (read committed) two transactions can both read "nothing there yet" and both
write; `lock_name` makes the second wait until the first commits or rolls back
(`pg_advisory_xact_lock` on the name's hash). SQLite needs nothing: every write transaction
starts with BEGIN IMMEDIATE, so writers already run one at a time.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

_LOCK = text("SELECT pg_advisory_xact_lock(hashtext(:k))")


def lock_name(conn: Connection, name: str) -> None:
    """Hold a lock on `name` until the transaction of `conn` ends (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"k": name})
