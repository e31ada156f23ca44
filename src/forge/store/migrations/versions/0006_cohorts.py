"""cohorts, their staff, enrolments, invite links, assignments and attempts (issue 18 item 2)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 04:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "cohorts",
        sa.Column("cohort_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("idp_group", sa.String(length=128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("cohort_id", name=op.f("pk_cohorts")),
    )
    op.create_index(op.f("ix_cohorts_tenant_id"), "cohorts", ["tenant_id"])
    op.create_table(
        "cohort_staff",
        sa.Column("cohort_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.cohort_id"], ondelete="CASCADE",
                                name=op.f("fk_cohort_staff_cohort_id_cohorts")),
        sa.PrimaryKeyConstraint("cohort_id", "subject", name=op.f("pk_cohort_staff")),
    )
    op.create_table(
        "enrolments",
        sa.Column("cohort_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("enrolled_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.cohort_id"], ondelete="CASCADE",
                                name=op.f("fk_enrolments_cohort_id_cohorts")),
        sa.PrimaryKeyConstraint("cohort_id", "subject", name=op.f("pk_enrolments")),
    )
    op.create_index(op.f("ix_enrolments_tenant_id"), "enrolments", ["tenant_id"])
    op.create_table(
        "cohort_invites",
        sa.Column("invite_id", sa.String(length=32), nullable=False),
        sa.Column("cohort_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.cohort_id"], ondelete="CASCADE",
                                name=op.f("fk_cohort_invites_cohort_id_cohorts")),
        sa.PrimaryKeyConstraint("invite_id", name=op.f("pk_cohort_invites")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_cohort_invites_token_sha256")),
    )
    op.create_index(op.f("ix_cohort_invites_cohort_id"), "cohort_invites", ["cohort_id"])
    op.create_table(
        "assignments",
        sa.Column("assignment_id", sa.String(length=32), nullable=False),
        sa.Column("cohort_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("template_id", sa.String(length=64), nullable=False),
        sa.Column("opens_at", TS, nullable=False),
        sa.Column("closes_at", TS, nullable=False),
        sa.Column("attempts_allowed", sa.Integer(), nullable=False),
        sa.Column("hints_allowed", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["cohort_id"], ["cohorts.cohort_id"], ondelete="CASCADE",
                                name=op.f("fk_assignments_cohort_id_cohorts")),
        sa.PrimaryKeyConstraint("assignment_id", name=op.f("pk_assignments")),
    )
    op.create_index(op.f("ix_assignments_cohort_id"), "assignments", ["cohort_id"])
    op.create_index(op.f("ix_assignments_tenant_id"), "assignments", ["tenant_id"])
    op.create_table(
        "assignment_attempts",
        sa.Column("assignment_id", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=True),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.assignment_id"],
                                ondelete="CASCADE",
                                name=op.f("fk_assignment_attempts_assignment_id_assignments")),
        sa.PrimaryKeyConstraint("assignment_id", "subject", "attempt",
                                name=op.f("pk_assignment_attempts")),
    )
    op.create_index(op.f("ix_assignment_attempts_scenario_id"), "assignment_attempts",
                    ["scenario_id"])


def downgrade() -> None:
    for table in ("assignment_attempts", "assignments", "cohort_invites", "enrolments",
                  "cohort_staff", "cohorts"):
        op.drop_table(table)
