"""credentials: Open Badges credentials issued from passing verdicts, with revocation

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("credential_id", sa.String(length=64), nullable=False),
        sa.Column("scenario_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoke_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("credential_id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("scenario_id", name=op.f("uq_credentials_scenario_id")),
        sa.UniqueConstraint("status_index", name=op.f("uq_credentials_status_index")),
    )
    op.create_index(op.f("ix_credentials_tenant_id"), "credentials", ["tenant_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_credentials_tenant_id"), table_name="credentials")
    op.drop_table("credentials")
