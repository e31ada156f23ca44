"""Spawn answers stored under their request ids by group commit, not one transaction each.

A spawn's final answer (201 and its body) used to be written in a transaction of its own
after the event was published: a quarter of the spawn API's store time. Now it is queued
here and written by the next write transaction that runs anyway (the next spawn's
reservation takes the queue into its own transaction), or by one flush job queued on the
writer behind the work already waiting: under load, many answers share one commit; alone,
the answer is stored a moment after the reply.

What a caller sees meanwhile: the same request id asked again is still `409
request_in_progress` (Retry-After 1) on another replica for those few milliseconds; on this
replica the retry's own reservation stores the queued answer first, so it replays at once.
A process killed before its queue is written leaves the record pending, exactly as a kill
between the publish and the old separate write did; a retry after
FORGE_SPAWN_PENDING_TIMEOUT_S settles it (`spawning._resolve_stale`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from forge.store import idempotency
from forge.store.db import Database
from forge.store.idempotency import Answer

log = logging.getLogger("forge.spawn")


class AnswerBook:
    """Answers waiting to be stored; thread-safe (request handlers and the writer thread)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._items: list[Answer] = []
        self._queued = False
        self._in_flight = 0  # answers taken by a transaction that has not ended yet

    def add(self, request_id: str, status: int, body: dict[str, Any]) -> None:
        """Queue an answer; make sure one flush job is waiting on the writer."""
        with self._lock:
            self._items.append((request_id, status, body))
            if self._queued:
                return
            self._queued = True
        try:
            self._db.writer.submit(self._flush_job)
        except RuntimeError:  # the writer is shut down (service stopping): write here
            self._flush_job()

    def take(self) -> list[Answer]:
        """Everything queued, for a transaction that writes it: then `written` once it
        committed, or `put_back` if it rolled back."""
        with self._lock:
            items, self._items = self._items, []
            self._in_flight += len(items)
            return items

    def written(self, items: Sequence[Answer]) -> None:
        """The transaction that took `items` committed."""
        with self._lock:
            self._in_flight -= len(items)
            self._settled.notify_all()

    def put_back(self, items: Sequence[Answer]) -> None:
        """Queue again answers whose transaction rolled back."""
        with self._lock:
            self._items[:0] = items
            self._in_flight -= len(items)
            self._settled.notify_all()

    def drain(self, timeout: float = 10.0) -> bool:
        """Store everything queued and wait for answers other transactions took (blocking;
        shutdown and tests); True when nothing is left unstored."""
        self.flush()
        with self._lock:
            return self._settled.wait_for(lambda: not self._items and not self._in_flight,
                                          timeout)

    def write(self, sess: Session, items: Sequence[Answer]) -> None:
        """Store `items` in the caller's transaction."""
        idempotency.complete_many(sess, items)

    def _flush_job(self) -> None:
        with self._lock:
            self._queued = False
        self.flush()

    def flush(self) -> int:
        """Store every queued answer now in one transaction (blocking); how many."""
        items = self.take()
        if not items:
            return 0
        try:
            with self._db.session() as sess:
                self.write(sess, items)
        except Exception:
            self.put_back(items)
            log.exception("storing %d spawn answers failed; kept for the next write", len(items))
            return 0
        self.written(items)
        return len(items)

    @property
    def waiting(self) -> int:
        """How many answers are queued (tests, metrics)."""
        with self._lock:
            return len(self._items)
