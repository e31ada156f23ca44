"""Roles per tenant: learner, instructor or operator, as the identity provider last said.

Recorded at each OIDC sign-in (the provider stays the source of truth: a role it withdraws
is withdrawn at the next sign-in); LTI launches and roster syncs only ever raise it
(`raise_role`); an operator sets it with `forge roles set` (`record_role`, keeping the
groups), the only way where people sign in with API keys alone. Read by pages that need
more than a learner (instructor pages, `/ops`). A person with no row is a learner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from forge.store.db import Database
from forge.store.models import TenantRole
from forge.store.role_names import INSTRUCTOR as INSTRUCTOR  # re-exported for callers
from forge.store.role_names import LEARNER as LEARNER
from forge.store.role_names import OPERATOR as OPERATOR
from forge.store.role_names import ROLES as ROLES

MAX_GROUPS = 64
MAX_GROUP_CHARS = 128


def record_role(db: Database, tenant_id: str, subject: str, role: str,
                groups: Sequence[str] | None = (), source: str = "oidc") -> None:
    """Set the role (and groups; None keeps those recorded) of (tenant, subject); a
    concurrent first sign-in of the same person is settled by the primary key, then
    updated."""
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    kept = None if groups is None else sorted(
        {g for g in groups if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_CHARS}
    )[:MAX_GROUPS]
    for _ in range(2):
        try:
            with db.session() as sess:
                row = sess.get(TenantRole, (tenant_id, subject))
                now = datetime.now(UTC)
                if row is None:
                    sess.add(TenantRole(tenant_id=tenant_id, subject=subject, role=role,
                                        groups=kept or [], source=source, updated_at=now))
                else:
                    row.role, row.source, row.updated_at = role, source, now
                    if kept is not None:
                        row.groups = kept
            return
        except IntegrityError:
            continue  # inserted meanwhile by a concurrent sign-in: update it
    raise RuntimeError("tenant role could not be recorded")


def raise_role(db: Database, tenant_id: str, subject: str, role: str,
               source: str = "lti") -> None:
    """Record at least `role` for (tenant, subject) without ever lowering it: an LMS only
    says what someone is in one course, so a learner launch of an instructor or operator
    keeps their role, and a teaching launch makes a learner an instructor at most."""
    for _ in range(2):
        try:
            with db.session() as sess:
                raise_role_in(sess, tenant_id, subject, role, source)
            return
        except IntegrityError:
            continue  # inserted meanwhile by a concurrent sign-in: compare with it
    raise RuntimeError("tenant role could not be recorded")


def raise_role_in(sess: Session, tenant_id: str, subject: str, role: str,
                  source: str = "lti") -> None:
    """`raise_role` inside the caller's transaction (e.g. one for a whole course roster,
    so that it is recorded whole or not at all); a concurrent insert of the same person is
    the caller's IntegrityError."""
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    row = sess.get(TenantRole, (tenant_id, subject))
    now = datetime.now(UTC)
    if row is None:
        sess.add(TenantRole(tenant_id=tenant_id, subject=subject, role=role,
                            groups=[], source=source, updated_at=now))
    elif ROLES.index(role) > ROLES.index(row.role if row.role in ROLES else LEARNER):
        row.role, row.source, row.updated_at = role, source, now


CHUNK = 500  # subjects per IN list and per bulk insert (well under SQLite's 32,766 variables)


def raise_roles_in(sess: Session, tenant_id: str, wanted: Mapping[str, str],
                   source: str = "lti") -> None:
    """`raise_role_in` for many people at once (a course roster): the recorded roles read
    with a few IN queries, the new people inserted in bulk, only the raised ones updated;
    a concurrent insert of the same person is the caller's IntegrityError."""
    if any(role not in ROLES for role in wanted.values()):
        raise ValueError(f"role: one of {', '.join(ROLES)}")
    subjects = list(wanted)
    now = datetime.now(UTC)
    for start in range(0, len(subjects), CHUNK):
        chunk = subjects[start:start + CHUNK]
        rows = {row.subject: row for row in sess.scalars(select(TenantRole).where(
            TenantRole.tenant_id == tenant_id, TenantRole.subject.in_(chunk)))}
        new = [{"tenant_id": tenant_id, "subject": s, "role": wanted[s], "groups": [],
                "source": source, "updated_at": now} for s in chunk if s not in rows]
        if new:
            sess.execute(insert(TenantRole), new)
        for subject, row in rows.items():
            if ROLES.index(wanted[subject]) > ROLES.index(
                    row.role if row.role in ROLES else LEARNER):
                row.role, row.source, row.updated_at = wanted[subject], source, now
        sess.flush()


def role_of(db: Database, tenant_id: str, subject: str) -> str:
    """The recorded role of (tenant, subject); learner when none was recorded."""
    with db.read() as sess:
        row = sess.get(TenantRole, (tenant_id, subject))
        return row.role if row is not None else LEARNER


def groups_of(db: Database, tenant_id: str, subject: str) -> list[str]:
    """The groups the identity provider named at the last sign-in (empty when none)."""
    with db.read() as sess:
        row = sess.get(TenantRole, (tenant_id, subject))
        return list(row.groups) if row is not None else []
