"""Replaying stored failed completion events through the same scoring step.

Used by `POST /v1/admin/failed-events/reprocess` and `forge completions reprocess`. Replay
is idempotent: scoring an already-scored completion is a no-op and the finalized event is
de-duplicated by its msg_id, so after the cause is fixed there is exactly one verdict. An
event is marked reprocessed only once its verdict exists and the finalized event was
published; otherwise it stays failed with the new error, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, select

from forge.audit.log import AuditError, global_log
from forge.bus import BusUnavailable
from forge.bus.contracts import ContractError, ScenarioCompletedV1, decode_as
from forge.services.scoreboard.event_intake import CompletionRefused
from forge.services.scoreboard.scoring import CONSUMER, Finalized, Scorer
from forge.services.scoreboard.scoring_errors import ScoringPaused
from forge.store.db import Database
from forge.store.failed_events import mark_reprocessed
from forge.store.models import FailedEvent
from forge.store.timestamps import iso

log = logging.getLogger("forge.scoreboard.reprocess")

Publish = Callable[[Finalized], Awaitable[None]]


@dataclass(frozen=True)
class ReprocessOutcome:
    """What happened to one stored event."""

    id: int
    scenario_id: str | None
    status: str  # reprocessed | already_reprocessed | refused | paused | failed | not_found
    message: str

    @property
    def ok(self) -> bool:
        """True when the event now has its verdict (or already had it)."""
        return self.status in ("reprocessed", "already_reprocessed")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "ok": self.ok}


def failed_event_dict(row: FailedEvent) -> dict[str, Any]:
    """An operator's view of a stored event (the payload, which holds tokens, is left out)."""
    return {"id": row.id, "consumer": row.consumer, "subject": row.subject,
            "msg_id": row.msg_id, "scenario_id": row.scenario_id, "error": row.error,
            "attempts": row.attempts, "status": row.status,
            "first_failed_at": iso(row.first_failed_at), "last_failed_at": iso(row.last_failed_at),
            "reprocessed_at": iso(row.reprocessed_at), "payload_bytes": len(row.payload)}


def _events(db: Database, query: Select[FailedEvent]) -> list[FailedEvent]:
    """The rows of `query`, detached from their session."""
    with db.read() as sess:
        rows = list(sess.scalars(query))
        sess.expunge_all()
        return rows


def _of_consumer(status: str | None) -> Select[FailedEvent]:
    """Stored events of the scoreboard's consumer with `status` (None: all)."""
    query = select(FailedEvent).where(FailedEvent.consumer == CONSUMER)
    return query if status is None else query.where(FailedEvent.status == status)


def list_events(db: Database, status: str | None = "failed", *, after_id: int = 0,
                limit: int | None = None) -> list[FailedEvent]:
    """Stored events of the scoreboard's consumer, oldest first (status None: all), with
    an id above `after_id`, at most `limit` of them (None: every one)."""
    return _events(db, _of_consumer(status).where(FailedEvent.id > after_id)
                   .order_by(FailedEvent.id).limit(limit))


def list_recent_events(db: Database, status: str | None, *, before_id: int | None = None,
                       limit: int) -> list[FailedEvent]:
    """Stored events of the scoreboard's consumer, newest first (status None: all), with an
    id below `before_id` (None: from the newest), at most `limit` of them."""
    query = _of_consumer(status)
    if before_id is not None:
        query = query.where(FailedEvent.id < before_id)
    return _events(db, query.order_by(FailedEvent.id.desc()).limit(limit))


def list_last_reprocessed(db: Database, limit: int) -> list[FailedEvent]:
    """The `limit` events of the scoreboard's consumer reprocessed most recently, latest
    first (by when they were reprocessed: an old failure mended today comes first)."""
    return _events(db, _of_consumer("reprocessed")
                   .where(FailedEvent.reprocessed_at.is_not(None))
                   .order_by(FailedEvent.reprocessed_at.desc(), FailedEvent.id.desc())
                   .limit(limit))


def _get(db: Database, event_id: int) -> FailedEvent | None:
    with db.read() as sess:
        row = sess.get(FailedEvent, event_id)
        if row is None or row.consumer != CONSUMER:
            return None
        sess.expunge(row)
        return row


def _note_failure(db: Database, event_id: int, error: str) -> None:
    with db.session() as sess:
        row = sess.get(FailedEvent, event_id)
        if row is not None:
            row.error = error[:4000]
            row.attempts += 1
            row.last_failed_at = datetime.now(UTC)


def _audit(scorer: Scorer, outcome: ReprocessOutcome) -> None:
    try:
        signer = scorer.keyring.current_or_none()
        global_log(scorer.storage_root, signer=signer).append(
            "completion.reprocess", {"failed_event_id": outcome.id,
                                     "scenario_id": outcome.scenario_id,
                                     "status": outcome.status,
                                     "message": outcome.message[:500]})
    except (AuditError, OSError) as exc:
        log.error("audit of reprocessing %d failed: %s", outcome.id, exc)


async def _one(scorer: Scorer, db: Database, publish: Publish, row: FailedEvent
               ) -> ReprocessOutcome:
    sid = row.scenario_id
    if row.status == "reprocessed":
        return ReprocessOutcome(row.id, sid, "already_reprocessed",
                                "already reprocessed; its verdict exists")
    try:
        completed = decode_as(ScenarioCompletedV1, row.subject, row.payload.encode("utf-8"))
        pack = await scorer.fetch_pack(completed)
        finalized = await asyncio.to_thread(scorer.score, completed, pack)
    except (CompletionRefused, ContractError) as exc:
        status, message = "refused", str(exc)
    except ScoringPaused as exc:
        return ReprocessOutcome(row.id, sid, "paused", f"scoring paused: {exc}")
    except Exception as exc:  # every failure is kept with its reason
        status, message = "failed", f"{type(exc).__name__}: {exc}"
    else:
        try:
            await publish(finalized)
        except BusUnavailable as exc:
            message = f"verdict written; finalized event not published: {exc}"
            await asyncio.to_thread(_note_failure, db, row.id, message)
            return ReprocessOutcome(row.id, finalized.scenario_id, "failed", message)
        await asyncio.to_thread(mark_reprocessed, db, row.id)
        verb = "verdict written" if finalized.created else "verdict already existed"
        return ReprocessOutcome(row.id, finalized.scenario_id, "reprocessed",
                                f"{verb}; score {finalized.payload['score']}")
    await asyncio.to_thread(_note_failure, db, row.id, message)
    return ReprocessOutcome(row.id, sid, status, message)


async def reprocess(scorer: Scorer, db: Database, publish: Publish, *,
                    event_id: int | None = None, all_failed: bool = False
                    ) -> list[ReprocessOutcome]:
    """Reprocess one stored event by id, or every event still marked failed."""
    if (event_id is None) == (not all_failed):
        raise ValueError("id/all: give exactly one of an event id or all")
    if event_id is not None:
        row = await asyncio.to_thread(_get, db, event_id)
        rows = [row] if row is not None else []
        if not rows:
            return [ReprocessOutcome(event_id, None, "not_found", "no such failed event")]
    else:
        rows = await asyncio.to_thread(list_events, db, "failed")
    outcomes: list[ReprocessOutcome] = []
    for row in rows:
        outcome = await _one(scorer, db, publish, row)
        await asyncio.to_thread(_audit, scorer, outcome)
        outcomes.append(outcome)
    return outcomes
