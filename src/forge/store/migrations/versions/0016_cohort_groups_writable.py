"""a cohort's identity-provider group keeps no control character or bidi control

A group typed before such groups were refused (review CE) kept its U+202E (or another bidi
embedding, override or isolate, or a control character) in the store: the class's
instructors saw it reordered on /teach and in the API, and no instructor can change a
cohort's group afterwards. Unlike a name (migration 0015), the group is not cleaned into
another one: group enrolment matches it exactly at sign-in, and "net\u202e101" made
"net101" would start enrolling everyone of a group the instructor never matched. Such a
group is dropped (NULL) instead: nobody is enrolled by it from now on, learners it
enrolled stay. A person whose IdP really names a group with such a character is no
longer matched; the instructor enrols them another way. Data only: the downgrade
changes nothing.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 20:10:00
"""

from __future__ import annotations

import logging
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

log = logging.getLogger("forge.store.migrations")

# As forge.classroom.cohort_names.writable, copied so that this migration stays as it is.
_UNWRITABLE = ("Cc", "Cs", "Zl", "Zp")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unwritable(ch: str) -> bool:
    return unicodedata.category(ch) in _UNWRITABLE or ch in _BIDI_CONTROLS


def upgrade() -> None:
    conn = op.get_bind()
    cohorts = sa.table("cohorts", sa.column("cohort_id", sa.String),
                       sa.column("tenant_id", sa.String), sa.column("idp_group", sa.String))
    rows = conn.execute(sa.select(cohorts.c.cohort_id, cohorts.c.tenant_id,
                                  cohorts.c.idp_group)
                        .where(cohorts.c.idp_group.is_not(None))).all()
    for cohort_id, tenant_id, group in rows:
        if any(_unwritable(ch) for ch in group):
            conn.execute(cohorts.update().where(cohorts.c.cohort_id == cohort_id)
                         .values(idp_group=None))
            # The operator can tell the class's instructors why its group enrols no one.
            log.warning("cohort group dropped: tenant=%s cohort=%s group=%s (a control or "
                        "bidi character; nobody is enrolled by it any more)", tenant_id,
                        cohort_id, ascii(group))


def downgrade() -> None:
    pass
