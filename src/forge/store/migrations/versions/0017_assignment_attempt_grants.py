"""extra attempts of an assignment given to one learner (an instructor's attempt grant)

Before, attempts could only be raised for the whole class: a learner who used their last
attempt (a crash of their own making) stayed stuck unless all 200 got more.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "assignment_attempt_grants",
        sa.Column("assignment_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("extra", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("granted_by", sa.String(length=128), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["assignment_id"], ["assignments.assignment_id"], ondelete="CASCADE",
            name=op.f("fk_assignment_attempt_grants_assignment_id_assignments")),
        sa.PrimaryKeyConstraint("assignment_id", "subject",
                                name=op.f("pk_assignment_attempt_grants")),
    )


def downgrade() -> None:
    op.drop_table("assignment_attempt_grants")
