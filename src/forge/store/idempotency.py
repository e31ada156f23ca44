"""Idempotency records for spawn requests: same request id within 24 h → same answer."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from forge.store.db import Database
from forge.store.models import IdempotencyRecord

TTL = timedelta(hours=24)
PENDING = 0


def fingerprint(*parts: str) -> str:
    """A digest of what makes two requests "the same" (caller and body)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def find(sess: Session, request_id: str, now: datetime) -> IdempotencyRecord | None:
    """The live record for `request_id`; an expired one is deleted and None returned."""
    record = sess.get(IdempotencyRecord, request_id)
    if record is not None and _aware(record.expires_at) <= now:
        sess.delete(record)
        sess.flush()
        return None
    return record


def reserve(sess: Session, request_id: str, digest: str, now: datetime) -> None:
    """Claim `request_id` while the request is in flight (status PENDING)."""
    sess.add(IdempotencyRecord(request_id=request_id, fingerprint=digest, status_code=PENDING,
                               response={}, created_at=now, expires_at=now + TTL))


def complete(db: Database, request_id: str, status_code: int, response: dict[str, Any]) -> None:
    """Store the final answer."""
    with db.session() as sess:
        record = sess.get(IdempotencyRecord, request_id)
        if record is not None:
            record.status_code = status_code
            record.response = response


def discard(sess: Session, request_id: str) -> None:
    """Forget a reservation of a request that failed (so a retry starts afresh)."""
    record = sess.get(IdempotencyRecord, request_id)
    if record is not None:
        sess.delete(record)
