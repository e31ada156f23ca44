"""finalized audits: one shared marker per scenario whose verdict is audited, so scoreboard
replicas with their own audit chains write `score.finalized` once

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 11:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "finalized_audits",
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("score_sha256", sa.String(length=64), nullable=False),
        sa.Column("audited_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["scenario_id"], ["scenarios.scenario_id"],
                                name=op.f("fk_finalized_audits_scenario_id_scenarios"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("scenario_id", name=op.f("pk_finalized_audits")),
    )


def downgrade() -> None:
    op.drop_table("finalized_audits")
