"""LTI 1.3: course contexts mapped to cohorts, grade links, and the grade outbox (issue 18
item 4)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "lti_contexts",
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("context_id", sa.String(length=255), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("cohort_id", sa.String(length=32), nullable=False),
        sa.Column("memberships_url", sa.String(length=1024), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.cohort_id"], ondelete="CASCADE",
                                name=op.f("fk_lti_contexts_cohort_id_cohorts")),
        sa.PrimaryKeyConstraint("platform", "context_id", name=op.f("pk_lti_contexts")),
    )
    op.create_index(op.f("ix_lti_contexts_cohort_id"), "lti_contexts", ["cohort_id"])
    op.create_table(
        "lti_grade_links",
        sa.Column("assignment_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("lti_user", sa.String(length=255), nullable=False),
        sa.Column("lineitem", sa.String(length=1024), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.assignment_id"],
                                ondelete="CASCADE",
                                name=op.f("fk_lti_grade_links_assignment_id_assignments")),
        sa.PrimaryKeyConstraint("assignment_id", "subject", name=op.f("pk_lti_grade_links")),
    )
    op.create_table(
        "lti_grade_posts",
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("lineitem", sa.String(length=1024), nullable=False),
        sa.Column("lti_user", sa.String(length=255), nullable=False),
        sa.Column("assignment_id", sa.String(length=32), nullable=False),
        sa.Column("score_given", sa.Float(), nullable=False),
        sa.Column("score_maximum", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", TS, nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("posted_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("scenario_id", name=op.f("pk_lti_grade_posts")),
    )
    op.create_index(op.f("ix_lti_grade_posts_state"), "lti_grade_posts", ["state"])


def downgrade() -> None:
    op.drop_index(op.f("ix_lti_grade_posts_state"), table_name="lti_grade_posts")
    op.drop_table("lti_grade_posts")
    op.drop_table("lti_grade_links")
    op.drop_index(op.f("ix_lti_contexts_cohort_id"), table_name="lti_contexts")
    op.drop_table("lti_contexts")
