"""A hash-chained, append-only ledger per tenant in the state DB (billing decisions).

Each record's hash covers its stream, sequence, predecessor hash, time, event and data, so a
rewrite or deletion breaks the chain. The unique (stream, seq) key makes concurrent writers
safe: a writer that loses the race retries on the new head.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from forge.store.db import Database
from forge.store.models import AuditRecord
from forge.store.timestamps import aware

GENESIS = "0" * 64
MAX_RETRIES = 20


def stream_for(tenant_id: str) -> str:
    return f"billing:{tenant_id}"


def _hash(stream: str, seq: int, prev: str, at: str, event: str, data: dict[str, Any]) -> str:
    body = json.dumps(
        {"stream": stream, "seq": seq, "prev": prev, "at": at, "event": event, "data": data},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(db: Database, tenant_id: str, event: str, data: dict[str, Any]) -> str:
    """Append one record to the tenant's chain; returns its hash."""
    stream = stream_for(tenant_id)
    for _ in range(MAX_RETRIES):
        try:
            with db.session() as sess:
                head = sess.scalars(
                    select(AuditRecord).where(AuditRecord.stream == stream)
                    .order_by(AuditRecord.seq.desc()).limit(1)
                ).first()
                seq = 1 if head is None else head.seq + 1
                prev = GENESIS if head is None else head.hash
                at = datetime.now(UTC)
                digest = _hash(stream, seq, prev, _stamp(at), event, data)
                sess.add(AuditRecord(stream=stream, seq=seq, prev_hash=prev, hash=digest,
                                     at=at, event=event, data=data))
            return digest
        except IntegrityError:
            continue
    raise RuntimeError(f"billing ledger for {tenant_id}: too much contention")


def verify(db: Database, tenant_id: str) -> list[str]:
    """Problems in the tenant's chain (empty when intact)."""
    stream = stream_for(tenant_id)
    problems: list[str] = []
    prev = GENESIS
    with db.session() as sess:
        rows = sess.scalars(
            select(AuditRecord).where(AuditRecord.stream == stream).order_by(AuditRecord.seq)
        ).all()
        for expected_seq, row in enumerate(rows, start=1):
            if row.seq != expected_seq:
                problems.append(f"seq {expected_seq}: missing (found {row.seq})")
                break
            if row.prev_hash != prev:
                problems.append(f"seq {row.seq}: previous hash does not match")
            at = aware(row.at)
            if _hash(stream, row.seq, row.prev_hash, _stamp(at), row.event, row.data) != row.hash:
                problems.append(f"seq {row.seq}: record was altered")
            prev = row.hash
    return problems


def records(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's chain as plain dicts, oldest first."""
    with db.session() as sess:
        rows = sess.scalars(
            select(AuditRecord).where(AuditRecord.stream == stream_for(tenant_id))
            .order_by(AuditRecord.seq)
        ).all()
        return [{"seq": r.seq, "event": r.event, "data": r.data, "hash": r.hash} for r in rows]
