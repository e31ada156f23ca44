"""A spawn's 201 is sent only once its answer is stored (group commit waits for COMMIT).

Before, the answer was queued and written after the reply: a replica killed between the
two left the request pending, so the learner's retry got 409 and later a second lab while
she held a 201 for the first.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from forge.entitlements.grants import grant
from forge.identity.apikeys import create_api_key
from forge.services.spawn.answers import AnswerBook
from forge.store import idempotency
from forge.store.db import Database
from forge.store.migrate import upgrade
from forge.store.models import IdempotencyRecord

from .conftest import SpawnEnv


class _SlowBook(AnswerBook):
    """Flushes hold back until the test has looked at the store (or 0.5 s passed, which is
    what happens when the reply itself waits for the flush)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.checked = threading.Event()

    def _flush_job(self) -> None:
        self.checked.wait(0.5)
        super()._flush_job()


def test_answer_is_stored_when_the_201_arrives(spawn_env: SpawnEnv) -> None:
    db = spawn_env.state.ctx.db
    book = spawn_env.state.answers = _SlowBook(db)
    grant(db, "acme", "PRO")
    key = create_api_key(db, "acme", "alice").plaintext
    with spawn_env.client() as client:
        resp = client.post("/v1/spawn", json={"track": "netplus", "request_id": "stored-0001"},
                           headers={"x-api-key": key})
        with db.session() as sess:
            record = sess.get(IdempotencyRecord,
                              idempotency.record_key("acme", "alice", "stored-0001"))
            stored = None if record is None else (record.status_code, dict(record.response))
        book.checked.set()
    assert resp.status_code == 201, resp.text
    assert stored == (201, resp.json())


def test_a_late_answer_never_overwrites_a_settled_record(db_url: str) -> None:
    """An answer written after its record was settled otherwise (a retry resolved it) or
    reserved again leaves the newer record as it is."""
    upgrade(db_url)
    db = Database(db_url)
    now = datetime.now(UTC)
    with db.session() as sess:
        idempotency.reserve(sess, "late-0001", "digest", now)
        idempotency.complete_many(sess, [("late-0001", 201, {"scenario_id": "B"})])
    with db.session() as sess:
        idempotency.complete_many(sess, [("late-0001", 201, {"scenario_id": "A"})])
    with db.session() as sess:
        found = idempotency.find(sess, "late-0001", now)
    db.dispose()
    assert found is not None and found.response == {"scenario_id": "B"}
