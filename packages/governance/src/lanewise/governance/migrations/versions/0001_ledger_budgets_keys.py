"""ledger of settled charges, budgets, API keys

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lw_charges",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("settled_at", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("user", sa.String(128)),
        sa.Column("key_id", sa.String(64)),
        sa.Column("workflow", sa.String(128)),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost_nano", sa.BigInteger, nullable=False),
        sa.Column("gpu_s", sa.Float, nullable=False),
    )
    op.create_index("ix_lw_charges_tenant_ts", "lw_charges", ["tenant", "ts"])
    op.create_index("ix_lw_charges_settled_at", "lw_charges", ["settled_at"])
    op.create_index("ix_lw_charges_request", "lw_charges", ["request_id"])
    op.create_table(
        "lw_budgets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(128)),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("unit", sa.String(8), nullable=False),
        sa.Column("limit", sa.BigInteger, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_lw_budgets_tenant", "lw_budgets", ["tenant"])
    op.create_table(
        "lw_api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("user", sa.String(128)),
        sa.Column("workflow", sa.String(128)),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("ix_lw_api_keys_tenant", "lw_api_keys", ["tenant"])


def downgrade() -> None:
    op.drop_table("lw_api_keys")
    op.drop_table("lw_budgets")
    op.drop_table("lw_charges")
