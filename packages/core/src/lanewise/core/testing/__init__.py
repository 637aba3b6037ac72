"""Test harness: real Redis and PostgreSQL servers, and per-test plugins.

Loaded by pytest through the ``pytest11`` entry point; nothing here is a mock.
"""

from lanewise.core.testing.services import PostgresServer, RedisServer

__all__ = ["PostgresServer", "RedisServer"]
