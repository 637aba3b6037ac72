"""The usage table (one row per model call), as SQLAlchemy Core metadata.

Alembic migrations in ``migrations/`` create and change it; this module is
what the writer and the queries use.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

usage = Table(
    "lanewise_usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False, doc="epoch seconds when the call ended"),
    Column("request_id", String(128), nullable=False),
    Column("tenant", String(255), nullable=False),
    Column("user_id", String(255)),
    Column("key_id", String(255)),
    Column("workflow", String(255)),
    Column("model", String(255), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("prompt_name", String(255)),
    Column("prompt_version", String(64)),
    Column("input_tokens", Integer, nullable=False),
    Column("output_tokens", Integer, nullable=False),
    Column("cost", Float),
    Column("duration_s", Float, nullable=False),
    Column("status", String(32), nullable=False),
)
Index("ix_lanewise_usage_tenant_ts", usage.c.tenant, usage.c.ts)
