"""LMS user ids of Forge subjects, from launches and roster syncs: a learner enrolled by a
roster sync who starts a lab from Forge (never from the LMS) is owed a grade too, and
`lti.map_subject` cannot be inverted to find where it goes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lti_users",
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("lti_user", sa.String(length=255), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "subject", name=op.f("pk_lti_users")),
    )
    # The ids learned from launches before this release: a learner who launched once is
    # not left waiting for the next launch or roster sync to be owed a grade.
    op.execute(
        "INSERT INTO lti_users (platform, subject, lti_user, updated_at) "
        "SELECT platform, subject, MAX(lti_user), MAX(updated_at) FROM lti_grade_links "
        "GROUP BY platform, subject")


def downgrade() -> None:
    op.drop_table("lti_users")
