"""Issued credentials: one per scenario, each with a unique place in the revocation list.

The store only records outcomes: `record_issued` returns None when the status index is
already taken (the caller picks another), the existing row when the scenario already has a
credential (two downloads at once), and `revoke` is idempotent.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from forge.store.db import Database
from forge.store.models import IssuedCredential

MAX_REASON_CHARS = 200


def find_for_scenario(db: Database, scenario_id: str) -> IssuedCredential | None:
    """The credential issued for `scenario_id`, if any."""
    with db.read() as sess:
        row = sess.scalars(select(IssuedCredential).where(
            IssuedCredential.scenario_id == scenario_id)).first()
        if row is not None:
            sess.expunge(row)
        return row


def get_credential(db: Database, credential_id: str) -> IssuedCredential | None:
    """One credential by id (`urn:uuid:…`)."""
    with db.read() as sess:
        row = sess.get(IssuedCredential, credential_id)
        if row is not None:
            sess.expunge(row)
        return row


def record_issued(db: Database, row: IssuedCredential) -> IssuedCredential | None:
    """Store a new credential; the scenario's existing one if it already has one; None when
    its status index is taken by another credential."""
    try:
        with db.session() as sess:
            sess.add(row)
    except IntegrityError:
        return find_for_scenario(db, row.scenario_id)
    return row


def revoke_credential(db: Database, credential_id: str, reason: str) -> IssuedCredential | None:
    """Mark a credential revoked (kept as first revoked when it already is); None: unknown."""
    with db.session() as sess:
        row = sess.get(IssuedCredential, credential_id)
        if row is None:
            return None
        if row.revoked_at is None:
            row.revoked_at = datetime.now(UTC)
            row.revoke_reason = reason[:MAX_REASON_CHARS]
        sess.flush()
        sess.expunge(row)
        return row


def signed_by(db: Database, key_id: str) -> list[IssuedCredential]:
    """Every credential whose JWT the key ``key_id`` signed, oldest first."""
    with db.read() as sess:
        rows = list(sess.scalars(select(IssuedCredential).where(
            IssuedCredential.key_id == key_id).order_by(IssuedCredential.issued_at)))
        sess.expunge_all()
        return rows


def replace_token(db: Database, credential_id: str, old_key_id: str, key_id: str,
                  token: str) -> bool:
    """Store a credential's JWT signed again by ``key_id``, only while ``old_key_id``
    still signs it (two passes at once sign it once); whether it was stored."""
    with db.session() as sess:
        row = sess.get(IssuedCredential, credential_id)
        if row is None or row.key_id != old_key_id:
            return False
        row.key_id, row.token = key_id, token
        return True


def revoked_indexes(db: Database) -> list[int]:
    """Status-list indexes of every revoked credential."""
    with db.read() as sess:
        return list(sess.scalars(select(IssuedCredential.status_index).where(
            IssuedCredential.revoked_at.is_not(None))))


def status_list_version(db: Database) -> tuple[object, ...]:
    """A cheap fingerprint of what the status list depends on (one aggregate query): it
    changes when a credential is revoked or a new one is issued (a cached list older than a
    credential could not vouch for it)."""
    with db.read() as sess:
        row = sess.execute(select(
            func.count(), func.count(IssuedCredential.revoked_at),
            func.max(IssuedCredential.revoked_at), func.max(IssuedCredential.issued_at),
        ).select_from(IssuedCredential)).one()
        return tuple(row)


def list_credentials(db: Database, tenant_id: str | None = None) -> list[IssuedCredential]:
    """Credentials, oldest first, optionally of one tenant."""
    with db.read() as sess:
        query = select(IssuedCredential).order_by(IssuedCredential.issued_at)
        if tenant_id is not None:
            query = query.where(IssuedCredential.tenant_id == tenant_id)
        rows = list(sess.scalars(query))
        sess.expunge_all()
        return rows
