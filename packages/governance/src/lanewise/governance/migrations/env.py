"""Alembic environment: run by ``lanewise.governance.ledger.migrate`` with a connection."""

from __future__ import annotations

from alembic import context
from lanewise.governance.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="lw_governance_version",
)
with context.begin_transaction():
    context.run_migrations()
