"""Spawn answers stored under their request ids by group commit, not one transaction each.

A spawn's final answer (201 and its body) used to be written in a transaction of its own
after the event was published: a quarter of the spawn API's store time. Now it is queued
here and written by the next write transaction that runs anyway (the next spawn's
reservation takes the queue into its own transaction), or by one flush job queued on the
writer behind the work already waiting: under load, many answers share one commit.

`add` returns a future settled only when the transaction carrying the answer COMMITS, and
the route awaits it before replying: a learner never holds a 201 whose answer is not
stored, so a process killed after the reply leaves nothing pending. A transaction that
rolls back puts its answers back and a new flush is queued; an answer whose own flushes
fail `MAX_TRIES` times fails its future (the route answers 500, the record stays pending
and a retry after FORGE_SPAWN_PENDING_TIMEOUT_S settles it, as before group commit).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from forge.store import idempotency
from forge.store.db import Database

log = logging.getLogger("forge.spawn")

MAX_TRIES = 3  # failed flushes of its own before an answer's future fails


@dataclass
class Queued:
    """One answer waiting to be stored and the future its route awaits."""

    request_id: str
    status: int
    body: dict[str, Any]
    done: Future[None] = field(default_factory=Future)
    failures: int = 0


class AnswerBook:
    """Answers waiting to be stored; thread-safe (request handlers and the writer thread)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._items: list[Queued] = []
        self._queued = False
        self._in_flight = 0  # answers taken by a transaction that has not ended yet

    def add(self, request_id: str, status: int, body: dict[str, Any]) -> Future[None]:
        """Queue an answer; the future is settled when a transaction storing it commits."""
        item = Queued(request_id, status, body)
        with self._lock:
            self._items.append(item)
        self._schedule()
        return item.done

    def _schedule(self) -> None:
        """Make sure one flush job is waiting on the writer while answers are queued."""
        with self._lock:
            if self._queued or not self._items:
                return
            self._queued = True
        try:
            self._db.writer.submit(self._flush_job)
        except RuntimeError:  # the writer is shut down (service stopping): write here
            self._flush_job()

    def take(self) -> list[Queued]:
        """Everything queued, for a transaction that writes it: then `written` once it
        committed, or `put_back` if it rolled back."""
        with self._lock:
            items, self._items = self._items, []
            self._in_flight += len(items)
            return items

    def written(self, items: Sequence[Queued]) -> None:
        """The transaction that took `items` committed: their routes may reply."""
        with self._lock:
            self._in_flight -= len(items)
            self._settled.notify_all()
        for item in items:
            if not item.done.done():
                item.done.set_result(None)

    def put_back(self, items: Sequence[Queued]) -> None:
        """Queue again answers whose transaction rolled back, and a flush to store them."""
        with self._lock:
            self._items[:0] = items
            self._in_flight -= len(items)
            self._settled.notify_all()
        if items:
            self._schedule()

    def drain(self, timeout: float = 10.0) -> bool:
        """Store everything queued and wait for answers other transactions took (blocking;
        shutdown and tests); True when nothing is left unstored."""
        self.flush()
        with self._lock:
            return self._settled.wait_for(lambda: not self._items and not self._in_flight,
                                          timeout)

    def write(self, sess: Session, items: Sequence[Queued]) -> None:
        """Store `items` in the caller's transaction."""
        idempotency.complete_many(sess, [(i.request_id, i.status, i.body) for i in items])

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
        except Exception as exc:
            log.exception("storing %d spawn answers failed", len(items))
            self._failed(items, exc)
            return 0
        self.written(items)
        return len(items)

    def _failed(self, items: Sequence[Queued], exc: Exception) -> None:
        """A flush of `items` failed: retry those with tries left, fail the others."""
        retry: list[Queued] = []
        given_up: list[Queued] = []
        for item in items:
            item.failures += 1
            (retry if item.failures < MAX_TRIES else given_up).append(item)
        with self._lock:
            self._in_flight -= len(given_up)
            self._settled.notify_all()
        for item in given_up:
            if not item.done.done():
                item.done.set_exception(exc)
        self.put_back(retry)

    @property
    def waiting(self) -> int:
        """How many answers are queued (tests, metrics)."""
        with self._lock:
            return len(self._items)
