"""one learner's own due time for an assignment (an instructor's extension)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "assignment_extensions",
        sa.Column("assignment_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("closes_at", TS, nullable=False),
        sa.Column("granted_by", sa.String(length=128), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.assignment_id"],
                                ondelete="CASCADE",
                                name=op.f("fk_assignment_extensions_assignment_id_assignments")),
        sa.PrimaryKeyConstraint("assignment_id", "subject",
                                name=op.f("pk_assignment_extensions")),
    )


def downgrade() -> None:
    op.drop_table("assignment_extensions")
