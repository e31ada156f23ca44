"""LMS grades owed indexed by learner and assignment: each signed verdict of an LMS
assignment reads the learner's best grade owed so far (`lti_grade_outbox.owe_grade`), which was a
scan of an outbox that is never pruned

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 15:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lti_grade_posts", schema=None) as batch_op:
        batch_op.create_index("ix_lti_grade_posts_learner",
                              ["assignment_id", "platform", "lti_user"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lti_grade_posts", schema=None) as batch_op:
        batch_op.drop_index("ix_lti_grade_posts_learner")
