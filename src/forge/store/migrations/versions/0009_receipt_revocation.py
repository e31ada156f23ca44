"""receipt revocation: the latest revoke of each entitlement owner, so receipts issued
before it grant no plan (revoked rows of earlier releases count from their revoked_at)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.add_column(sa.Column("receipts_revoked_at", sa.DateTime(timezone=True),
                                      nullable=True))
    # A grant revoked before this release ends the receipts issued up to then too.
    op.execute("UPDATE entitlements SET receipts_revoked_at = revoked_at "
               "WHERE revoked_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("entitlements", schema=None) as batch_op:
        batch_op.drop_column("receipts_revoked_at")
