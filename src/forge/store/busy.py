"""Whether a store error is the store being busy or out of room (worth waiting for) or a real
failure.

A caller that pauses its work on a busy store (a lock held by another process, a deadlock
victim, a serialization conflict, the database unreachable for a moment) must not pause for
ever on an error retrying cannot fix (`near "RETURNING": syntax error`, `attempt to write a
readonly database`, `disk I/O error`, a missing table): those go its normal fault path.
"""

from __future__ import annotations

import errno

from sqlalchemy.exc import DBAPIError, OperationalError

# PostgreSQL SQLSTATEs of a busy store: lock_not_available (lock_timeout ran out),
# deadlock_detected, serialization_failure; class 08 is a connection exception and 57P0x
# a server shutting down or restarting; read_only_sql_transaction (25006) a server that
# takes no writes for now (a standby during a failover, a database set read-only).
_BUSY_SQLSTATES = frozenset({"55P03", "40P01", "40001", "57P01", "57P02", "57P03", "25006"})
# SQLite's messages for a lock held by another connection (and the store's own flock
# timeout in forge.store.file_lock, which raises "database is locked").
_BUSY_SQLITE = ("database is locked", "database table is locked", "database is busy")


def store_busy(exc: DBAPIError) -> bool:
    """True when `exc` says the store is busy or unreachable for now, not broken."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _BUSY_SQLSTATES or sqlstate.startswith("08")
    if hasattr(exc.orig, "sqlstate") and isinstance(exc, OperationalError):
        # psycopg's own OperationalError, with no SQLSTATE from a server: no server answered
        # (connection refused, a restart under way, the host unreachable) or the connection
        # broke. SQLAlchemy does not mark a failed *new* connection as invalidated, so a
        # PostgreSQL that was down was a 500 (and a paused grading an audit failure).
        return True
    message = str(exc.orig).lower()
    return any(busy in message for busy in _BUSY_SQLITE)


# SQLite's message when the database's disk (or its size limit) is full; PostgreSQL's
# class 53 is "insufficient resources" (disk_full, out_of_memory, too_many_connections).
_FULL_SQLITE = ("database or disk is full",)


def store_out_of_room(exc: DBAPIError) -> bool:
    """True when `exc` says the store has no room for now (a full disk, no memory, every
    connection taken): not a fault of the request, and it passes once room is made."""
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith("53")
    message = str(exc.orig).lower()
    return any(full in message for full in _FULL_SQLITE)


_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_out_of_room(exc: OSError) -> bool:
    """True when a file write failed for want of room (a full disk or a spent quota): it
    passes once room is made, so it is never the outcome of the work that hit it."""
    return exc.errno in _FULL_ERRNOS


# SQLite's message for a write to a file it opened read-only (the file made read-only or
# immutable, its filesystem remounted read-only).
_READ_ONLY_SQLITE = ("attempt to write a readonly database",)


def store_read_only(exc: DBAPIError) -> bool:
    """True when `exc` says the SQLite store takes no writes for now (what PostgreSQL's
    25006 says, which `store_busy` counts): the operator makes the file writable again and
    the service reopens it (`Database`). Not counted by `store_busy`: work that pauses on a
    busy store does not wait on this one."""
    message = str(exc.orig).lower()
    return any(text in message for text in _READ_ONLY_SQLITE)


def store_error_text(exc: DBAPIError) -> str:
    """The database's own error text (no SQL, no parameters, no connection URL)."""
    return f"{type(exc.orig).__name__}: {exc.orig}" if exc.orig is not None else str(exc)


__all__ = ["disk_out_of_room", "store_busy", "store_error_text", "store_out_of_room",
           "store_read_only"]
