"""Times read back from the store, made comparable.

Columns are `DateTime(timezone=True)`, but SQLite hands them back without a zone; every
time the platform writes is UTC, so a naive one read back is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def aware(value: datetime) -> datetime:
    """`value` with its zone; a naive time (SQLite's) is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
