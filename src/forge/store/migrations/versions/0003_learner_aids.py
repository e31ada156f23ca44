"""learner aids: hints revealed and "check this task" runs, per scenario

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hint_reveals",
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("hint_index", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("criterion", sa.String(length=32), nullable=True),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.scenario_id"],
                                name=op.f("fk_hint_reveals_scenario_id_scenarios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scenario_id", "hint_index", name=op.f("pk_hint_reveals")),
    )
    op.create_index(op.f("ix_hint_reveals_tenant_id"), "hint_reveals", ["tenant_id"])
    op.create_table(
        "task_check_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("criterion", sa.String(length=32), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.scenario_id"],
                                name=op.f("fk_task_check_runs_scenario_id_scenarios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_check_runs")),
    )
    op.create_index(op.f("ix_task_check_runs_scenario_id"), "task_check_runs",
                    ["scenario_id"])
    op.create_index(op.f("ix_task_check_runs_tenant_id"), "task_check_runs", ["tenant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_task_check_runs_tenant_id"), table_name="task_check_runs")
    op.drop_index(op.f("ix_task_check_runs_scenario_id"), table_name="task_check_runs")
    op.drop_table("task_check_runs")
    op.drop_index(op.f("ix_hint_reveals_tenant_id"), table_name="hint_reveals")
    op.drop_table("hint_reveals")
