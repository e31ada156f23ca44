"""live quota slots indexed on their own: a spawn's limit check reads only the tenant's
live slots (from the index alone), not every slot it released in the last hour

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 09:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quota_slots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quota_slots_live", ["tenant_id", "subject", "expires_at", "released_at"],
            unique=False,
            sqlite_where=sa.text("released_at IS NULL"),
            postgresql_where=sa.text("released_at IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table("quota_slots", schema=None) as batch_op:
        batch_op.drop_index("ix_quota_slots_live")
