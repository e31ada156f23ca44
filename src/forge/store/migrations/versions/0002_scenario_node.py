"""scenario node: which lab node holds the lab, and its URL

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("scenarios", schema=None) as batch_op:
        batch_op.add_column(sa.Column("node_id", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("node_url", sa.String(length=255), nullable=True))
        batch_op.create_index(batch_op.f("ix_scenarios_node_id"), ["node_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scenarios", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scenarios_node_id"))
        batch_op.drop_column("node_url")
        batch_op.drop_column("node_id")
