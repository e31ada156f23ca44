"""A request signed in by a session cookie reads the store once, whether or not the session
was opened with a sign-in key (the lab page polls its scenario every few hundred ms).

Before: a session opened with a key ran a second statement on every request (whether the
key is still live) after the signed-out check, two round trips on PostgreSQL where any
other session took one. Now both are asked in one statement; what it answers is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event

from forge.config.settings import Settings, load_settings
from forge.identity.apikeys import create_api_key, replace_api_key
from forge.identity.caller import revoke_session, session_claims, session_revoked
from forge.services.spawn.web.security import learner_session
from forge.store import upgrade
from forge.store.db import Database


@contextmanager
def _driver_statements(db: Database) -> Iterator[list[str]]:
    """Every statement SQLite itself runs on connections opened inside the block (the
    session reads go to the driver, which Core's cursor events never see)."""
    seen: list[str] = []
    engines = {db.engine, getattr(db, "_read_engine", None) or db.engine}

    def trace(dbapi: object, _record: object) -> None:
        dbapi.set_trace_callback(seen.append)  # type: ignore[attr-defined]

    for engine in engines:
        engine.dispose()
        event.listen(engine, "connect", trace)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "connect", trace)


@contextmanager
def _store(url: str, root: Path) -> Iterator[tuple[Settings, Database]]:
    upgrade(url)
    db = Database(url)
    try:
        yield load_settings({"FORGE_ENV": "dev", "STORAGE_ROOT": str(root)}), db
    finally:
        db.dispose()


@pytest.fixture
def store(db_url: str, tmp_path: Path) -> Iterator[tuple[Settings, Database]]:
    with _store(db_url, tmp_path) as opened:
        yield opened


def _claims(settings: Settings, token: str) -> dict[str, object]:
    claims = session_claims(settings, token)
    assert claims is not None
    return claims


@pytest.mark.usefixtures("sqlite_only_store")  # counted by SQLite's own trace callback
def test_a_key_session_is_checked_in_one_statement(tmp_path: Path) -> None:
    with _store(f"sqlite:///{tmp_path / 'forge.db'}", tmp_path) as (settings, db):
        key = create_api_key(db, "acme", "amy")
        for key_id in (None, key.key_id):
            claims = _claims(settings, learner_session(settings, "acme", "amy", key_id))
            with _driver_statements(db) as seen:
                assert not session_revoked(db, claims)
            selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
            assert len(selects) == 1, (key_id, seen)


def test_a_key_session_ends_with_its_key_or_its_sign_out(
        store: tuple[Settings, Database]) -> None:
    settings, db = store
    key = create_api_key(db, "acme", "amy")
    other = create_api_key(db, "acme", "bob")
    amy = _claims(settings, learner_session(settings, "acme", "amy", key.key_id))
    stolen = _claims(settings, learner_session(settings, "acme", "amy", other.key_id))
    plain = _claims(settings, learner_session(settings, "acme", "amy"))
    assert not session_revoked(db, amy)
    assert session_revoked(db, stolen)  # bob's key never opens amy's session
    assert session_revoked(db, {**amy, "akid": 7})
    revoke_session(db, amy)
    assert session_revoked(db, amy)
    fresh = _claims(settings, learner_session(settings, "acme", "amy", key.key_id))
    assert not session_revoked(db, fresh)
    replace_api_key(db, "acme", "amy")
    assert session_revoked(db, fresh)
    assert not session_revoked(db, plain)  # a session opened without a key lives on
