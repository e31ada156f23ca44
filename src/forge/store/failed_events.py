"""Failed-event store: events a consumer gave up on, kept with their error for reprocessing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from forge.store.db import Database
from forge.store.models import FailedEvent
from forge.store.row_locks import lock_name


def record_failed_event(
    db: Database, *, consumer: str, subject: str, msg_id: str | None, payload: str,
    error: str, scenario_id: str | None = None, attempts: int = 1,
) -> int:
    """Keep the event; the same (consumer, msg_id) updates the existing record."""
    now = datetime.now(UTC)
    with db.session() as sess:
        existing = None
        if msg_id:
            # Two replicas giving up on one redelivered message at once: the second waits
            # and adds its attempts to the first's record (PostgreSQL; SQLite serialises).
            lock_name(sess.connection(), f"failed-event/{consumer}/{msg_id}")
            existing = sess.scalars(
                select(FailedEvent).where(FailedEvent.consumer == consumer,
                                          FailedEvent.msg_id == msg_id,
                                          FailedEvent.status == "failed")
            ).first()
        if existing is not None:
            existing.error, existing.last_failed_at = error[:4000], now
            existing.attempts += attempts
            return existing.id
        row = FailedEvent(consumer=consumer, subject=subject, msg_id=msg_id,
                          scenario_id=scenario_id, payload=payload, error=error[:4000],
                          attempts=attempts, status="failed", first_failed_at=now,
                          last_failed_at=now, reprocessed_at=None)
        sess.add(row)
        sess.flush()
        return row.id


def list_failed_events(
    db: Database, consumer: str | None = None, status: str | None = "failed"
) -> list[FailedEvent]:
    """Failed events, oldest first."""
    with db.session() as sess:
        query = select(FailedEvent).order_by(FailedEvent.id)
        if consumer:
            query = query.where(FailedEvent.consumer == consumer)
        if status:
            query = query.where(FailedEvent.status == status)
        rows = list(sess.scalars(query))
        sess.expunge_all()
        return rows


def has_failed_event(db: Database, consumer: str, scenario_id: str) -> bool:
    """Whether ``consumer`` gave up on an event of ``scenario_id`` not reprocessed since."""
    with db.read() as sess:
        return sess.scalars(select(FailedEvent.id).where(
            FailedEvent.consumer == consumer, FailedEvent.scenario_id == scenario_id,
            FailedEvent.status == "failed").limit(1)).first() is not None


def mark_reprocessed(db: Database, event_id: int) -> None:
    """Record that a failed event was processed successfully on replay."""
    with db.session() as sess:
        row = sess.get(FailedEvent, event_id)
        if row is not None:
            row.status = "reprocessed"
            row.reprocessed_at = datetime.now(UTC)
