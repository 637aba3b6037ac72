"""Alembic environment: run on the connection the caller passes (``config.attributes``)."""

from __future__ import annotations

from alembic import context
from lanewise.observe.usage.schema import metadata

VERSION_TABLE = "lanewise_observe_alembic_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
