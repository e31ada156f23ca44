"""Idempotency records for spawn requests: same request id within 24 h → same answer.

Plain SQL statements (no ORM unit of work): these run inside the spawn hot path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from forge.store.db import Database
from forge.store.models import IdempotencyRecord
from forge.store.prepared import Prepared
from forge.store.timestamps import aware

TTL = timedelta(hours=24)
# A request still pending after this long was cut off (its process died): a retry resolves
# it. The default; operators set it with FORGE_SPAWN_PENDING_TIMEOUT_S.
PENDING_TIMEOUT = timedelta(seconds=30)
PENDING = 0
RECORDS: Table = IdempotencyRecord.__table__  # type: ignore[assignment]
_FIND = select(RECORDS.c.fingerprint, RECORDS.c.status_code, RECORDS.c.response,
               RECORDS.c.expires_at, RECORDS.c.created_at).where(
                   RECORDS.c.request_id == bindparam("rid"))
# A spawn asks for its caller's key and the bare id an older release kept (see `find_both`):
# one statement for both, inside the write transaction every spawn queues for.
_FIND_BOTH = Prepared(select(RECORDS.c.request_id, RECORDS.c.fingerprint, RECORDS.c.status_code,
                    RECORDS.c.response, RECORDS.c.expires_at, RECORDS.c.created_at).where(
                        or_(RECORDS.c.request_id == bindparam("rid"),
                            RECORDS.c.request_id == bindparam("legacy"))))
_RESERVE = Prepared(insert(RECORDS), [c.name for c in RECORDS.c])
# Only a pending record takes an answer: a late write never overwrites a newer record (one
# a stale-request retry settled, or one purged and reserved again).
_COMPLETE = Prepared(update(RECORDS).where(RECORDS.c.request_id == bindparam("rid"),
                                           RECORDS.c.status_code == PENDING).values(
    status_code=bindparam("code"), response=bindparam("body")))
Answer = tuple[str, int, dict[str, Any]]  # request id, status code, response body


@dataclass(frozen=True)
class Stored:
    """What is kept for a request id."""

    fingerprint: str
    status_code: int
    response: dict[str, Any]
    created_at: datetime | None = None

    def stale(self, now: datetime, timeout: timedelta = PENDING_TIMEOUT) -> bool:
        """Still pending `timeout` after it began: longer than any live request takes."""
        return (self.status_code == PENDING and self.created_at is not None
                and aware(self.created_at) + timeout <= now)


def fingerprint(*parts: str) -> str:
    """A digest of what makes two requests "the same" (caller and body)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def record_key(tenant_id: str, subject: str, request_id: str) -> str:
    """The key a caller's request id is kept under: the id within that caller's own space.

    Keyed by the bare id, one caller's id was another's: reusing an id someone else had
    used within 24 h answered 409 (an oracle of other tenants' ids) and an id taken first
    by another tenant locked its owner out of it. A sha256 (64 hex) fits the column."""
    return fingerprint("key", tenant_id, subject, request_id)


def find(sess: Session, request_id: str, now: datetime) -> Stored | None:
    """The live record for `request_id`; an expired one is deleted and None returned."""
    conn = sess.connection()
    row = conn.execute(_FIND, {"rid": request_id}).first()
    if row is None:
        return None
    if aware(row.expires_at) <= now:
        conn.execute(delete(RECORDS).where(RECORDS.c.request_id == request_id))
        return None
    return Stored(row.fingerprint, row.status_code, dict(row.response or {}), row.created_at)


def find_both(sess: Session, request_id: str, legacy: str, now: datetime
              ) -> tuple[Stored | None, Stored | None]:
    """What `find(request_id)` and then, only when that found nothing, `find(legacy)` return
    (None for a lookup not made), expired records deleted alike: in one round trip."""
    conn = sess.connection()
    rows = {row.request_id: row
            for row in _FIND_BOTH.execute(conn, {"rid": request_id, "legacy": legacy})}

    def live(rid: str) -> Stored | None:
        row = rows.get(rid)
        if row is None:
            return None
        if aware(row.expires_at) <= now:
            conn.execute(delete(RECORDS).where(RECORDS.c.request_id == rid))
            return None
        return Stored(row.fingerprint, row.status_code, dict(row.response or {}),
                      row.created_at)

    first = live(request_id)
    return (first, None) if first is not None else (None, live(legacy))


def reserve(sess: Session, request_id: str, digest: str, now: datetime) -> None:
    """Claim `request_id` while the request is in flight (status PENDING)."""
    _RESERVE.execute(sess.connection(), {
        "request_id": request_id, "fingerprint": digest, "status_code": PENDING,
        "response": {}, "created_at": now, "expires_at": now + TTL,
    })


def complete(db: Database, request_id: str, status_code: int, response: dict[str, Any]) -> None:
    """Store the final answer."""
    with db.session() as sess:
        sess.connection().execute(
            update(RECORDS).where(RECORDS.c.request_id == request_id)
            .values(status_code=status_code, response=response)
        )


def complete_many(sess: Session, answers: Sequence[Answer]) -> None:
    """Store several final answers in the caller's transaction (one statement)."""
    if answers:
        _COMPLETE.execute_many(sess.connection(), [{"rid": rid, "code": code, "body": body}
                                                    for rid, code, body in answers])


def purge(db: Database, now: datetime) -> int:
    """Delete expired records (housekeeping); pending ones are resolved by their retry."""
    with db.session() as sess:
        result = sess.connection().execute(
            delete(RECORDS).where(RECORDS.c.expires_at <= now,
                                  RECORDS.c.status_code != PENDING))
        return int(getattr(result, "rowcount", 0) or 0)


def discard(sess: Session, request_id: str) -> None:
    """Forget a reservation of a request that failed (so a retry starts afresh)."""
    sess.connection().execute(delete(RECORDS).where(RECORDS.c.request_id == request_id))
