"""cohort names keep no control character or bidi embedding, override or isolate

A name typed before such names were refused (review CE) kept its U+202E (or any other
bidi control, or a control character) in the store, and every page, the CSV export and the
API showed it as it was: "Other <U+202E>class" read "Other ssalc" on /teach, the
dashboard, the learners' /tracks and invite page. Such a name is made one `create_cohort`
takes, as an LMS course title is (`forge.classroom.cohort_names.clean_name`, copied here
so that this migration stays as it is): bidi controls go, other unwritable characters become
spaces, spaces run together; a name left empty becomes the cohort's id. Names that were
writable are not touched. Data only: the downgrade changes nothing.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 17:40:00
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_UNWRITABLE = ("Cc", "Cs", "Zl", "Zp")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MAX_NAME = 120


def _unwritable(ch: str) -> bool:
    return unicodedata.category(ch) in _UNWRITABLE or ch in _BIDI_CONTROLS


def _clean(name: str) -> str:
    kept = "".join(" " if unicodedata.category(ch) in _UNWRITABLE else ch for ch in name
                   if ch not in _BIDI_CONTROLS)
    return " ".join(kept.split())[:_MAX_NAME].strip()


def upgrade() -> None:
    conn = op.get_bind()
    cohorts = sa.table("cohorts", sa.column("cohort_id", sa.String),
                       sa.column("name", sa.String))
    for cohort_id, name in conn.execute(sa.select(cohorts.c.cohort_id, cohorts.c.name)).all():
        if any(_unwritable(ch) for ch in name):
            conn.execute(cohorts.update().where(cohorts.c.cohort_id == cohort_id)
                         .values(name=_clean(name) or cohort_id))


def downgrade() -> None:
    pass
