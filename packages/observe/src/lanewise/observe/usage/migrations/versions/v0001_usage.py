"""Create the usage table.

Revision ID: 0001_usage
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_usage"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lanewise_usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("key_id", sa.String(255)),
        sa.Column("workflow", sa.String(255)),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("prompt_name", sa.String(255)),
        sa.Column("prompt_version", sa.String(64)),
        sa.Column("input_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
    )
    op.create_index("ix_lanewise_usage_tenant_ts", "lanewise_usage", ["tenant", "ts"])


def downgrade() -> None:
    op.drop_index("ix_lanewise_usage_tenant_ts", table_name="lanewise_usage")
    op.drop_table("lanewise_usage")
