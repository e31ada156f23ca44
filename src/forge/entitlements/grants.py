"""Operator grants in the entitlement store (DB table), optionally extended by a JSON file."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Table, bindparam, or_, select

from forge.identity.names import valid_id
from forge.store.db import Database
from forge.store.models import Entitlement as GrantRow
from forge.store.prepared import Prepared
from forge.store.row_locks import lock_name

TENANT_WIDE = "*"
_GRANTS: Table = GrantRow.__table__  # type: ignore[assignment]
# Two plain parameters, not an expanding IN (re-rendered on every execution): every spawn
# and every authenticated page asks this, through the driver (forge.store.prepared).
_LOOKUP = Prepared(select(_GRANTS.c.subject, _GRANTS.c.plan).where(
    _GRANTS.c.tenant_id == bindparam("tenant"),
    or_(_GRANTS.c.subject == bindparam("subject"), _GRANTS.c.subject == TENANT_WIDE),
    _GRANTS.c.revoked_at.is_(None),
    or_(_GRANTS.c.expires_at.is_(None), _GRANTS.c.expires_at > bindparam("now")),
))


def grant(
    db: Database, tenant_id: str, plan: str, subject: str = TENANT_WIDE,
    expires_at: datetime | None = None,
) -> None:
    """Grant `plan` to one subject, or to every learner of the tenant (subject "*")."""
    if not valid_id(tenant_id):
        raise ValueError("tenant_id: 1-128 chars of letters, digits and . _ @ : -")
    if subject != TENANT_WIDE and not valid_id(subject):
        raise ValueError("subject: 1-128 chars of letters, digits and . _ @ : -, or *")
    now = datetime.now(UTC)
    with db.session() as sess:
        # Two grants for one owner at once (two checkouts): the second waits and updates
        # the first's row instead of failing on the unique key (PostgreSQL).
        lock_name(sess.connection(), f"grant/{tenant_id}/{subject}")
        row = sess.scalars(
            select(GrantRow).where(GrantRow.tenant_id == tenant_id, GrantRow.subject == subject)
        ).first()
        if row is None:
            sess.add(GrantRow(tenant_id=tenant_id, subject=subject, plan=plan, created_at=now,
                              expires_at=expires_at, revoked_at=None))
        else:
            row.plan, row.expires_at, row.revoked_at, row.created_at = plan, expires_at, None, now


def revoke(db: Database, tenant_id: str, subject: str = TENANT_WIDE) -> bool:
    """Revoke a grant; False when there was no live one."""
    with db.session() as sess:
        row = sess.scalars(
            select(GrantRow).where(GrantRow.tenant_id == tenant_id, GrantRow.subject == subject,
                                   GrantRow.revoked_at.is_(None))
        ).first()
        if row is None:
            return False
        row.revoked_at = datetime.now(UTC)
        return True


def list_grants(db: Database, tenant_id: str | None = None) -> list[GrantRow]:
    """Every grant (live and revoked), optionally of one tenant."""
    with db.read() as sess:
        query = select(GrantRow).order_by(GrantRow.tenant_id, GrantRow.subject)
        if tenant_id:
            query = query.where(GrantRow.tenant_id == tenant_id)
        rows = list(sess.scalars(query))
        sess.expunge_all()
        return rows


def lookup_grant(db: Database, tenant_id: str, subject: str, now: datetime) -> str | None:
    """The plan granted to this subject, else to the whole tenant, else None."""
    with db.read() as sess:
        rows = _LOOKUP.execute(
            sess.connection(), {"tenant": tenant_id, "subject": subject, "now": now}
        ).all()
        by_subject = {r.subject: r.plan for r in rows}
    return by_subject.get(subject) or by_subject.get(TENANT_WIDE)


def lookup_file_grant(path: Path, tenant_id: str, subject: str) -> str | None:
    """The optional JSON source: {"grants": [{"tenant_id", "subject"?, "plan"}]}."""
    data = json.loads(path.read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for item in data.get("grants", []):
        if item.get("tenant_id") == tenant_id:
            found[str(item.get("subject", TENANT_WIDE))] = str(item["plan"])
    return found.get(subject) or found.get(TENANT_WIDE)
