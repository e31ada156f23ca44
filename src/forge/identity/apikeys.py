"""Operator-issued learner API keys: `fgk_<key_id>_<secret>`; only a hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Table, bindparam, select

from forge.identity.names import valid_id
from forge.store.db import Database
from forge.store.models import ApiKey
from forge.store.prepared import Prepared
from forge.store.row_locks import lock_name

_KEY = re.compile(r"^fgk_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})\Z")
_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]
# Every authenticated API request runs this: a Core statement compiled once and run through
# the driver (forge.store.prepared; the ORM's identity-map load cost twice as much).
_LIVE_KEY = Prepared(select(_KEYS.c.key_id, _KEYS.c.key_sha256, _KEYS.c.tenant_id,
                            _KEYS.c.subject).where(_KEYS.c.key_id == bindparam("key_id"),
                                                   _KEYS.c.revoked_at.is_(None)))


@dataclass(frozen=True)
class VerifiedKey:
    """Whose live key was presented."""

    key_id: str
    tenant_id: str
    subject: str


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the plaintext is shown once and never stored."""

    key_id: str
    tenant_id: str
    subject: str
    plaintext: str = field(repr=False)  # never in a log line or an error's repr


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class _Fresh:
    key_id: str
    secret: str = field(repr=False)

    @property
    def plaintext(self) -> str:
        return f"fgk_{self.key_id}_{self.secret}"


def _new_key(tenant_id: str, subject: str) -> _Fresh:
    if not valid_id(tenant_id):
        raise ValueError("tenant_id: 1-128 chars of letters, digits and . _ @ : -")
    if not valid_id(subject):
        raise ValueError("subject: 1-128 chars of letters, digits and . _ @ : -")
    return _Fresh(secrets.token_hex(8), secrets.token_urlsafe(32))


def create_api_key(db: Database, tenant_id: str, subject: str) -> IssuedKey:
    """Issue a key for one learner of one tenant."""
    fresh = _new_key(tenant_id, subject)
    with db.session() as sess:
        sess.add(ApiKey(key_id=fresh.key_id, key_sha256=_digest(fresh.secret),
                        tenant_id=tenant_id, subject=subject, created_at=datetime.now(UTC),
                        revoked_at=None))
    return IssuedKey(fresh.key_id, tenant_id, subject, fresh.plaintext)


def replace_api_key(db: Database, tenant_id: str, subject: str) -> IssuedKey:
    """Issue a new key for one learner and revoke every other live key of theirs, in one
    transaction: the learner's own "new sign-in key" (the old one stops working at once)."""
    issued = _new_key(tenant_id, subject)
    now = datetime.now(UTC)
    with db.session() as sess:
        # Two "new key" submits at once (two tabs, two replicas): on PostgreSQL both read the
        # same live keys and each left its own new key live; the second now waits for the
        # first and revokes its key.
        lock_name(sess.connection(), f"apikey/{tenant_id}/{subject}")
        live = select(ApiKey).where(ApiKey.tenant_id == tenant_id, ApiKey.subject == subject,
                                    ApiKey.revoked_at.is_(None))
        for record in sess.scalars(live):
            record.revoked_at = now
        sess.add(ApiKey(key_id=issued.key_id, key_sha256=_digest(issued.secret),
                        tenant_id=tenant_id, subject=subject, created_at=now, revoked_at=None))
    return IssuedKey(issued.key_id, tenant_id, subject, issued.plaintext)


def verify_api_key(db: Database, presented: str) -> VerifiedKey | None:
    """Whose live key `presented` is, else None (constant-time on the secret)."""
    match = _KEY.match(presented or "")
    if not match:
        return None
    key_id, secret = match.groups()
    with db.read() as sess:
        row = _LIVE_KEY.execute(sess.connection(), {"key_id": key_id}).first()
    if row is None or not hmac.compare_digest(row.key_sha256, _digest(secret)):
        return None
    return VerifiedKey(row.key_id, row.tenant_id, row.subject)


def revoke_api_key(db: Database, key_id: str) -> VerifiedKey | None:
    """Revoke a key; whose it was, or None when no live key has that id."""
    with db.session() as sess:
        record = sess.get(ApiKey, key_id)
        if record is None or record.revoked_at is not None:
            return None
        record.revoked_at = datetime.now(UTC)
        return VerifiedKey(record.key_id, record.tenant_id, record.subject)


def list_api_keys(db: Database, tenant_id: str | None = None) -> list[ApiKey]:
    """Keys (hash included, never the secret), optionally of one tenant."""
    with db.read() as sess:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if tenant_id:
            query = query.where(ApiKey.tenant_id == tenant_id)
        rows = list(sess.scalars(query))
        sess.expunge_all()
        return rows
