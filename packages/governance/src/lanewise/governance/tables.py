"""The ledger's tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

charges = Table(
    "lw_charges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", Float, nullable=False, doc="when the call was admitted: its window bucket"),
    Column("settled_at", Float, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("user", String(128)),
    Column("key_id", String(64)),
    Column("workflow", String(128)),
    Column("model", String(256), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_nano", BigInteger, nullable=False, doc="USD * 1e9"),
    Column("gpu_s", Float, nullable=False),
    Index("ix_lw_charges_tenant_ts", "tenant", "ts"),
    Index("ix_lw_charges_settled_at", "settled_at"),
    Index("ix_lw_charges_request", "request_id"),
)

budgets = Table(
    "lw_budgets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), doc="owner; NULL for deployment-wide budgets"),
    Column("scope", String(16), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("window", String(16), nullable=False),
    Column("unit", String(8), nullable=False),
    Column("limit", BigInteger, nullable=False, doc="tokens, or USD * 1e9"),
    Column("shadow", Boolean, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_lw_budgets_tenant", "tenant"),
)

api_keys = Table(
    "lw_api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("tenant", String(128), nullable=False),
    Column("user", String(128)),
    Column("workflow", String(128)),
    Column("priority", String(16), nullable=False),
    Column("scopes", JSON, nullable=False, doc="{'routes': [...], 'models': [...], ...}"),
    Column("name", String(256), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Index("ix_lw_api_keys_tenant", "tenant"),
)
