"""Times read back from the store, made comparable.

Columns are `DateTime(timezone=True)`, but SQLite hands them back without a zone; every
time the platform writes is UTC, so a naive one read back is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def aware(value: datetime) -> datetime:
    """`value` with its zone; a naive time (SQLite's) is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """`value` in ISO 8601 with its zone (``+00:00``), or None: a time a client reads
    without a zone it takes as its own local time, hours off."""
    return aware(value).isoformat() if value is not None else None
