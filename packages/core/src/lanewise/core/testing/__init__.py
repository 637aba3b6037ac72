"""Test harness: real Redis and PostgreSQL servers, per-test plugins, factory contexts.

Nothing here is a mock, and importing it changes nothing global. The pytest
fixtures live in :mod:`lanewise.core.testing.plugin` (opt in with
``-p lanewise.core.testing.plugin``).
"""

from lanewise.core.testing.factories import factory_context
from lanewise.core.testing.services import PostgresServer, RedisServer
from lanewise.core.testing.waiting import poll

__all__ = ["PostgresServer", "RedisServer", "factory_context", "poll"]
